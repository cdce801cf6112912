package checkpoints

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func TestRoundTripSizes(t *testing.T) {
	s := openT(t, t.TempDir(), testOptions(t))
	const chunk = 64 << 10
	tests := []struct {
		name  string
		size  int64
		write int // size of each Write call; 0 means Save (ReadFrom)
		read  int // size of each Read call; 0 means io.Copy (WriteTo)
	}{
		{"empty", 0, 0, 0},
		{"one byte", 1, 0, 1},
		{"chunk minus one", chunk - 1, 1000, 0},
		{"exactly one chunk", chunk, 0, 7},
		{"chunk plus one", chunk + 1, 4096, 0},
		{"three and a half chunks", 3*chunk + chunk/2, 0, 0},
		{"odd writes and reads", 5*chunk + 3, 9973, 65537},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seed := uint64(i + 1)
			var m Manifest
			if tc.write == 0 {
				m = save(t, s, "v", seed, tc.size, Meta{Epoch: i})
			} else {
				w, err := s.Create("v", Meta{Epoch: i})
				if err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, tc.write)
				g := newGen(seed, tc.size)
				for {
					n, err := io.ReadFull(g, buf)
					if n > 0 {
						if _, werr := w.Write(buf[:n]); werr != nil {
							t.Fatalf("Write = %v", werr)
						}
					}
					if err != nil {
						break
					}
				}
				if err := w.Close(); err != nil {
					t.Fatalf("Close = %v", err)
				}
				m, err = s.Manifest("v", w.Version())
				if err != nil {
					t.Fatal(err)
				}
			}
			want := genSum(seed, tc.size)
			if m.Size != tc.size || m.SHA256 != want || m.Epoch != i {
				t.Fatalf("manifest = %+v; want size %d, sha %s, epoch %d", m, tc.size, want, i)
			}
			if wantChunks := int((tc.size + chunk - 1) / chunk); m.Chunks != wantChunks {
				t.Errorf("Chunks = %d; want %d", m.Chunks, wantChunks)
			}
			r, err := s.OpenVersion("v", m.Version)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			h := sha256.New()
			if tc.read == 0 {
				_, err = io.Copy(h, r)
			} else {
				_, err = io.CopyBuffer(h, struct{ io.Reader }{r}, make([]byte, tc.read))
			}
			if err != nil {
				t.Fatalf("read = %v", err)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != want {
				t.Errorf("read sha %s; want %s", got, want)
			}
		})
	}
}

// peakHeap samples HeapInuse while fn runs and returns the peak above the
// level before it.
func peakHeap(fn func()) (peak uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var max atomic.Uint64
	max.Store(base)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > max.Load() {
				max.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	fn()
	close(stop)
	wg.Wait()
	return max.Load() - base
}

// TestRoundTripLarge streams a 128 MiB state through the store with the
// default 4 MiB chunks and checks that neither direction holds anything like
// the whole state in memory.
func TestRoundTripLarge(t *testing.T) {
	const size = 128 << 20
	o := testOptions(t)
	o.ChunkSize = 0 // default, 4 MiB
	o.ValueLogFileSize = 0
	s := openT(t, t.TempDir(), o)
	want := genSum(42, size)

	var m Manifest
	writePeak := peakHeap(func() { m = save(t, s, "model1", 42, size, Meta{Epoch: 1}) })
	if m.Size != size || m.SHA256 != want || m.Chunks != size/DefaultChunkSize {
		t.Fatalf("manifest = %+v; want %d bytes in %d chunks, sha %s", m, size, size/DefaultChunkSize, want)
	}
	var got string
	var n int64
	var err error
	readPeak := peakHeap(func() { got, n, err = readAll(s, "model1", m.Version) })
	if err != nil || n != size || got != want {
		t.Fatalf("read back %d bytes, sha %s, err %v; want %d, %s", n, got, err, size, want)
	}
	t.Logf("peak heap above baseline: write %d MiB, read %d MiB, state %d MiB", writePeak>>20, readPeak>>20, size>>20)
	const limit = 48 << 20 // a few chunks plus Badger's buffers; the state is 128 MiB
	if writePeak > limit || readPeak > limit {
		t.Errorf("peak heap write %d MiB, read %d MiB; want under %d MiB", writePeak>>20, readPeak>>20, limit>>20)
	}
}

// corruptions damage chunk 1 of a version in different ways.
var corruptions = []struct {
	name string
	do   func(t *testing.T, s *Store, m Manifest)
}{
	{"flipped byte", func(t *testing.T, s *Store, m Manifest) {
		k := chunkKey(m.Variant, m.Version, 1)
		err := s.db.Update(func(txn *badger.Txn) error {
			item, err := txn.Get(k)
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			v[len(v)/2] ^= 0x01
			return txn.Set(k, v)
		})
		if err != nil {
			t.Fatal(err)
		}
	}},
	{"missing chunk", func(t *testing.T, s *Store, m Manifest) {
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(chunkKey(m.Variant, m.Version, 1)) }); err != nil {
			t.Fatal(err)
		}
	}},
	{"short chunk", func(t *testing.T, s *Store, m Manifest) {
		k := chunkKey(m.Variant, m.Version, 1)
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(k, []byte("short")) }); err != nil {
			t.Fatal(err)
		}
	}},
	{"whole-state checksum", func(t *testing.T, s *Store, m Manifest) {
		err := s.db.Update(func(txn *badger.Txn) error {
			rec, err := getManifest(txn, m.Variant, m.Version)
			if err != nil {
				return err
			}
			rec.SHA256 = genSum(999, 1)
			return setJSON(txn, manifestKey(m.Variant, m.Version), rec)
		})
		if err != nil {
			t.Fatal(err)
		}
	}},
}

