package checkpoints

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Sentinel errors. Every error returned by this package that has one of these
// causes wraps it, so callers test with errors.Is.
var (
	// ErrNotFound: the version, run, job or feedback example does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: stored bytes do not match their checksum, a chunk is
	// missing, or a backup stream is damaged.
	ErrCorrupt = errors.New("corrupt data")
	// ErrLocked: another process (or another Store in this process) has the
	// directory open.
	ErrLocked = errors.New("store in use by another process")
	// ErrSchema: the store was written with a schema this code does not know
	// (a newer flowerd), or is not a flowerd store at all.
	ErrSchema = errors.New("unsupported store schema")
	// ErrEncryptionKey: the encryption key is missing, malformed or does not
	// match the one the store was created with.
	ErrEncryptionKey = errors.New("bad encryption key")
	// ErrClosed: the store, reader or writer has been closed.
	ErrClosed = errors.New("store closed")
	// ErrInvalid: an argument is malformed (empty or bad name, bad option).
	ErrInvalid = errors.New("invalid argument")
	// ErrExists: a run or job with that ID already exists.
	ErrExists = errors.New("already exists")
	// ErrPinned: the version is pinned for serving and cannot be deleted.
	ErrPinned = errors.New("version is pinned")
	// ErrFull: the feedback store has reached its count or size cap.
	ErrFull = errors.New("feedback store full")
	// ErrJobFinished: the job is in a terminal state and cannot change state.
	ErrJobFinished = errors.New("job already finished")
	// ErrNotEmpty: Restore was pointed at a directory that already has data.
	ErrNotEmpty = errors.New("directory not empty")
)

// SchemaVersion is the layout of keys and records this code writes. A store
// whose schema key holds a larger number is refused with ErrSchema.
const SchemaVersion = 1

// Defaults for the zero values of Options.
const (
	DefaultChunkSize        = 4 << 20
	DefaultKeepVersions     = 3
	DefaultMemTableSize     = 8 << 20
	DefaultBlockCacheSize   = 8 << 20
	DefaultIndexCacheSize   = 4 << 20
	DefaultValueLogFileSize = 128 << 20
	DefaultGCInterval       = 10 * time.Minute
	DefaultMaxFeedbackCount = 10000
	DefaultMaxFeedbackBytes = 256 << 20
)

// valueThreshold: values at least this large go to Badger's value log, the
// rest live in the LSM tree. Chunks and most images go to the value log;
// records (runs, epochs, jobs, manifests) stay in the tree.
const valueThreshold = 32 << 10

