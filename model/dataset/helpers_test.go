package dataset_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/flowerd/flowerd/model/dataset"
)

// dataDir returns the Oxford 17 Flowers folder: $FLOWERD_DATA, or
// ../../../shared/data/flowers17 from this file (the repository is at
// <x>/main, the shared data at <x>/shared). It skips the test if absent.
func dataDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("FLOWERD_DATA")
	if dir == "" {
		_, file, _, ok := runtime.Caller(0)
		if !ok {
			tb.Skip("no caller information to locate the dataset; set FLOWERD_DATA")
		}
		dir = filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "data", "flowers17")
	}
	if fi, err := os.Stat(filepath.Join(dir, "daisy")); err != nil || !fi.IsDir() {
		tb.Skipf("Oxford 17 Flowers not found at %s (want a daisy/ folder); set FLOWERD_DATA to run this test", dir)
	}
	return dir
}

// smallClasses are the classes most tests load.
var smallClasses = []string{"daisy", "sunflower", "tulip"}

// smallOptions loads 3 classes, 6/2/2 images each, at 64x64.
func smallOptions(tb testing.TB, seed int64) dataset.Options {
	return dataset.Options{
		Dir:           dataDir(tb),
		ImageSize:     64,
		TrainPerClass: 6, ValPerClass: 2, TestPerClass: 2,
		Seed:    seed,
		Classes: smallClasses,
		Logger:  quietLogger(),
	}
}

var (
	smallMu    sync.Mutex
	smallCache = map[int64]*dataset.Dataset{}
)

// loadSmall loads smallOptions(seed) once per test binary.
func loadSmall(tb testing.TB, seed int64) *dataset.Dataset {
	tb.Helper()
	opts := smallOptions(tb, seed)
	smallMu.Lock()
	defer smallMu.Unlock()
	if d, ok := smallCache[seed]; ok {
		return d
	}
	d, err := dataset.Load(context.Background(), opts)
	if err != nil {
		tb.Fatalf("Load(seed %d) = %v", seed, err)
	}
	smallCache[seed] = d
	return d
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// writeDataset creates a dataset of small random JPEGs under a temp dir:
// counts[class] images per class, plus files that must be ignored.
func writeDataset(tb testing.TB, counts map[string]int) string {
	tb.Helper()
	dir := tb.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	mustWrite(tb, filepath.Join(dir, "README.md"), []byte("not a class\n"))
	for class, n := range counts {
		cdir := filepath.Join(dir, class)
		if err := os.MkdirAll(cdir, 0o755); err != nil {
			tb.Fatal(err)
		}
		mustWrite(tb, filepath.Join(cdir, "MD5SUMS"), []byte("0 x\n"))
		mustWrite(tb, filepath.Join(cdir, ".hidden.jpg"), []byte("not an image"))
		for i := range n {
			mustWrite(tb, filepath.Join(cdir, fmt.Sprintf("img_%03d.jpg", i)), encodeJPEG(tb, randomImage(r, 24, 16)))
		}
	}
	return dir
}

func mustWrite(tb testing.TB, path string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
}

func randomImage(r *rand.Rand, w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(r.IntN(256))
	}
	return img
}

func solidImage(w, h int, c color.Color) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, c)
		}
	}
	return img
}

func encodeJPEG(tb testing.TB, img image.Image) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// collect returns all batches of one epoch.
func collect(tb testing.TB, d *dataset.Dataset, s dataset.Split, o dataset.BatchOptions) []dataset.Batch {
	tb.Helper()
	seq, err := d.Batches(context.Background(), s, o)
	if err != nil {
		tb.Fatalf("Batches(%v, %+v) = %v", s, o, err)
	}
	var out []dataset.Batch
	for b := range seq {
		out = append(out, b)
	}
	return out
}
