package main

import (
	"bytes"
	"image"
	"image/png"
	"math"
	"testing"

	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// checkFigure decodes a Figure 2 PNG and checks its size; it returns the
// image for further checks.
func checkFigure(t *testing.T, what string, data []byte) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: decode png: %v", what, err)
	}
	if b := img.Bounds(); b.Dx() != 1600 || b.Dy() != 1200 {
		t.Errorf("%s is %dx%d pixels; want 1600x1200", what, b.Dx(), b.Dy())
	}
	return img
}

// colours counts the distinct colours of img (up to limit).
func colours(img image.Image, limit int) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}

func TestFigureSize(t *testing.T) {
	if figurePixelsX != 1600 || figurePixelsY != 1200 {
		t.Errorf("figure size = %dx%d pixels; want 1600x1200", figurePixelsX, figurePixelsY)
	}
}

func TestPlotFigure2(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	run := func(n int32) []*flowerdpb.EpochMetrics {
		var es []*flowerdpb.EpochMetrics
		for i := int32(1); i <= n; i++ {
			es = append(es, epoch(i, int64(i)))
		}
		return es
	}
	tests := []struct {
		name   string
		series []historySeries
	}{
		{"none", nil},
		{"five variants", []historySeries{
			{"model1", run(30)}, {"model2", run(30)}, {"model3", run(12)}, {"model4", run(1)}, {"model5", run(2)},
		}},
		{"empty series", []historySeries{{"model1", nil}, {"model2", []*flowerdpb.EpochMetrics{}}}},
		{"one empty among others", []historySeries{{"model1", run(3)}, {"model5", nil}}},
		{"NaN and Inf", []historySeries{
			{"diverged", []*flowerdpb.EpochMetrics{
				{Epoch: 1, Loss: 2.8, Accuracy: 0.1, ValLoss: 2.9, ValAccuracy: 0.05},
				{Epoch: 2, Loss: nan, Accuracy: nan, ValLoss: inf, ValAccuracy: nan},
				{Epoch: 3, Loss: math.Inf(-1), Accuracy: 0.2, ValLoss: nan, ValAccuracy: 0.1},
			}},
			{"all NaN", []*flowerdpb.EpochMetrics{{Epoch: 1, Loss: nan, Accuracy: nan, ValLoss: nan, ValAccuracy: nan}}},
		}},
		{"nil epoch", []historySeries{{"odd", []*flowerdpb.EpochMetrics{nil, epoch(2, 2)}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := plotFigure2(&buf, tc.series); err != nil {
				t.Fatalf("plotFigure2(%s) = %v; want a PNG", tc.name, err)
			}
			img := checkFigure(t, "plotFigure2("+tc.name+")", buf.Bytes())
			// Axes and text at least; lines in the series' colours when there are any.
			if n := colours(img, 3); n < 2 {
				t.Errorf("plotFigure2(%s) drew %d colours; want axes and text on white", tc.name, n)
			}
		})
	}
}