// Options configure a Store. The zero value of every field means its
// documented default, so Options{} is a sensible small-machine setup: about
// 30 MiB of Badger memory in all (two memtables, block and index caches).
type Options struct {
	// SyncWrites makes every record write (runs, epochs, jobs, feedback)
	// fsync before returning. Default false: those survive a process crash
	// but may lose the last moments on power loss. Checkpoint versions are
	// always synced before and after their manifest, whatever this says.
	SyncWrites bool

	// ChunkSize is the size of one stored chunk of a checkpoint, in bytes.
	// Default 4 MiB; allowed 64 KiB to 64 MiB. A writer holds one chunk in
	// memory, a reader holds one chunk.
	ChunkSize int

	// KeepVersions is how many of the newest versions of each variant
	// retention keeps, besides the best by validation accuracy and the pinned
	// one. Default 3.
	KeepVersions int

	// MemTableSize is the size of one Badger memtable (two are kept).
	// Default 8 MiB; at least 1 MiB.
	MemTableSize int64
	// BlockCacheSize is Badger's block cache. Default 8 MiB.
	BlockCacheSize int64
	// IndexCacheSize bounds the memory for table indexes and bloom filters.
	// Default 4 MiB. It must be positive when EncryptionKey is set; a
	// non-positive value is replaced by the default.
	IndexCacheSize int64
	// ValueLogFileSize is the size of one value-log file; value-log GC
	// reclaims space one whole file at a time. Default 128 MiB; allowed
	// 1 MiB to 1 GiB.
	ValueLogFileSize int64

	// EncryptionKey, when set, encrypts the store at rest with AES. It must
	// be 16, 24 or 32 bytes and the same on every Open. Default: none.
	// Backups are written in plain text; protect them accordingly.
	EncryptionKey []byte

	// GCInterval is how often a background goroutine reclaims the space of
	// deleted checkpoints (value-log GC). Default 10 minutes; negative
	// disables it (RunGC still works).
	GCInterval time.Duration

	// MaxFeedbackCount and MaxFeedbackBytes cap the feedback examples kept;
	// AddFeedback beyond either returns ErrFull. Defaults 10000 and 256 MiB.
	MaxFeedbackCount int
	MaxFeedbackBytes int64

	// Logger receives Badger's warnings and errors, and the store's own
	// background errors. Default slog.Default(). Badger's chatty info
	// messages are logged at debug level.
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.ChunkSize < 64<<10 || o.ChunkSize > 64<<20 {
		return o, fmt.Errorf("chunk size %d outside [64 KiB, 64 MiB]: %w", o.ChunkSize, ErrInvalid)
	}
	if o.KeepVersions <= 0 {
		o.KeepVersions = DefaultKeepVersions
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.MemTableSize < 1<<20 {
		return o, fmt.Errorf("memtable size %d below 1 MiB: %w", o.MemTableSize, ErrInvalid)
	}
	if o.BlockCacheSize <= 0 {
		o.BlockCacheSize = DefaultBlockCacheSize
	}
	if o.IndexCacheSize <= 0 {
		o.IndexCacheSize = DefaultIndexCacheSize
	}
	if o.ValueLogFileSize == 0 {
		o.ValueLogFileSize = DefaultValueLogFileSize
	}
	if o.ValueLogFileSize < 1<<20 || o.ValueLogFileSize > 1<<30 {
		return o, fmt.Errorf("value log file size %d outside [1 MiB, 1 GiB]: %w", o.ValueLogFileSize, ErrInvalid)
	}
	switch len(o.EncryptionKey) {
	case 0, 16, 24, 32:
	default:
		return o, fmt.Errorf("encryption key of %d bytes, want 16, 24 or 32: %w", len(o.EncryptionKey), ErrEncryptionKey)
	}
	if o.GCInterval == 0 {
		o.GCInterval = DefaultGCInterval
	}
	if o.MaxFeedbackCount <= 0 {
		o.MaxFeedbackCount = DefaultMaxFeedbackCount
	}
	if o.MaxFeedbackBytes <= 0 {
		o.MaxFeedbackBytes = DefaultMaxFeedbackBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Store is an open checkpoint store. Its methods are safe for concurrent use.
type Store struct {
	db     *badger.DB
	unlock func() error // releases lockDir's lock
	opts   Options
	log    *slog.Logger

	mu      sync.RWMutex
	closed  bool
	readers map[*Reader]struct{} // open readers, killed by Close
	ops     sync.WaitGroup       // method calls in flight

	quit    chan struct{} // closed by Close
	gcDone  chan struct{} // closed when the GC goroutine has returned
	garbage atomic.Bool   // something was deleted since the last RunGC

	// writeGate is held shared by every write and exclusively by gc while
	// it flushes the memtable (Badger fails writes, instead of making them
	// wait, during that flush) and while it rewrites a value-log file.
	writeGate sync.RWMutex
}

// Open opens (creating if needed) the store in dir. It locks the directory
// (dir/flowerd.lock, and Badger's own lock), so a second Open of the same
// directory, from this process or another, fails at once with ErrLocked.
// It removes empty log files a killed process can leave behind, checks the
// schema version, removes the chunks of writes that never committed, and
// starts the value-log GC goroutine that Close stops.
func Open(dir string, opts Options) (*Store, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db, err := openDB(dir, o)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{
		db:      db,
		unlock:  unlock,
		opts:    o,
		log:     o.Logger,
		readers: map[*Reader]struct{}{},
		quit:    make(chan struct{}),
		gcDone:  make(chan struct{}),
	}
	if err := s.checkSchema(); err != nil {
		db.Close()
		unlock()
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := s.removeOrphans(); err != nil {
		db.Close()
		unlock()
		return nil, fmt.Errorf("open store: remove unfinished writes: %w", err)
	}
	go s.gcLoop()
	return s, nil
}

// lockFile is flowerd's lock in the store directory (see lockDir).
const lockFile = "flowerd.lock"

// openDB opens Badger in dir; the caller holds lockDir's lock.
func openDB(dir string, o Options) (*badger.DB, error) {
	if canRepair {
		if err := removeEmptyLogs(dir, o.Logger); err != nil {
			return nil, err
		}
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{o.Logger}).
		WithSyncWrites(o.SyncWrites).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(2).
		WithBlockCacheSize(o.BlockCacheSize).
		WithIndexCacheSize(o.IndexCacheSize).
		WithValueLogFileSize(o.ValueLogFileSize).
		WithValueThreshold(valueThreshold).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithMetricsEnabled(false).
		WithEncryptionKey(o.EncryptionKey)
	db, err := badger.Open(bo)
	if err != nil {
		return nil, mapOpenError(err)
	}
	return db, nil
}

// removeEmptyLogs deletes empty memtable and value-log files. A process
// killed between creating such a file and writing its header leaves one,
// and Badger v4.9.6 then refuses to open (dgraph-io/badger#2207). An empty
// file holds no data, so removing it loses nothing.
func removeEmptyLogs(dir string, log *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".mem") && !strings.HasSuffix(name, ".vlog") {
			continue
		}
		info, err := e.Info()
		if err != nil || info.Size() != 0 || !info.Mode().IsRegular() {
			continue
		}
		log.Warn("checkpoints: removing empty log file left by a crash", "file", name)
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("remove empty %s: %w", name, err)
		}
	}
	return nil
}

// mapOpenError turns Badger's open errors into this package's sentinels.
// Badger formats the directory-lock error with %v, so only its text tells.
func mapOpenError(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "Another process is using this Badger database"):
		return fmt.Errorf("%w: %v", ErrLocked, err)
	case errors.Is(err, badger.ErrEncryptionKeyMismatch),
		strings.Contains(msg, "Encryption key mismatch"),
		strings.Contains(msg, "Invalid encryption key"):
		return fmt.Errorf("%w: %v", ErrEncryptionKey, err)
	}
	return err
}

