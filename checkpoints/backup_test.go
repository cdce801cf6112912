package checkpoints

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// populate fills a store with a bit of everything.
func populate(t *testing.T, s *Store) {
	t.Helper()
	for i := range 3 {
		save(t, s, "model1", uint64(i), 200<<10+int64(i), Meta{Epoch: i, ValAccuracy: float64(i) / 10})
		save(t, s, "model2", uint64(10+i), 70<<10, Meta{Epoch: i})
	}
	if err := s.Pin("model1", 2); err != nil {
		t.Fatal(err)
	}
	r, err := s.CreateRun(Run{ID: "run-1", Variant: "model1", Config: RunConfig{Epochs: 3, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for e := range 3 {
		if err := s.AddEpoch(r.ID, Epoch{Epoch: e, Loss: 1 / float64(e+1)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.FinishRun(r.ID, OutcomeCompleted, "", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateJob(Job{ID: "job-1", Kind: "train", Request: []byte{1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	big, _ := readN(newGen(5, 100<<10))
	for _, img := range [][]byte{[]byte("small image"), big} {
		if _, err := s.AddFeedback(Feedback{Label: 2, Image: img}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBackupRestore(t *testing.T) {
	ctx := context.Background()
	src := openT(t, t.TempDir(), testOptions(t))
	populate(t, src)
	var buf bytes.Buffer
	n, err := src.Backup(ctx, &buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("Backup = %d, %v; wrote %d", n, err, buf.Len())
	}
	want := dump(t, src)

	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"plain", nil},
		{"into encrypted store", bytes.Repeat([]byte{1}, 16)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "restored") // does not exist yet
			o := testOptions(t)
			o.EncryptionKey = tc.key
			if err := Restore(ctx, dir, bytes.NewReader(buf.Bytes()), o); err != nil {
				t.Fatalf("Restore = %v", err)
			}
			dst := openT(t, dir, o)
			if got := dump(t, dst); !equalDumps(got, want) {
				t.Errorf("restored store has %d keys, source %d, or values differ", len(got), len(want))
			}
			for _, v := range []string{"model1", "model2"} {
				ms, err := dst.Versions(v)
				if err != nil || len(ms) == 0 {
					t.Fatalf("Versions(%s) = %v, %v", v, ms, err)
				}
				for _, m := range ms {
					if err := dst.Verify(ctx, v, m.Version); err != nil {
						t.Errorf("Verify(%s, %d) = %v", v, m.Version, err)
					}
				}
			}
			if m, pinned, err := dst.Served("model1"); err != nil || m.Version != 2 || !pinned {
				t.Errorf("Served(model1) = %d, %v, %v; want pinned 2", m.Version, pinned, err)
			}
			if h, err := dst.History("run-1"); err != nil || len(h) != 3 {
				t.Errorf("History = %v, %v; want 3 epochs", h, err)
			}
		})
	}
}

func TestRestoreRefuses(t *testing.T) {
	ctx := context.Background()
	src := openT(t, t.TempDir(), testOptions(t))
	populate(t, src)
	var buf bytes.Buffer
	if _, err := src.Backup(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name   string
		backup []byte
		want   error
	}{
		{"flipped byte", mutate(func(b []byte) []byte { b[len(b)/2] ^= 1; return b }), ErrCorrupt},
		{"truncated", good[:len(good)-100], ErrCorrupt},
		{"truncated checksum", good[:len(good)-1], ErrCorrupt},
		{"not a backup", []byte("hello, world, this is not a backup at all"), ErrCorrupt},
		{"empty", nil, ErrCorrupt},
		{"future schema", mutate(func(b []byte) []byte { copy(b[12:], be32(SchemaVersion+1)); return b }), ErrSchema},
		{"future format", mutate(func(b []byte) []byte { copy(b[8:], be32(2)); return b }), ErrSchema},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := Restore(ctx, dir, bytes.NewReader(tc.backup), testOptions(t))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Restore = %v; want %v", err, tc.want)
			}
			// Whatever a failed restore left behind is not mistaken for a store.
			if s, err := Open(dir, testOptions(t)); err == nil {
				if len(rawKeys(t, s, "")) > 1 {
					t.Errorf("Open after failed restore succeeded on a store with data")
				}
				s.Close()
			} else if !errors.Is(err, ErrSchema) {
				t.Errorf("Open after failed restore = %v; want ErrSchema", err)
			}
		})
	}

	t.Run("directory not empty", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "x"), nil, 0o644)
		if err := Restore(ctx, dir, bytes.NewReader(good), testOptions(t)); !errors.Is(err, ErrNotEmpty) {
			t.Errorf("Restore = %v; want ErrNotEmpty", err)
		}
	})
}

// TestBackupOnline takes a backup while versions are being written: the
// backup is a consistent snapshot, every version in it verifies.
func TestBackupOnline(t *testing.T) {
	ctx := context.Background()
	o := testOptions(t)
	o.KeepVersions = 2
	src := openT(t, t.TempDir(), o)
	save(t, src, "v", 0, 300<<10, Meta{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := uint64(1); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := src.Save(ctx, "v", Meta{}, newGen(i, 300<<10)); err != nil {
				t.Errorf("Save during backup = %v", err)
				return
			}
		}
	})
	var buf bytes.Buffer
	for range 3 {
		buf.Reset()
		if _, err := src.Backup(ctx, &buf); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	dir := t.TempDir()
	if err := Restore(ctx, dir, &buf, o); err != nil {
		t.Fatal(err)
	}
	dst := openT(t, dir, o)
	ms, err := dst.Versions("v")
	if err != nil || len(ms) == 0 {
		t.Fatalf("Versions = %v, %v", ms, err)
	}
	for _, m := range ms {
		if err := dst.Verify(ctx, "v", m.Version); err != nil {
			t.Errorf("Verify(%d) = %v", m.Version, err)
		}
	}
}