func TestCorruptChunk(t *testing.T) {
	for _, tc := range corruptions {
		t.Run(tc.name, func(t *testing.T) {
			s := openT(t, t.TempDir(), testOptions(t))
			ctx := context.Background()
			good := save(t, s, "v", 1, 300<<10, Meta{Epoch: 1})
			bad := save(t, s, "v", 2, 300<<10, Meta{Epoch: 2})
			tc.do(t, s, bad)

			if err := s.Verify(ctx, "v", bad.Version); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Verify(bad) = %v; want ErrCorrupt", err)
			}
			if err := s.Verify(ctx, "v", good.Version); err != nil {
				t.Errorf("Verify(good) = %v", err)
			}
			if _, _, err := readAll(s, "v", bad.Version); !errors.Is(err, ErrCorrupt) {
				t.Errorf("read bad version: %v; want ErrCorrupt", err)
			}
			m, err := s.LatestVerified(ctx, "v")
			if err != nil || m.Version != good.Version {
				t.Errorf("LatestVerified = %d, %v; want %d", m.Version, err, good.Version)
			}

			// Load falls back to the good version, and the data fn saw last
			// is the good state.
			var calls []uint64
			var sum string
			m, err = s.Load(ctx, "v", func(m Manifest, r io.Reader) error {
				calls = append(calls, m.Version)
				h := sha256.New()
				_, err := io.Copy(h, r)
				sum = hex.EncodeToString(h.Sum(nil))
				return err
			})
			if err != nil || m.Version != good.Version {
				t.Fatalf("Load = %d, %v; want %d", m.Version, err, good.Version)
			}
			if want := []uint64{bad.Version, good.Version}; !slices.Equal(calls, want) {
				t.Errorf("Load tried versions %v; want %v", calls, want)
			}
			if sum != good.SHA256 {
				t.Errorf("Load fed sha %s; want %s", sum, good.SHA256)
			}
		})
	}
}

// TestCorruptValueLogOnDisk flips a byte of a chunk inside Badger's value
// log file, below Badger, as a failing disk would. In an older value-log
// file only the chunk checksum notices; in the newest one Badger truncates
// the file at the damage when it opens, and the chunks are missing.
func TestCorruptValueLogOnDisk(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after int64 // bytes written to another variant after the damaged version
	}{
		{"older value-log file", 3 << 20},
		{"newest value-log file", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := testOptions(t)
			s := openT(t, dir, o)
			good := save(t, s, "v", 1, 256<<10, Meta{})
			state, _ := io.ReadAll(newGen(7, 256<<10))
			bad, err := s.Save(context.Background(), "v", Meta{}, bytes.NewReader(state))
			if err != nil {
				t.Fatal(err)
			}
			if tc.after > 0 {
				save(t, s, "other", 8, tc.after, Meta{})
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			marker := state[64<<10+1000 : 64<<10+1256] // inside chunk 1
			files, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
			flipped := false
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if i := bytes.Index(b, marker); i >= 0 {
					b[i+100] ^= 0xff
					if err := os.WriteFile(f, b, 0o644); err != nil {
						t.Fatal(err)
					}
					flipped = true
					break
				}
			}
			if !flipped {
				t.Fatal("chunk bytes not found in any value log file")
			}
			s = openT(t, dir, o)
			ctx := context.Background()
			if err := s.Verify(ctx, "v", bad.Version); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Verify(bad) = %v; want ErrCorrupt", err)
			}
			m, err := s.Load(ctx, "v", func(Manifest, io.Reader) error { return nil })
			if err != nil || m.Version != good.Version {
				t.Errorf("Load = %d, %v; want fallback to %d", m.Version, err, good.Version)
			}
		})
	}
}

