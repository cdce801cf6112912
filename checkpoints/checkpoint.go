package checkpoints

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Meta is what the caller says about a checkpoint when it writes one.
type Meta struct {
	RunID       string    // the run that produced it; may be empty
	Epoch       int       // epochs completed
	Step        int64     // optimizer steps completed
	ValAccuracy float64   // validation accuracy; retention keeps the best
	ValLoss     float64   // validation loss
	CreatedAt   time.Time // zero means the time of Create
}

// Manifest describes one stored checkpoint version.
type Manifest struct {
	Variant string
	Version uint64 // per variant, starting at 1, never reused
	Meta
	Size      int64  // bytes of training state
	SHA256    string // hex SHA-256 of the whole state
	ChunkSize int    // bytes per chunk (the last may be shorter)
	Chunks    int    // number of chunks
}

type manifestRecord struct {
	Variant     string    `json:"variant"`
	Version     uint64    `json:"version"`
	RunID       string    `json:"run_id,omitempty"`
	Epoch       int       `json:"epoch"`
	Step        int64     `json:"step"`
	ValAccuracy jfloat    `json:"val_accuracy"`
	ValLoss     jfloat    `json:"val_loss"`
	CreatedAt   time.Time `json:"created_at"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	ChunkSize   int       `json:"chunk_size"`
	Chunks      int       `json:"chunks"`
	ChunkSums   []byte    `json:"chunk_sha256"` // Chunks × 32 bytes
}

func (r manifestRecord) manifest() Manifest {
	return Manifest{
		Variant: r.Variant,
		Version: r.Version,
		Meta: Meta{
			RunID:       r.RunID,
			Epoch:       r.Epoch,
			Step:        r.Step,
			ValAccuracy: float64(r.ValAccuracy),
			ValLoss:     float64(r.ValLoss),
			CreatedAt:   r.CreatedAt,
		},
		Size:      r.Size,
		SHA256:    r.SHA256,
		ChunkSize: r.ChunkSize,
		Chunks:    r.Chunks,
	}
}

func nextKey(variant string) []byte  { return []byte(pNext + variant) }
func serveKey(variant string) []byte { return []byte(pServe + variant) }
func manifestPrefix(variant string) []byte {
	return []byte(pManifest + variant + "/")
}
func manifestKey(variant string, version uint64) []byte {
	return binary.BigEndian.AppendUint64(manifestPrefix(variant), version)
}
func chunkPrefix(variant string, version uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(pChunk+variant+"/"), version)
}
func chunkKey(variant string, version uint64, idx int) []byte {
	return binary.BigEndian.AppendUint32(chunkPrefix(variant, version), uint32(idx))
}

func decodeManifest(item *badger.Item) (manifestRecord, error) {
	var rec manifestRecord
	err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) })
	if err != nil {
		return rec, fmt.Errorf("decode manifest %q: %v: %w", item.Key(), err, ErrCorrupt)
	}
	if len(rec.ChunkSums) != 32*rec.Chunks {
		return rec, fmt.Errorf("manifest %q has %d chunk sums for %d chunks: %w", item.Key(), len(rec.ChunkSums)/32, rec.Chunks, ErrCorrupt)
	}
	return rec, nil
}

func getManifest(txn *badger.Txn, variant string, version uint64) (manifestRecord, error) {
	item, err := txn.Get(manifestKey(variant, version))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return manifestRecord{}, fmt.Errorf("%s version %d: %w", variant, version, ErrNotFound)
	}
	if err != nil {
		return manifestRecord{}, err
	}
	return decodeManifest(item)
}

// listManifests returns the manifests of variant, newest first.
func listManifests(txn *badger.Txn, variant string) ([]manifestRecord, error) {
	p := manifestPrefix(variant)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: p, Reverse: true, PrefetchValues: false})
	defer it.Close()
	var out []manifestRecord
	for it.Seek(append(slices.Clone(p), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)); it.Valid(); it.Next() {
		rec, err := decodeManifest(it.Item())
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

func getPin(txn *badger.Txn, variant string) (uint64, bool, error) {
	return getUint64(txn, serveKey(variant))
}

// Writer streams one new checkpoint version into the store. Write (or
// ReadFrom) fills chunks; Commit writes the manifest and makes the version
// visible; Abort discards it. A Writer is an io.WriteCloser whose Close
// commits, so it can be handed to code that only knows io.Writer; if that
// code fails, call Abort instead of Close.
type Writer struct {
	s         *Store
	variant   string
	version   uint64
	meta      Meta
	chunkSize int

	mu        sync.Mutex
	buf       []byte // the chunk being filled
	sums      []byte
	whole     hash.Hash
	size      int64
	n         int   // chunks stored
	err       error // sticky: a store error, or ErrClosed after Store.Close
	committed bool
	aborted   bool
	m         Manifest // set by a successful Commit
}

// Create starts a new version of variant. The version number is reserved at
// once; it becomes visible only when Commit succeeds. The writer holds one
// chunk (Options.ChunkSize) in memory.
func (s *Store) Create(variant string, meta Meta) (*Writer, error) {
	if err := checkName("variant", variant); err != nil {
		return nil, fmt.Errorf("create checkpoint: %w", err)
	}
	if meta.RunID != "" {
		if err := checkName("run id", meta.RunID); err != nil {
			return nil, fmt.Errorf("create checkpoint: %w", err)
		}
	}
	if err := s.begin(); err != nil {
		return nil, fmt.Errorf("create checkpoint: %w", err)
	}
	defer s.end()
	if meta.CreatedAt.IsZero() {
		meta.CreatedAt = time.Now()
	}
	var version uint64
	err := s.update(func(txn *badger.Txn) error {
		n, _, err := getUint64(txn, nextKey(variant))
		if err != nil {
			return err
		}
		version = n + 1
		return txn.Set(nextKey(variant), be64(version))
	})
	if err != nil {
		return nil, fmt.Errorf("create checkpoint: reserve version: %w", err)
	}
	return &Writer{
		s:         s,
		variant:   variant,
		version:   version,
		meta:      meta,
		chunkSize: s.opts.ChunkSize,
		buf:       make([]byte, 0, s.opts.ChunkSize),
		whole:     sha256.New(),
	}, nil
}

// Version is the version number this writer will commit.
func (w *Writer) Version() uint64 { return w.version }

func (w *Writer) usable() error {
	switch {
	case w.committed || w.aborted:
		return fmt.Errorf("write checkpoint: writer finished: %w", ErrClosed)
	case w.err != nil:
		return w.err
	case w.s.isClosed():
		w.err = fmt.Errorf("write checkpoint: %w", ErrClosed)
		return w.err
	}
	return nil
}

// Write implements io.Writer.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return 0, err
	}
	total := 0
	for len(p) > 0 {
		n := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+n]
		p = p[n:]
		total += n
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

// ReadFrom implements io.ReaderFrom: io.Copy into a Writer reads straight
// into the chunk buffer. An error from r is returned as is and leaves the
// writer usable; the caller normally aborts.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return 0, err
	}
	var total int64
	for {
		n, err := r.Read(w.buf[len(w.buf):cap(w.buf)])
		w.buf = w.buf[:len(w.buf)+n]
		total += int64(n)
		if len(w.buf) == cap(w.buf) {
			if ferr := w.flush(); ferr != nil {
				return total, ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// flush stores the full or final chunk. Called with w.mu held.
func (w *Writer) flush() error {
	if err := w.s.begin(); err != nil {
		w.err = fmt.Errorf("write checkpoint: %w", err)
		return w.err
	}
	defer w.s.end()
	sum := sha256.Sum256(w.buf)
	k := chunkKey(w.variant, w.version, w.n)
	// Each chunk is its own transaction: a version is far larger than one
	// Badger transaction may be. The buffer is reused once Update returns.
	err := w.s.update(func(txn *badger.Txn) error { return txn.Set(k, w.buf) })
	if err != nil {
		w.err = fmt.Errorf("write checkpoint %s version %d: store chunk %d: %w", w.variant, w.version, w.n, err)
		return w.err
	}
	w.whole.Write(w.buf)
	w.sums = append(w.sums, sum[:]...)
	w.size += int64(len(w.buf))
	w.n++
	w.buf = w.buf[:0]
	return nil
}

// Commit stores the last chunk, syncs, writes the manifest, syncs again,
// and applies retention to the variant. Only after Commit returns without
// error does the version exist; if it fails, call Abort (or Close). Calling
// Commit again after success returns the same manifest.
func (w *Writer) Commit() (Manifest, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.committed {
		return w.m, nil
	}
	if err := w.usable(); err != nil {
		return Manifest{}, err
	}
	if err := w.s.begin(); err != nil {
		return Manifest{}, fmt.Errorf("commit checkpoint: %w", err)
	}
	defer w.s.end()
	if len(w.buf) > 0 {
		if err := w.flush(); err != nil {
			return Manifest{}, err
		}
	}
	fail := func(what string, err error) (Manifest, error) {
		w.err = fmt.Errorf("commit checkpoint %s version %d: %s: %w", w.variant, w.version, what, err)
		return Manifest{}, w.err
	}
	if err := w.s.db.Sync(); err != nil {
		return fail("sync chunks", err)
	}
	rec := manifestRecord{
		Variant:     w.variant,
		Version:     w.version,
		RunID:       w.meta.RunID,
		Epoch:       w.meta.Epoch,
		Step:        w.meta.Step,
		ValAccuracy: jfloat(w.meta.ValAccuracy),
		ValLoss:     jfloat(w.meta.ValLoss),
		CreatedAt:   w.meta.CreatedAt,
		Size:        w.size,
		SHA256:      hex.EncodeToString(w.whole.Sum(nil)),
		ChunkSize:   w.chunkSize,
		Chunks:      w.n,
		ChunkSums:   w.sums,
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fail("encode manifest", err)
	}
	if err := w.s.update(func(txn *badger.Txn) error {
		return txn.Set(manifestKey(w.variant, w.version), data)
	}); err != nil {
		return fail("write manifest", err)
	}
	if err := w.s.db.Sync(); err != nil {
		return fail("sync manifest", err)
	}
	w.committed = true
	w.buf = nil
	w.m = rec.manifest()
	// The version is durable whatever retention does; if it fails, it runs
	// again on the next commit.
	w.s.pruneQuietly(w.variant)
	return w.m, nil
}

// Close commits (see Commit) and returns Commit's error. If an earlier
// Write failed, Close aborts instead and returns that error. After Commit or
// Abort it returns nil.
func (w *Writer) Close() error {
	w.mu.Lock()
	finished, err := w.committed || w.aborted, w.err
	w.mu.Unlock()
	switch {
	case finished:
		return nil
	case err != nil:
		w.Abort()
		return err
	}
	_, err = w.Commit()
	return err
}

// Abort discards the version: its chunks are deleted and it never becomes
// visible. Abort after Commit does nothing.
func (w *Writer) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.committed || w.aborted {
		return nil
	}
	w.aborted = true
	w.buf = nil
	if err := w.s.begin(); err != nil {
		return nil // store closed: the next Open removes the chunks
	}
	defer w.s.end()
	// After a failed Commit the manifest may have been stored (a sync
	// failed after it); it goes first, so no visible version loses chunks.
	if err := w.s.update(func(txn *badger.Txn) error {
		return txn.Delete(manifestKey(w.variant, w.version))
	}); err != nil {
		return fmt.Errorf("abort checkpoint %s version %d: %w", w.variant, w.version, err)
	}
	if err := w.s.deleteChunks(w.variant, w.version); err != nil {
		return fmt.Errorf("abort checkpoint %s version %d: %w", w.variant, w.version, err)
	}
	return nil
}

// Save writes a whole version from r (streaming, one chunk in memory) and
// commits it. On any error nothing becomes visible.
func (s *Store) Save(ctx context.Context, variant string, meta Meta, r io.Reader) (Manifest, error) {
	w, err := s.Create(variant, meta)
	if err != nil {
		return Manifest{}, err
	}
	if _, err := w.ReadFrom(ctxReader{ctx, r}); err != nil {
		w.Abort()
		return Manifest{}, fmt.Errorf("save checkpoint %s: %w", variant, err)
	}
	return w.Commit()
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Reader streams one stored version, verifying as it goes: every chunk is
// checked against its SHA-256 before any of its bytes are returned, and at
// the end the size and the SHA-256 of the whole state are checked before
// io.EOF. A mismatch or a missing chunk is an error wrapping ErrCorrupt. A
// Reader sees the store as it was when it was opened, so retention or Delete
// cannot pull the version from under it; Close it promptly, since it holds
// Badger's old data alive.
type Reader struct {
	s    *Store
	m    Manifest
	sums []byte

	mu      sync.Mutex
	txn     *badger.Txn
	it      *badger.Iterator
	next    int    // index of the next chunk to load
	buf     []byte // current chunk
	off     int    // read position in buf
	whole   hash.Hash
	read    int64
	err     error // sticky: io.EOF, corruption, ErrClosed
	corrupt bool
}

// OpenVersion opens version of variant for reading.
func (s *Store) OpenVersion(variant string, version uint64) (*Reader, error) {
	if err := checkName("variant", variant); err != nil {
		return nil, fmt.Errorf("open checkpoint: %w", err)
	}
	if err := s.begin(); err != nil {
		return nil, fmt.Errorf("open checkpoint: %w", err)
	}
	defer s.end()
	txn := s.db.NewTransaction(false)
	rec, err := getManifest(txn, variant, version)
	if err != nil {
		txn.Discard()
		return nil, fmt.Errorf("open checkpoint: %w", err)
	}
	r := &Reader{
		s:     s,
		m:     rec.manifest(),
		sums:  rec.ChunkSums,
		txn:   txn,
		whole: sha256.New(),
	}
	r.it = txn.NewIterator(badger.IteratorOptions{Prefix: chunkPrefix(variant, version)})
	r.it.Rewind()
	if err := s.register(r); err != nil {
		r.release()
		return nil, fmt.Errorf("open checkpoint: %w", err)
	}
	return r, nil
}

// Manifest describes the version being read.
func (r *Reader) Manifest() Manifest { return r.m }

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(p) == 0 {
		return 0, r.errIfNoData()
	}
	for r.off == len(r.buf) {
		if r.err != nil {
			return 0, r.err
		}
		r.load()
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

func (r *Reader) errIfNoData() error {
	if r.off < len(r.buf) {
		return nil
	}
	return r.err
}

// WriteTo implements io.WriterTo, so io.Copy from a Reader writes whole
// chunks without an intermediate buffer.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		b, err := r.take()
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		n, err := w.Write(b)
		total += int64(n)
		if err != nil {
			return total, err
		}
		if n < len(b) {
			return total, io.ErrShortWrite
		}
	}
}

// take returns the unread rest of the current chunk, loading the next one
// if needed, and marks it read. WriteTo writes it without r.mu held, so a
// slow destination does not hold up Store.Close; the bytes stay valid
// because the buffer is only refilled by the next take, from the same
// goroutine.
func (r *Reader) take() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.off == len(r.buf) {
		if r.err != nil {
			return nil, r.err
		}
		r.load()
	}
	b := r.buf[r.off:]
	r.off = len(r.buf)
	return b, nil
}

// load reads and verifies the next chunk into r.buf, or sets r.err.
func (r *Reader) load() {
	r.buf, r.off = r.buf[:0], 0
	if r.it == nil {
		r.err = fmt.Errorf("read checkpoint: %w", ErrClosed)
		return
	}
	m := r.m
	bad := func(format string, args ...any) {
		r.corrupt = true
		r.err = fmt.Errorf("read checkpoint %s version %d: %s: %w", m.Variant, m.Version, fmt.Sprintf(format, args...), ErrCorrupt)
	}
	if r.next == m.Chunks {
		switch sum := hex.EncodeToString(r.whole.Sum(nil)); {
		case r.read != m.Size:
			bad("read %d bytes, manifest says %d", r.read, m.Size)
		case sum != m.SHA256:
			bad("sha-256 of state %s, manifest says %s", sum, m.SHA256)
		default:
			r.err = io.EOF
		}
		return
	}
	want := chunkKey(m.Variant, m.Version, r.next)
	if !r.it.Valid() || !bytes.Equal(r.it.Item().Key(), want) {
		bad("chunk %d missing", r.next)
		return
	}
	if r.buf == nil {
		r.buf = make([]byte, 0, m.ChunkSize)
	}
	buf, err := r.it.Item().ValueCopy(r.buf[:0])
	if err != nil {
		bad("chunk %d unreadable: %v", r.next, err)
		return
	}
	r.buf = buf
	last := r.next == m.Chunks-1
	if len(buf) > m.ChunkSize || (!last && len(buf) != m.ChunkSize) || len(buf) == 0 {
		bad("chunk %d has %d bytes, chunk size %d", r.next, len(buf), m.ChunkSize)
		r.buf = r.buf[:0]
		return
	}
	if sum := sha256.Sum256(buf); !bytes.Equal(sum[:], r.sums[32*r.next:32*r.next+32]) {
		bad("chunk %d checksum mismatch", r.next)
		r.buf = r.buf[:0]
		return
	}
	r.whole.Write(buf)
	r.read += int64(len(buf))
	r.next++
	r.it.Next()
}

// Close releases the reader's snapshot.
func (r *Reader) Close() error {
	r.mu.Lock()
	r.release()
	r.mu.Unlock()
	r.s.unregister(r)
	return nil
}

func (r *Reader) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.release()
}

// release closes the iterator and transaction; called with r.mu held (or
// before r is shared).
func (r *Reader) release() {
	if r.it != nil {
		r.it.Close()
		r.txn.Discard()
		r.it, r.txn = nil, nil
	}
	r.buf, r.off = nil, 0
	if r.err == nil || errors.Is(r.err, io.EOF) {
		r.err = fmt.Errorf("read checkpoint: %w", ErrClosed)
	}
}

func (r *Reader) sawCorrupt() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.corrupt
}

// Verify reads version of variant through and checks every checksum. It
// returns nil, or an error wrapping ErrCorrupt or ErrNotFound.
func (s *Store) Verify(ctx context.Context, variant string, version uint64) error {
	r, err := s.OpenVersion(variant, version)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer r.Close()
	if _, err := io.Copy(io.Discard, ctxReader{ctx, r}); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return nil
}

// LatestVerified returns the newest version of variant that verifies,
// skipping corrupt ones. If every version is corrupt the error wraps
// ErrCorrupt; if there are none, ErrNotFound.
func (s *Store) LatestVerified(ctx context.Context, variant string) (Manifest, error) {
	ms, err := s.Versions(variant)
	if err != nil {
		return Manifest{}, fmt.Errorf("latest verified: %w", err)
	}
	var lastErr error
	for _, m := range ms {
		err := s.Verify(ctx, variant, m.Version)
		switch {
		case err == nil:
			return m, nil
		case errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotFound):
			lastErr = err
			continue
		default:
			return Manifest{}, fmt.Errorf("latest verified: %w", err)
		}
	}
	if lastErr != nil && errors.Is(lastErr, ErrCorrupt) {
		return Manifest{}, fmt.Errorf("latest verified %s: no version verifies: %w", variant, lastErr)
	}
	return Manifest{}, fmt.Errorf("latest verified %s: no versions: %w", variant, ErrNotFound)
}

// Load streams the served version of variant (the pinned one, or else the
// latest) to fn, falling back to older versions while reading fails with
// ErrCorrupt. fn must read from the reader it is given and return its
// errors (wrapped is fine); whatever fn leaves unread is read and verified
// after it returns, so a version counts as loaded only if all of it checks.
// fn may be called several times, each time with a fresh reader; it must
// discard what an earlier failed call loaded. Load returns the manifest of
// the version fn loaded.
func (s *Store) Load(ctx context.Context, variant string, fn func(Manifest, io.Reader) error) (Manifest, error) {
	served, _, err := s.Served(variant)
	if err != nil {
		return Manifest{}, fmt.Errorf("load checkpoint: %w", err)
	}
	ms, err := s.Versions(variant)
	if err != nil {
		return Manifest{}, fmt.Errorf("load checkpoint: %w", err)
	}
	var lastErr error
	for _, m := range ms {
		if m.Version > served.Version {
			continue
		}
		if err := ctx.Err(); err != nil {
			return Manifest{}, fmt.Errorf("load checkpoint: %w", err)
		}
		r, err := s.OpenVersion(variant, m.Version)
		if errors.Is(err, ErrNotFound) {
			continue // pruned meanwhile
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("load checkpoint: %w", err)
		}
		err = fn(m, ctxReader{ctx, r})
		if err == nil {
			_, err = io.Copy(io.Discard, r)
		}
		corrupt := r.sawCorrupt()
		r.Close()
		if err == nil {
			return m, nil
		}
		if corrupt || errors.Is(err, ErrCorrupt) {
			s.log.Warn("checkpoints: corrupt version, falling back", "variant", variant, "version", m.Version, "err", err)
			if !errors.Is(err, ErrCorrupt) {
				err = fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
			lastErr = err
			continue
		}
		return Manifest{}, fmt.Errorf("load checkpoint %s version %d: %w", variant, m.Version, err)
	}
	if lastErr != nil {
		return Manifest{}, fmt.Errorf("load checkpoint %s: no version verifies: %w", variant, lastErr)
	}
	return Manifest{}, fmt.Errorf("load checkpoint %s: %w", variant, ErrNotFound)
}

// Versions lists the stored versions of variant, newest first.
func (s *Store) Versions(variant string) ([]Manifest, error) {
	if err := checkName("variant", variant); err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	if err := s.begin(); err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	defer s.end()
	var out []Manifest
	err := s.db.View(func(txn *badger.Txn) error {
		recs, err := listManifests(txn, variant)
		for _, r := range recs {
			out = append(out, r.manifest())
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list versions of %s: %w", variant, err)
	}
	return out, nil
}

// Manifest returns the manifest of one version.
func (s *Store) Manifest(variant string, version uint64) (Manifest, error) {
	if err := checkName("variant", variant); err != nil {
		return Manifest{}, fmt.Errorf("get manifest: %w", err)
	}
	if err := s.begin(); err != nil {
		return Manifest{}, fmt.Errorf("get manifest: %w", err)
	}
	defer s.end()
	var m Manifest
	err := s.db.View(func(txn *badger.Txn) error {
		rec, err := getManifest(txn, variant, version)
		m = rec.manifest()
		return err
	})
	if err != nil {
		return Manifest{}, fmt.Errorf("get manifest: %w", err)
	}
	return m, nil
}

// Variants lists every variant that has had a version created, in name
// order (some may have no versions left).
func (s *Store) Variants() ([]string, error) {
	if err := s.begin(); err != nil {
		return nil, fmt.Errorf("list variants: %w", err)
	}
	defer s.end()
	var out []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pNext)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			out = append(out, string(it.Item().Key()[len(pNext):]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list variants: %w", err)
	}
	return out, nil
}
