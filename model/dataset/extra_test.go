package dataset

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/png"
	"testing"
)

func pngBytes(t *testing.T, c color.Color) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 20, 10))
	for y := range 10 {
		for x := range 20 {
			img.Set(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWithTrain(t *testing.T) {
	d := &Dataset{classes: []string{"a", "b"}, size: 8, fingerprint: "f"}
	d.splits[Train] = []example{{label: 0, file: "a/1", pix: make([]uint8, 8*8*3)}}
	red := pngBytes(t, color.RGBA{R: 255, A: 255})
	c, err := d.WithTrain([]Extra{{Name: "feedback 1", Data: red, Label: 1}})
	if err != nil {
		t.Fatalf("WithTrain = %v", err)
	}
	if d.Len(Train) != 1 || c.Len(Train) != 2 {
		t.Fatalf("train sizes: original %d, copy %d; want 1 and 2", d.Len(Train), c.Len(Train))
	}
	if c.Fingerprint() == d.Fingerprint() {
		t.Error("the copy has the original's fingerprint")
	}
	e := c.splits[Train][1]
	if e.label != 1 || e.pix[0] != 255 || e.pix[1] != 0 {
		t.Errorf("added example: label %d, first pixel %v; want 1 and red", e.label, e.pix[:3])
	}
	for _, tc := range []struct {
		name  string
		extra Extra
		want  error
	}{
		{"bad label", Extra{Name: "x", Data: red, Label: 2}, ErrInvalidOptions},
		{"not an image", Extra{Name: "y", Data: []byte("nope"), Label: 0}, ErrUnsupportedFormat},
	} {
		if _, err := d.WithTrain([]Extra{tc.extra}); !errors.Is(err, tc.want) {
			t.Errorf("WithTrain(%s) = %v; want %v", tc.name, err, tc.want)
		}
	}
}