func TestAbandonedWrite(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	first := save(t, s, "v", 1, 100<<10, Meta{})

	// A writer that stored chunks but never committed, then the store is
	// closed under it, as a process exit would.
	w, err := s.Create("v", Meta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, newGen(2, 500<<10)); err != nil {
		t.Fatal(err)
	}
	if got := len(rawKeys(t, s, pChunk+"v/")); got <= first.Chunks {
		t.Fatalf("%d chunk keys before close; the abandoned writer stored none", got)
	}
	if vs := versionsOf(t, s, "v"); !slices.Equal(vs, []uint64{first.Version}) {
		t.Errorf("Versions during write = %v; want only %d", vs, first.Version)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after store Close = %v; want ErrClosed", err)
	}
	if _, err := w.Commit(); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after store Close = %v; want ErrClosed", err)
	}

	s = openT(t, dir, o)
	if vs := versionsOf(t, s, "v"); !slices.Equal(vs, []uint64{first.Version}) {
		t.Errorf("Versions after reopen = %v; want %d", vs, first.Version)
	}
	if got := len(rawKeys(t, s, pChunk+"v/")); got != first.Chunks {
		t.Errorf("%d chunk keys after reopen; want %d (orphans removed)", got, first.Chunks)
	}
	next := save(t, s, "v", 3, 10, Meta{})
	if next.Version <= w.Version() {
		t.Errorf("next version %d; want above the abandoned %d", next.Version, w.Version())
	}

	// Abort removes the chunks at once.
	w, err = s.Create("v", Meta{})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(w, newGen(4, 300<<10))
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if got := len(rawKeys(t, s, chunkPrefixString(w))); got != 0 {
		t.Errorf("%d chunk keys after Abort; want 0", got)
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close after Abort = %v; want nil", err)
	}
}

func chunkPrefixString(w *Writer) string { return string(chunkPrefix(w.variant, w.version)) }

