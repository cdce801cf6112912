package dataset_test

import (
	"context"
	"errors"
	"image/color"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowerd/flowerd/model/dataset"
)

func TestDecodeConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		w, h int
		want error
	}{
		{"jpeg", encodeJPEG(t, solidImage(300, 200, color.White)), 300, 200, nil},
		{"png", encodePNG(t, solidImage(17, 50, color.White)), 17, 50, nil},
		// Only the header is read: a PNG with no pixel data still has a size.
		{"png header only", pngHeader(7000, 7000), 7000, 7000, nil},
		{"nil", nil, 0, 0, dataset.ErrCorruptImage},
		{"text", []byte("hello, world"), 0, 0, dataset.ErrUnsupportedFormat},
		{"huge png", pngHeader(100_000, 100_000), 0, 0, dataset.ErrImageTooLarge},
		{"50 megapixels and a row", pngHeader(10_000, 5001), 0, 0, dataset.ErrImageTooLarge},
		{"zero width", pngHeader(0, 10), 0, 0, dataset.ErrCorruptImage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := dataset.DecodeConfig(tc.data)
			if !errors.Is(err, tc.want) {
				t.Fatalf("DecodeConfig(%s) = %v; want %v", tc.name, err, tc.want)
			}
			if err == nil && (cfg.Width != tc.w || cfg.Height != tc.h) {
				t.Errorf("DecodeConfig(%s) = %dx%d; want %dx%d", tc.name, cfg.Width, cfg.Height, tc.w, tc.h)
			}
		})
	}
}

// TestDecodeConfigAllocatesNoPixels checks that a header declaring 49
// megapixels costs a few kilobytes to read, not the 200 MB of its pixels.
func TestDecodeConfigAllocatesNoPixels(t *testing.T) {
	data := pngHeader(7000, 7000)
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := dataset.DecodeConfig(data); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 50 {
		t.Errorf("DecodeConfig of a 7000x7000 PNG header made %v allocations; want a handful", allocs)
	}
}

// TestLoadUnreadable checks that a dataset folder the server may not read is
// ErrUnreadable naming it, not a bare os error.
func TestLoadUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads every folder whatever its permissions; run as another user to test this")
	}
	for _, tc := range []struct {
		name  string
		chmod func(dir string) string // returns the folder made unreadable
	}{
		{"dataset folder", func(dir string) string { return dir }},
		{"class folder", func(dir string) string { return filepath.Join(dir, "b") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeDataset(t, map[string]int{"a": 5, "b": 5})
			locked := tc.chmod(dir)
			if err := os.Chmod(locked, 0o300); err != nil { // write and search, no read
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(locked, 0o755) })
			o := dataset.Options{Dir: dir, TrainPerClass: 3, ValPerClass: 1, TestPerClass: 1, Logger: quietLogger()}
			d, err := dataset.Load(context.Background(), o)
			if !errors.Is(err, dataset.ErrUnreadable) {
				t.Fatalf("Load(%s with %s unreadable) = %v, %v; want ErrUnreadable", dir, locked, d, err)
			}
			if msg := err.Error(); !strings.Contains(msg, locked) || !strings.Contains(msg, "permission") {
				t.Errorf("Load error %q; want it to name %s and say it needs permission", msg, locked)
			}
		})
	}
}

// TestDecodeRGBMatchesDecode checks that DecodeRGB then AppendScaled gives
// Decode's values exactly.
func TestDecodeRGBMatchesDecode(t *testing.T) {
	data := encodeJPEG(t, randomImage(rand.New(rand.NewPCG(3, 4)), 90, 70))
	want, err := dataset.Decode(data, 32)
	if err != nil {
		t.Fatal(err)
	}
	pix, err := dataset.DecodeRGB(data, 32)
	if err != nil {
		t.Fatalf("DecodeRGB = %v", err)
	}
	got := dataset.AppendScaled([]float32{7}, pix)
	if len(got) != 1+len(want) || got[0] != 7 {
		t.Fatalf("AppendScaled gave %d values starting %v; want 7 then %d", len(got), got[:1], len(want))
	}
	for i, v := range want {
		if got[1+i] != v {
			t.Fatalf("AppendScaled(DecodeRGB)[%d] = %v; Decode gives %v", i, got[1+i], v)
		}
	}
	if _, err := dataset.DecodeRGB(data, 4); !errors.Is(err, dataset.ErrInvalidOptions) {
		t.Errorf("DecodeRGB(size 4) = %v; want ErrInvalidOptions", err)
	}
	if _, err := dataset.DecodeRGB(pngHeader(100_000, 100_000), 32); !errors.Is(err, dataset.ErrImageTooLarge) {
		t.Errorf("DecodeRGB(huge header) = %v; want ErrImageTooLarge", err)
	}
}