var schemaKey = []byte("schema")

func (s *Store) checkSchema() error {
	return s.update(func(txn *badger.Txn) error {
		item, err := txn.Get(schemaKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			it := txn.NewIterator(badger.IteratorOptions{})
			it.Rewind()
			empty := !it.Valid()
			it.Close()
			if !empty {
				return fmt.Errorf("store has data but no schema version (unfinished restore, or not a flowerd store): %w", ErrSchema)
			}
			return txn.Set(schemaKey, be32(SchemaVersion))
		}
		if err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		return checkSchemaVersion(v)
	})
}

func checkSchemaVersion(v []byte) error {
	if len(v) != 4 {
		return fmt.Errorf("schema version of %d bytes: %w", len(v), ErrSchema)
	}
	switch n := binary.BigEndian.Uint32(v); {
	case n > SchemaVersion:
		return fmt.Errorf("store schema %d is newer than supported %d: %w", n, SchemaVersion, ErrSchema)
	case n < 1:
		return fmt.Errorf("store schema %d: %w", n, ErrSchema)
	}
	return nil
}

// Close stops the GC goroutine, kills open readers (their next call returns
// ErrClosed), makes open writers fail with ErrClosed (their chunks are
// removed by the next Open), waits for method calls in flight, and closes
// Badger. Calling Close again is a no-op.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	rs := make([]*Reader, 0, len(s.readers))
	for r := range s.readers {
		rs = append(rs, r)
	}
	s.mu.Unlock()

	close(s.quit)
	for _, r := range rs {
		r.kill()
	}
	s.ops.Wait()
	<-s.gcDone
	err := s.db.Close()
	if uerr := s.unlock(); err == nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// begin marks a method call in flight; Close waits for it. Every exported
// method that touches Badger calls it and defers end.
func (s *Store) begin() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.ops.Add(1)
	return nil
}

func (s *Store) end() { s.ops.Done() }

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

func (s *Store) register(r *Reader) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.readers[r] = struct{}{}
	return nil
}

func (s *Store) unregister(r *Reader) {
	s.mu.Lock()
	delete(s.readers, r)
	s.mu.Unlock()
}

// update runs fn in a read-write transaction, retrying on conflicts.
func (s *Store) update(fn func(*badger.Txn) error) error {
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	for i := 0; ; i++ {
		err := s.db.Update(fn)
		if errors.Is(err, badger.ErrConflict) && i < 32 {
			time.Sleep(time.Duration(i) * time.Millisecond)
			continue
		}
		return err
	}
}

// deleteKeys deletes keys, splitting into several transactions if needed.
// It is not atomic; callers use it only for data that is already invisible
// (chunks whose manifest is gone).
func (s *Store) deleteKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	s.writeGate.RLock()
	defer s.writeGate.RUnlock()
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for _, k := range keys {
		err := txn.Delete(k)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = s.db.NewTransaction(true)
			err = txn.Delete(k)
		}
		if err != nil {
			return err
		}
	}
	if err := txn.Commit(); err != nil {
		return err
	}
	s.garbage.Store(true)
	return nil
}

