package checkpoints

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func TestSecondOpenFails(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, testOptions(t))
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v; want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open error %q does not say the store is in use", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, testOptions(t))
	if err != nil {
		t.Fatalf("Open after Close = %v", err)
	}
	s.Close()
}

func setRaw(t *testing.T, s *Store, k, v []byte) {
	t.Helper()
	if err := s.db.Update(func(txn *badger.Txn) error {
		if v == nil {
			return txn.Delete(k)
		}
		return txn.Set(k, v)
	}); err != nil {
		t.Fatal(err)
	}
}

func TestSchema(t *testing.T) {
	tests := []struct {
		name   string
		schema []byte // nil deletes the schema key
		want   error
	}{
		{"current", be32(SchemaVersion), nil},
		{"future", be32(SchemaVersion + 1), ErrSchema},
		{"zero", be32(0), ErrSchema},
		{"malformed", []byte("x"), ErrSchema},
		{"missing with data", nil, ErrSchema},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, testOptions(t))
			if err != nil {
				t.Fatal(err)
			}
			save(t, s, "v", 1, 10, Meta{})
			setRaw(t, s, schemaKey, tc.schema)
			s.Close()
			s, err = Open(dir, testOptions(t))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open with schema %v = %v; want %v", tc.schema, err, tc.want)
			}
			if err == nil {
				s.Close()
				return
			}
			// A refused store is closed again: it can be opened (and
			// refused) once more rather than being left locked.
			if _, err := Open(dir, testOptions(t)); !errors.Is(err, ErrSchema) {
				t.Errorf("second Open = %v; want ErrSchema again", err)
			}
		})
	}
}

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want error
	}{
		{"tiny chunk", Options{ChunkSize: 1000}, ErrInvalid},
		{"huge chunk", Options{ChunkSize: 1 << 30}, ErrInvalid},
		{"tiny memtable", Options{MemTableSize: 1000}, ErrInvalid},
		{"huge value log file", Options{ValueLogFileSize: 2 << 30}, ErrInvalid},
		{"short key", Options{EncryptionKey: []byte("short")}, ErrEncryptionKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Open(t.TempDir(), tc.o); !errors.Is(err, tc.want) {
				t.Errorf("Open(%+v) = %v; want %v", tc.o, err, tc.want)
			}
		})
	}
}

func TestEncryption(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{7}, 32)
	o := testOptions(t)
	o.EncryptionKey = key
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	marker := []byte("plain-text-marker-that-must-not-reach-disk")
	state := bytes.Repeat(marker, 10000) // several chunks
	m, err := s.Save(context.Background(), "v", Meta{RunID: "run-marker"}, bytes.NewReader(state))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddFeedback(Feedback{Label: 3, Image: bytes.Repeat(marker, 2)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, marker) || bytes.Contains(b, []byte("run-marker")) {
			t.Errorf("%s holds plain text", filepath.Base(p))
		}
		return nil
	})

	for _, tc := range []struct {
		name string
		key  []byte
		want error
	}{
		{"no key", nil, ErrEncryptionKey},
		{"wrong key", bytes.Repeat([]byte{8}, 32), ErrEncryptionKey},
		{"wrong length", key[:16], ErrEncryptionKey},
	} {
		o := testOptions(t)
		o.EncryptionKey = tc.key
		if s, err := Open(dir, o); !errors.Is(err, tc.want) {
			if err == nil {
				s.Close()
			}
			t.Errorf("Open with %s = %v; want %v", tc.name, err, tc.want)
		}
	}

	s = openT(t, dir, o)
	r, err := s.OpenVersion("v", m.Version)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, state) {
		t.Fatalf("read back %d bytes, %v; want the %d bytes written", len(got), err, len(state))
	}
	fb, err := s.ListFeedback(0, 0)
	if err != nil || len(fb) != 1 || !bytes.Equal(fb[0].Image, bytes.Repeat(marker, 2)) {
		t.Errorf("ListFeedback = %v, %v; want the one example", fb, err)
	}
}

// TestEmptyLogFilesAfterCrash recreates what a kill right after Badger
// creates a memtable or value-log file leaves behind: an empty file, which
// Badger v4.9.6 alone refuses to open.
func TestEmptyLogFilesAfterCrash(t *testing.T) {
	for _, name := range []string{"00099.mem", "000099.vlog"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, testOptions(t))
			if err != nil {
				t.Fatal(err)
			}
			m := save(t, s, "v", 1, 200<<10, Meta{})
			s.Close()
			if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			s = openT(t, dir, testOptions(t))
			if err := s.Verify(context.Background(), "v", m.Version); err != nil {
				t.Errorf("Verify = %v", err)
			}
			save(t, s, "v", 2, 200<<10, Meta{})
		})
	}
}