func TestSaveFailingReader(t *testing.T) {
	s := openT(t, t.TempDir(), testOptions(t))
	boom := errors.New("boom")
	r := io.MultiReader(newGen(1, 200<<10), iotestErr{boom})
	if _, err := s.Save(context.Background(), "v", Meta{}, r); !errors.Is(err, boom) {
		t.Fatalf("Save = %v; want boom", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Save(ctx, "v", Meta{}, newGen(1, 10)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Save(cancelled) = %v; want context.Canceled", err)
	}
	if vs := versionsOf(t, s, "v"); len(vs) != 0 {
		t.Errorf("Versions = %v; want none", vs)
	}
	if keys := rawKeys(t, s, pChunk); len(keys) != 0 {
		t.Errorf("%d chunk keys left; want 0", len(keys))
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

func TestRetention(t *testing.T) {
	type step struct {
		acc float64
		pin bool // pin this version once written
	}
	tests := []struct {
		name  string
		keep  int
		steps []step
		want  []uint64 // surviving versions, newest first
	}{
		{"last three", 3, []step{{0.1, false}, {0.2, false}, {0.3, false}, {0.4, false}, {0.5, false}}, []uint64{5, 4, 3}},
		{"plus best", 3, []step{{0.1, false}, {0.9, false}, {0.3, false}, {0.4, false}, {0.5, false}, {0.6, false}}, []uint64{6, 5, 4, 2}},
		{"plus pinned", 2, []step{{0.5, false}, {0.1, true}, {0.2, false}, {0.3, false}, {0.4, false}}, []uint64{5, 4, 2, 1}},
		{"best tie keeps newest", 1, []step{{0.7, false}, {0.7, false}, {0.1, false}}, []uint64{3, 2}},
		{"fewer than keep", 3, []step{{0.1, false}, {0.2, false}}, []uint64{2, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t)
			o.KeepVersions = tc.keep
			s := openT(t, t.TempDir(), o)
			for i, st := range tc.steps {
				m := save(t, s, "v", uint64(i), 70<<10, Meta{ValAccuracy: st.acc})
				if st.pin {
					if err := s.Pin("v", m.Version); err != nil {
						t.Fatal(err)
					}
				}
			}
			if got := versionsOf(t, s, "v"); !slices.Equal(got, tc.want) {
				t.Errorf("Versions = %v; want %v", got, tc.want)
			}
			// Only the chunks of surviving versions are left.
			var wantChunks int
			for _, v := range tc.want {
				m, err := s.Manifest("v", v)
				if err != nil {
					t.Fatal(err)
				}
				wantChunks += m.Chunks
			}
			if got := len(rawKeys(t, s, pChunk)); got != wantChunks {
				t.Errorf("%d chunk keys; want %d", got, wantChunks)
			}
		})
	}
}

func vlogBytes(t testing.TB, dir string) int64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func TestGCReclaimsDeletedVersions(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(t)
	o.KeepVersions = 1
	s := openT(t, dir, o)
	ctx := context.Background()
	var last Manifest
	for i := range 12 {
		last = save(t, s, "v", uint64(i), 2<<20, Meta{ValAccuracy: float64(i)})
	}
	if got := versionsOf(t, s, "v"); !slices.Equal(got, []uint64{last.Version}) {
		t.Fatalf("Versions = %v; want %d", got, last.Version)
	}
	before := vlogBytes(t, dir)
	if err := s.RunGC(ctx); err != nil {
		t.Fatalf("RunGC = %v", err)
	}
	after := vlogBytes(t, dir)
	t.Logf("value log: %d MiB before GC, %d MiB after", before>>20, after>>20)
	if after > before/2 {
		t.Errorf("value log %d bytes after GC, %d before; want at least half reclaimed", after, before)
	}
	if err := s.Verify(ctx, "v", last.Version); err != nil {
		t.Errorf("Verify after GC = %v", err)
	}
	// A second run with nothing new to reclaim is a cheap no-op.
	if err := s.RunGC(ctx); err != nil {
		t.Errorf("second RunGC = %v", err)
	}
}

func TestBackgroundGCStopsOnClose(t *testing.T) {
	before := runtime.NumGoroutine()
	o := testOptions(t)
	o.GCInterval = 5 * time.Millisecond
	o.KeepVersions = 1
	s, err := Open(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		save(t, s, "v", uint64(i), 1<<20, Meta{})
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
	if _, err := s.Versions("v"); !errors.Is(err, ErrClosed) {
		t.Errorf("Versions after Close = %v; want ErrClosed", err)
	}
}

func TestCloseKillsReaders(t *testing.T) {
	s, err := Open(t.TempDir(), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	m := save(t, s, "v", 1, 300<<10, Meta{})
	r, err := s.OpenVersion("v", m.Version)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, r); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after store Close = %v; want ErrClosed", err)
	}
	r.Close()
}

// A reader keeps its snapshot while retention deletes the version.
func TestReaderSurvivesRetention(t *testing.T) {
	o := testOptions(t)
	o.KeepVersions = 1
	s := openT(t, t.TempDir(), o)
	old := save(t, s, "v", 1, 300<<10, Meta{ValAccuracy: 0.1})
	r, err := s.OpenVersion("v", old.Version)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	save(t, s, "v", 2, 300<<10, Meta{ValAccuracy: 0.2})
	if vs := versionsOf(t, s, "v"); slices.Contains(vs, old.Version) {
		t.Fatalf("Versions = %v; retention kept %d", vs, old.Version)
	}
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatalf("read pruned version through open reader: %v", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != old.SHA256 {
		t.Errorf("sha %s; want %s", got, old.SHA256)
	}
}

func TestServingPointer(t *testing.T) {
	o := testOptions(t)
	o.KeepVersions = 10
	s := openT(t, t.TempDir(), o)
	if _, _, err := s.Served("v"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Served(empty) = %v; want ErrNotFound", err)
	}
	for i := range 3 {
		save(t, s, "v", uint64(i), 1000, Meta{Epoch: i})
	}
	type check struct {
		op         string
		arg        uint64
		wantErr    error
		wantServed uint64
		wantPinned bool
	}
	steps := []check{
		{"none", 0, nil, 3, false},
		{"pin", 1, nil, 1, true},
		{"save", 0, nil, 1, true}, // a new version does not move a pin
		{"rollback", 0, ErrNotFound, 1, true},
		{"pin", 9, ErrNotFound, 1, true},
		{"delete", 1, ErrPinned, 1, true},
		{"unpin", 0, nil, 4, false},
		{"rollback", 0, nil, 3, true},
		{"rollback", 0, nil, 2, true},
		{"delete", 1, nil, 2, true},
		{"rollback", 0, ErrNotFound, 2, true},
		{"unpin", 0, nil, 4, false},
		{"delete", 4, nil, 3, false},
	}
	for i, st := range steps {
		var err error
		switch st.op {
		case "pin":
			err = s.Pin("v", st.arg)
		case "unpin":
			err = s.Unpin("v")
		case "rollback":
			_, err = s.Rollback("v")
		case "delete":
			err = s.Delete("v", st.arg)
		case "save":
			save(t, s, "v", 99, 1000, Meta{})
		}
		if !errors.Is(err, st.wantErr) {
			t.Fatalf("step %d: %s(%d) = %v; want %v", i, st.op, st.arg, err, st.wantErr)
		}
		m, pinned, err := s.Served("v")
		if err != nil || m.Version != st.wantServed || pinned != st.wantPinned {
			t.Fatalf("step %d: after %s(%d) Served = %d, %v, %v; want %d, %v", i, st.op, st.arg, m.Version, pinned, err, st.wantServed, st.wantPinned)
		}
		// Load serves what Served says.
		lm, err := s.Load(context.Background(), "v", func(Manifest, io.Reader) error { return nil })
		if err != nil || lm.Version != st.wantServed {
			t.Fatalf("step %d: Load = %d, %v; want %d", i, lm.Version, err, st.wantServed)
		}
	}
}

func TestPinnedSurvivesRetention(t *testing.T) {
	o := testOptions(t)
	o.KeepVersions = 1
	s := openT(t, t.TempDir(), o)
	save(t, s, "v", 1, 1000, Meta{ValAccuracy: 0.9})
	save(t, s, "v", 2, 1000, Meta{ValAccuracy: 0.1})
	if err := s.Pin("v", 2); err != nil {
		t.Fatal(err)
	}
	save(t, s, "v", 3, 1000, Meta{ValAccuracy: 0.2})
	save(t, s, "v", 4, 1000, Meta{ValAccuracy: 0.3})
	if got, want := versionsOf(t, s, "v"), []uint64{4, 2, 1}; !slices.Equal(got, want) {
		t.Errorf("Versions = %v; want %v (latest, pinned, best)", got, want)
	}
	if err := s.Unpin("v"); err != nil {
		t.Fatal(err)
	}
	if got, want := versionsOf(t, s, "v"), []uint64{4, 1}; !slices.Equal(got, want) {
		t.Errorf("after Unpin, Versions = %v; want %v", got, want)
	}
}

func TestNames(t *testing.T) {
	s := openT(t, t.TempDir(), testOptions(t))
	for _, name := range []string{"", "a/b", "nul\x00", string(make([]byte, 129))} {
		if _, err := s.Create(name, Meta{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%q) = %v; want ErrInvalid", name, err)
		}
	}
	// Variants whose names are prefixes of each other stay apart.
	save(t, s, "model1", 1, 10, Meta{})
	save(t, s, "model10", 2, 10, Meta{})
	save(t, s, "model10", 3, 10, Meta{})
	if got := versionsOf(t, s, "model1"); !slices.Equal(got, []uint64{1}) {
		t.Errorf("Versions(model1) = %v; want [1]", got)
	}
	vs, err := s.Variants()
	if err != nil || !slices.Equal(vs, []string{"model1", "model10"}) {
		t.Errorf("Variants = %v, %v; want [model1 model10]", vs, err)
	}
}

// Close must not wait for a writer whose source is blocked; the writer
// fails afterwards, and the next Open is clean.
func TestCloseDuringSave(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	saved := make(chan error, 1)
	go func() {
		_, err := s.Save(context.Background(), "v", Meta{}, pr)
		pr.CloseWithError(err) // unblock the test's writes
		saved <- err
	}()
	if _, err := io.Copy(pw, newGen(1, 300<<10)); err != nil { // some chunks stored, then the source stalls
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a stalled Save")
	}
	io.Copy(pw, newGen(2, 200<<10))
	pw.Close()
	if err := <-saved; !errors.Is(err, ErrClosed) {
		t.Errorf("Save = %v; want ErrClosed", err)
	}
	s = openT(t, dir, testOptions(t))
	if vs := versionsOf(t, s, "v"); len(vs) != 0 {
		t.Errorf("Versions = %v; want none", vs)
	}
	if keys := rawKeys(t, s, pChunk); len(keys) != 0 {
		t.Errorf("%d chunk keys after reopen; want 0", len(keys))
	}
}