func (s *Store) gcLoop() {
	defer close(s.gcDone)
	if s.opts.GCInterval < 0 {
		return
	}
	t := time.NewTicker(s.opts.GCInterval)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			if err := s.gc(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("checkpoints: value-log gc", "err", err)
			}
		}
	}
}

// RunGC reclaims the disk space of deleted checkpoints and feedback now,
// instead of waiting for the background GC. If anything was deleted since
// the last run it first flushes and compacts Badger's tree so that the value
// log learns which bytes are dead (this blocks writes for a moment), then
// rewrites value-log files that are at least half garbage.
func (s *Store) RunGC(ctx context.Context) error {
	if err := s.begin(); err != nil {
		return fmt.Errorf("run gc: %w", err)
	}
	defer s.end()
	if err := s.gc(ctx); err != nil {
		return fmt.Errorf("run gc: %w", err)
	}
	return nil
}

var flushKey = []byte("gc/flush")

func (s *Store) gc(ctx context.Context) error {
	if s.garbage.Swap(false) {
		// Tombstones sit in the memtable until it fills, which for a store
		// of large chunks can take very long, and Badger only learns about
		// dead value-log bytes when compaction drops the old versions. So
		// force both: DropPrefix of a scratch key flushes the memtable,
		// Flatten compacts the levels.
		if err := s.flushMemtable(); err != nil {
			s.garbage.Store(true)
			return fmt.Errorf("flush memtable: %w", err)
		}
		if err := s.db.Flatten(1); err != nil {
			s.garbage.Store(true)
			return fmt.Errorf("compact: %w", err)
		}
	}
	for ctx.Err() == nil {
		// Badger v4.9.6 reads the memtable's max version without a lock
		// as a value-log rewrite starts, racing with any write; keep this
		// store's writes out while one file is rewritten.
		s.writeGate.Lock()
		err := s.db.RunValueLogGC(0.5)
		s.writeGate.Unlock()
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (s *Store) flushMemtable() error {
	s.writeGate.Lock()
	defer s.writeGate.Unlock()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(flushKey, nil) }); err != nil {
		return err
	}
	return s.db.DropPrefix(flushKey)
}

// badgerLogger sends Badger's log lines to slog; its info lines are noise
// for flowerd and go to debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) log(level slog.Level, format string, args ...any) {
	if !b.l.Enabled(context.Background(), level) {
		return
	}
	b.l.Log(context.Background(), level, "badger: "+strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a...) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a...) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelDebug, f, a...) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(slog.LevelDebug-4, f, a...) }

// Key layout. Every kind of record has its own prefix; names (variants, run
// and job IDs) never contain '/', and numbers are big-endian so that key
// order is numeric order.
//
//	schema                          uint32 schema version
//	ck/n/<variant>                  uint64 last version number handed out
//	ck/m/<variant>/<ver:8>          manifest (JSON)
//	ck/c/<variant>/<ver:8><idx:4>   chunk bytes
//	sv/<variant>                    uint64 pinned version
//	run/<id>                        run record (JSON)
//	ri/<variant>/<start:8><id>      index: runs of a variant by start time
//	ra/<start:8><id>                index: all runs by start time
//	ep/<run>/<epoch:4>              epoch metrics (JSON)
//	job/<id>                        job record (JSON)
//	fb/<id:8>                       feedback example (binary)
//	fbn, fbu                        feedback sequence and usage (count, bytes)
//	ev/<variant>/<split>/<version:8> evaluation of a version on a split (JSON)
//	gc/flush                        scratch key for RunGC
const (
	pNext       = "ck/n/"
	pManifest   = "ck/m/"
	pChunk      = "ck/c/"
	pServe      = "sv/"
	pRun        = "run/"
	pRunIdx     = "ri/"
	pRunAll     = "ra/"
	pEpoch      = "ep/"
	pJob        = "job/"
	pFeedback   = "fb/"
	pEvaluation = "ev/"
)

var (
	feedbackSeqKey   = []byte("fbn")
	feedbackUsageKey = []byte("fbu")
)

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// checkName validates a variant name or ID used inside a key.
func checkName(what, name string) error {
	if name == "" || len(name) > 128 || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%s %q: must be 1 to 128 bytes without '/' or NUL: %w", what, name, ErrInvalid)
	}
	return nil
}

// getUint64 reads a big-endian counter; a missing key is 0.
func getUint64(txn *badger.Txn, k []byte) (uint64, bool, error) {
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var n uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("counter %q of %d bytes: %w", k, len(v), ErrCorrupt)
		}
		n = binary.BigEndian.Uint64(v)
		return nil
	})
	return n, true, err
}
