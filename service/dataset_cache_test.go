package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/flowerd/flowerd/model"
	"github.com/flowerd/flowerd/model/dataset"
)

// cacheOptions is a server whose datasets are small: 67-pixel images, three
// per class.
func cacheOptions(dir string) Options {
	return Options{DatasetDir: dir, Model: model.Options{ImageSize: 67},
		Dataset: dataset.Options{TrainPerClass: 1, ValPerClass: 1, TestPerClass: 1, Seed: 3}}
}

// tinyDataset writes a dataset of two classes of three small JPEGs under dir.
func tinyDataset(t *testing.T, dir string) {
	t.Helper()
	for c, class := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, class), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			img := image.NewRGBA(image.Rect(0, 0, 16, 12))
			for p := range img.Pix {
				img.Pix[p] = uint8(40*c + 20*i + p)
			}
			img.Set(0, 0, color.White)
			var b bytes.Buffer
			if err := jpeg.Encode(&b, img, nil); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, class, fmt.Sprintf("%d.jpg", i)), b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func (s *Server) cachedDatasets() (keys []string) {
	s.datasets.mu.Lock()
	defer s.datasets.mu.Unlock()
	for k := range s.datasets.entries {
		keys = append(keys, k)
	}
	return keys
}

// TestDatasetFirstCallerCancels checks that the load does not run on the
// first caller's context: that caller giving up fails only itself, and a
// caller waiting beside it (a training job, say) gets the dataset.
func TestDatasetFirstCallerCancels(t *testing.T) {
	s := newIdleServer(t, cacheOptions(dataDir(t)))

	// Already cancelled: refused at once, yet the load starts and goes on.
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if ds, err := s.dataset(cancelled, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("dataset(cancelled ctx) = %v, %v; want context.Canceled", ds, err)
	}

	// Cancelled while the load runs, with a second caller waiting.
	first, cancelFirst := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, err := s.dataset(first, "")
		firstErr <- err
	}()
	type result struct {
		ds  *dataset.Dataset
		err error
	}
	second := make(chan result, 1)
	go func() {
		ds, err := s.dataset(context.Background(), "")
		second <- result{ds, err}
	}()
	cancelFirst()
	if err := <-firstErr; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("dataset(first, cancelled) = %v; want context.Canceled or the dataset", err)
	}
	r := <-second
	if r.err != nil {
		t.Fatalf("dataset(second caller) = %v after the first caller cancelled; want the dataset", r.err)
	}
	if r.ds.Len(dataset.Train) != 17 {
		t.Errorf("dataset has %d training images; want 17", r.ds.Len(dataset.Train))
	}

	// A short deadline on a cached dataset is no problem.
	short, cancelShort := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancelShort()
	<-short.Done()
	if ds, err := s.dataset(short, ""); err == nil && ds != r.ds {
		t.Errorf("dataset(short ctx) = another copy; want the cached one")
	}
}

// TestDatasetCacheKeysAndBound checks that spellings of one directory share
// one copy, that at most one dataset besides the default is kept, that one
// still in use is reused rather than loaded again, and that a failed load is
// retried by the next call.
func TestDatasetCacheKeysAndBound(t *testing.T) {
	root := t.TempDir()
	def, a, b, c := filepath.Join(root, "def"), filepath.Join(root, "a"), filepath.Join(root, "b"), filepath.Join(root, "c")
	for _, d := range []string{def, a, b, c} {
		tinyDataset(t, d)
	}
	s := newIdleServer(t, cacheOptions(def))
	ctx := context.Background()
	get := func(dir string) *dataset.Dataset {
		t.Helper()
		ds, err := s.dataset(ctx, dir)
		if err != nil {
			t.Fatalf("dataset(%q) = %v", dir, err)
		}
		return ds
	}

	// One directory, four spellings, one copy.
	dsA := get(a)
	for _, spelling := range []string{a + "/", root + "//a", root + "/b/../a"} {
		if got := get(spelling); got != dsA {
			t.Errorf("dataset(%q) is another copy than dataset(%q)", spelling, a)
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if rel, err := filepath.Rel(wd, a); err == nil {
		if got := get(rel); got != dsA {
			t.Errorf("dataset(%q) is another copy than dataset(%q)", rel, a)
		}
	}
	dsDef := get("")
	if got := get(def); got != dsDef {
		t.Errorf("dataset(%q) is another copy than the default", def)
	}

	// The default plus one other: b pushes a out, c pushes b out.
	get(b)
	get(c)
	if keys := s.cachedDatasets(); len(keys) != 2 {
		t.Errorf("cache holds %q; want the default and the last one used", keys)
	}
	// a is still held (by dsA, as a job would hold it): asked again, it is
	// the same copy, not a second load.
	if got := get(a); got != dsA {
		t.Errorf("dataset(%q) after eviction, while still in use, is another copy; want the one in use", a)
	}
	if got := get(""); got != dsDef {
		t.Errorf("the default dataset was evicted")
	}

	// A failed load is not kept: once the folder is there, it loads.
	late := filepath.Join(root, "late")
	_, err = s.dataset(ctx, late)
	if code(err) != codes.FailedPrecondition || !errors.Is(err, dataset.ErrNoDir) {
		t.Fatalf("dataset(missing folder) = %v; want FailedPrecondition, ErrNoDir", err)
	}
	tinyDataset(t, late)
	if ds, err := s.dataset(ctx, late); err != nil || ds.Len(dataset.Train) != 2 {
		t.Errorf("dataset(%q) once it exists = %v, %v; want it loaded", late, ds, err)
	}
}

// TestDatasetUnreadableIsFailedPrecondition checks the error table: a
// dataset folder the server cannot read is the caller's to fix.
func TestDatasetUnreadableIsFailedPrecondition(t *testing.T) {
	err := fmt.Errorf("load dataset: %w: /d/f17: permission denied", dataset.ErrUnreadable)
	if got := code(err); got != codes.FailedPrecondition {
		t.Errorf("code(%v) = %v; want FailedPrecondition", err, got)
	}
}
