package checkpoints

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/dgraph-io/badger/v4"
)

// Backup format, version 1:
//
//	"FLWRBKUP" | uint32 format (1) | uint32 schema version
//	repeated:   uvarint key length (> 0) | key | uvarint value length | value
//	uvarint 0
//	SHA-256 of everything before it (32 bytes)
//
// Integers are big-endian; keys come in key order.
var backupMagic = []byte("FLWRBKUP")

const (
	backupFormat   = 1
	maxBackupKey   = 64 << 10
	maxBackupValue = 1 << 30
)

// Backup writes a consistent snapshot of the whole store to w while the
// store stays in use, and returns the number of bytes written. It holds one
// value in memory at a time. The backup is not encrypted, even when the
// store is. Close waits for a backup in progress to stop (it stops early,
// with ErrClosed).
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := s.begin(); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer s.end()
	cw := &countWriter{w: w}
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(cw, h), 64<<10)
	var hdr []byte
	hdr = append(hdr, backupMagic...)
	hdr = binary.BigEndian.AppendUint32(hdr, backupFormat)
	hdr = binary.BigEndian.AppendUint32(hdr, SchemaVersion)
	bw.Write(hdr)
	var lenBuf [binary.MaxVarintLen64]byte
	writeBytes := func(b []byte) {
		bw.Write(binary.AppendUvarint(lenBuf[:0], uint64(len(b))))
		bw.Write(b)
	}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			select {
			case <-s.quit:
				return ErrClosed
			default:
			}
			item := it.Item()
			k := item.Key()
			if bytes.Equal(k, schemaKey) || bytes.Equal(k, flushKey) {
				continue
			}
			writeBytes(k)
			if err := item.Value(func(v []byte) error { writeBytes(v); return nil }); err != nil {
				return fmt.Errorf("read %q: %w", k, err)
			}
			if cw.err != nil {
				return cw.err
			}
		}
		return nil
	})
	if err != nil {
		return cw.n, fmt.Errorf("backup: %w", err)
	}
	bw.WriteByte(0)
	if err := bw.Flush(); err != nil {
		return cw.n, fmt.Errorf("backup: %w", err)
	}
	if _, err := cw.Write(h.Sum(nil)); err != nil {
		return cw.n, fmt.Errorf("backup: %w", err)
	}
	return cw.n, nil
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

// hashReader hashes exactly the bytes consumed through it.
type hashReader struct {
	r *bufio.Reader
	h hash.Hash
}

func (h *hashReader) ReadByte() (byte, error) {
	b, err := h.r.ReadByte()
	if err == nil {
		h.h.Write([]byte{b})
	}
	return b, err
}

func (h *hashReader) full(p []byte) error {
	_, err := io.ReadFull(h.r, p)
	h.h.Write(p)
	return err
}

// readN reads n bytes, growing the buffer as data arrives, so that a
// damaged length cannot make it allocate a gigabyte up front.
func (h *hashReader) readN(n uint64) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(int(min(n, 1<<20)))
	_, err := io.CopyN(&b, h.r, int64(n))
	h.h.Write(b.Bytes())
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return b.Bytes(), err
}

// Restore creates a store in dir, which must be empty or not exist
// (ErrNotEmpty), from a backup written by Backup, and closes it; Open it
// afterwards. opts apply to the new store (so a backup can be restored with
// or without encryption). A damaged or truncated backup is ErrCorrupt; the
// schema version is written last, only once the whole stream has checked,
// so a failed restore leaves a directory that Open refuses (ErrSchema) and
// that should be removed. Restore holds one value in memory at a time plus
// a few MiB of pending writes.
func Restore(ctx context.Context, dir string, r io.Reader, opts Options) (err error) {
	o, err := opts.withDefaults()
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("restore: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("restore into %s: %w", dir, ErrNotEmpty)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer unlock()
	db, err := openDB(dir, o)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("restore: close: %w", cerr)
		}
	}()

	hr := &hashReader{r: bufio.NewReaderSize(r, 64<<10), h: sha256.New()}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("restore: %s: %w", fmt.Sprintf(format, args...), ErrCorrupt)
	}
	hdr := make([]byte, len(backupMagic)+8)
	if err := hr.full(hdr); err != nil {
		return corrupt("read header: %v", err)
	}
	if !bytes.Equal(hdr[:len(backupMagic)], backupMagic) {
		return corrupt("not a flowerd backup")
	}
	if f := binary.BigEndian.Uint32(hdr[len(backupMagic):]); f != backupFormat {
		return fmt.Errorf("restore: backup format %d, want %d: %w", f, backupFormat, ErrSchema)
	}
	schema := hdr[len(backupMagic)+4:]
	if err := checkSchemaVersion(schema); err != nil {
		return fmt.Errorf("restore: %w", err)
	}

	txn := db.NewTransaction(true)
	defer func() { txn.Discard() }()
	var pending int
	commit := func() error {
		if err := txn.Commit(); err != nil {
			return err
		}
		txn, pending = db.NewTransaction(true), 0
		return nil
	}
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		klen, err := binary.ReadUvarint(hr)
		if err != nil {
			return corrupt("record %d: %v", n, err)
		}
		if klen == 0 {
			break
		}
		if klen > maxBackupKey {
			return corrupt("record %d: key of %d bytes", n, klen)
		}
		k := make([]byte, klen)
		if err := hr.full(k); err != nil {
			return corrupt("record %d: %v", n, err)
		}
		vlen, err := binary.ReadUvarint(hr)
		if err != nil {
			return corrupt("record %d: %v", n, err)
		}
		if vlen > maxBackupValue {
			return corrupt("record %d: value of %d bytes", n, vlen)
		}
		v, err := hr.readN(vlen)
		if err != nil {
			return corrupt("record %d: %v", n, err)
		}
		if bytes.Equal(k, schemaKey) {
			continue
		}
		err = txn.Set(k, v)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err = commit(); err == nil {
				err = txn.Set(k, v)
			}
		}
		if err != nil {
			return fmt.Errorf("restore: write %q: %w", k, err)
		}
		if pending += len(k) + len(v); pending >= 4<<20 {
			if err := commit(); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
		}
	}
	sum := hr.h.Sum(nil)
	trailer := make([]byte, sha256.Size)
	if _, err := io.ReadFull(hr.r, trailer); err != nil {
		return corrupt("read checksum: %v", err)
	}
	if !bytes.Equal(sum, trailer) {
		return corrupt("checksum mismatch")
	}
	if err := commit(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := db.Sync(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(schemaKey, schema) }); err != nil {
		return fmt.Errorf("restore: write schema: %w", err)
	}
	if err := db.Sync(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}
