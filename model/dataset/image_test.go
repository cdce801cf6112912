package dataset_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowerd/flowerd/model/dataset"
)

func encodePNG(tb testing.TB, img image.Image) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func encodeGIF(tb testing.TB, img image.Image) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := gif.Encode(&buf, img, &gif.Options{NumColors: 256}); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// pngHeader returns a PNG signature and IHDR chunk claiming w x h pixels,
// with no image data.
func pngHeader(w, h uint32) []byte {
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk := append([]byte("IHDR"), ihdr...)
	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	binary.Write(&out, binary.BigEndian, uint32(len(ihdr)))
	out.Write(chunk)
	binary.Write(&out, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return out.Bytes()
}

func TestDecode(t *testing.T) {
	orange := color.RGBA{R: 255, G: 128, B: 0, A: 255}
	gray := image.NewGray(image.Rect(0, 0, 30, 20))
	for i := range gray.Pix {
		gray.Pix[i] = 200
	}
	transparent := image.NewNRGBA(image.Rect(0, 0, 10, 10)) // all zero: transparent
	for _, tc := range []struct {
		name string
		data []byte
		size int
		want [3]float32 // the colour of every pixel, within 2/255
	}{
		{"jpeg", encodeJPEG(t, solidImage(300, 200, orange)), 32, [3]float32{1, 128. / 255, 0}},
		{"png", encodePNG(t, solidImage(17, 50, orange)), 227, [3]float32{1, 128. / 255, 0}},
		{"gif", encodeGIF(t, solidImage(40, 40, palette.Plan9[40])), 16, rgbOf(palette.Plan9[40])},
		{"gray png", encodePNG(t, gray), 8, [3]float32{200. / 255, 200. / 255, 200. / 255}},
		{"transparent png", encodePNG(t, transparent), 8, [3]float32{}},
		{"1x1 upscaled", encodePNG(t, solidImage(1, 1, orange)), 64, [3]float32{1, 128. / 255, 0}},
		{"thin", encodePNG(t, solidImage(5000, 1, orange)), 8, [3]float32{1, 128. / 255, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dataset.Decode(tc.data, tc.size)
			if err != nil {
				t.Fatalf("Decode(%s, %d) = %v", tc.name, tc.size, err)
			}
			if len(got) != tc.size*tc.size*3 {
				t.Fatalf("Decode(%s, %d) gave %d values; want %d", tc.name, tc.size, len(got), tc.size*tc.size*3)
			}
			for i, v := range got {
				if math.Abs(float64(v-tc.want[i%3])) > 2.5/255 {
					t.Fatalf("Decode(%s, %d)[%d] = %v; want %v", tc.name, tc.size, i, v, tc.want[i%3])
				}
			}
		})
	}
}

func rgbOf(c color.Color) [3]float32 {
	r, g, b, _ := c.RGBA()
	return [3]float32{float32(r>>8) / 255, float32(g>>8) / 255, float32(b>>8) / 255}
}

func TestDecodeErrors(t *testing.T) {
	jpg := encodeJPEG(t, solidImage(64, 64, color.White))
	pngData := encodePNG(t, solidImage(64, 64, color.White))
	for _, tc := range []struct {
		name string
		data []byte
		size int
		want error
		msg  string
	}{
		{"nil", nil, 32, dataset.ErrCorruptImage, "decode image: corrupt image: no data"},
		{"text", []byte("hello, world"), 32, dataset.ErrUnsupportedFormat, "decode image: unsupported format"},
		{"bmp", append([]byte("BM"), make([]byte, 60)...), 32, dataset.ErrUnsupportedFormat, "want jpeg, png or gif"},
		{"truncated jpeg", jpg[:len(jpg)/2], 32, dataset.ErrCorruptImage, "decode image: corrupt image: jpeg"},
		{"jpeg header only", jpg[:20], 32, dataset.ErrCorruptImage, "corrupt image"},
		{"truncated png", pngData[:len(pngData)-20], 32, dataset.ErrCorruptImage, "corrupt image: png"},
		{"png without data", pngHeader(10, 10), 32, dataset.ErrCorruptImage, "corrupt image"},
		{"huge png", pngHeader(100_000, 100_000), 32, dataset.ErrImageTooLarge, "decode image: image too large"},
		{"50 megapixels and a row", pngHeader(10_000, 5001), 32, dataset.ErrImageTooLarge, "50.0 megapixels"},
		{"too wide", pngHeader(1<<20, 2), 32, dataset.ErrImageTooLarge, "pixels a side"},
		{"zero width", pngHeader(0, 10), 32, dataset.ErrCorruptImage, "corrupt image"},
		{"size too small", jpg, 4, dataset.ErrInvalidOptions, "size 4"},
		{"size too large", jpg, 100_000, dataset.ErrInvalidOptions, "size 100000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := dataset.Decode(tc.data, tc.size)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Decode(%s) = %d values, %v; want %v mentioning %q", tc.name, len(got), err, tc.want, tc.msg)
			}
		})
	}
}

// TestDecodeMatchesTraining checks that Decode preprocesses a file exactly as
// Load does for training.
func TestDecodeMatchesTraining(t *testing.T) {
	d := loadSmall(t, 1)
	files := d.Files(dataset.Test)
	b := collect(t, d, dataset.Test, dataset.BatchOptions{BatchSize: len(files)})[0]
	px := d.ImageSize() * d.ImageSize() * 3
	for i, f := range files[:2] {
		data, err := os.ReadFile(filepath.Join(dataDir(t), f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := dataset.Decode(data, d.ImageSize())
		if err != nil {
			t.Fatalf("Decode(%s) = %v", f, err)
		}
		want := b.Images[i*px : (i+1)*px]
		for j := range got {
			if got[j] != want[j] {
				t.Fatalf("Decode(%s)[%d] = %v; the training batch has %v", f, j, got[j], want[j])
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encodeJPEG(f, solidImage(9, 7, color.White)))
	f.Add(encodePNG(f, solidImage(3, 11, color.Black)))
	f.Add(encodeGIF(f, solidImage(4, 4, palette.Plan9[7])))
	f.Add(pngHeader(100_000, 100_000))
	f.Add([]byte("GIF89a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := dataset.Decode(data, 8)
		if err == nil && len(got) != 8*8*3 {
			t.Fatalf("Decode = %d values, nil; want %d", len(got), 8*8*3)
		}
		if err != nil && !errors.Is(err, dataset.ErrCorruptImage) && !errors.Is(err, dataset.ErrUnsupportedFormat) && !errors.Is(err, dataset.ErrImageTooLarge) {
			t.Fatalf("Decode = %v; want one of the sentinel errors", err)
		}
	})
}
