package main

import (
	"fmt"
	"io"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// The size of Figure 2. vg lengths are points (1/72 inch) and vgimg
// rasterises at vgimg.DefaultDPI (96 dots per inch), so the PNG is
// 1200/72*96 = 1600 by 900/72*96 = 1200 pixels.
const (
	figureWidth  vg.Length = 1200 // points: 16 2/3 in
	figureHeight vg.Length = 900  // points: 12 1/2 in

	figurePixelsX = int(figureWidth / vg.Inch * vgimg.DefaultDPI)  // 1600
	figurePixelsY = int(figureHeight / vg.Inch * vgimg.DefaultDPI) // 1200
)

// historySeries is one line of Figure 2: its legend label and its epochs
// in order. A run's epochs, or nothing when a variant has no run yet.
type historySeries struct {
	label  string
	epochs []*flowerdpb.EpochMetrics
}

// figurePanel is one of Figure 2's four panels: a metric against epoch.
type figurePanel struct {
	title    string
	value    func(*flowerdpb.EpochMetrics) float64
	fraction bool // an accuracy: the y axis runs from 0 to 1
}

var figurePanels = [2][2]figurePanel{
	{
		{"loss", (*flowerdpb.EpochMetrics).GetLoss, false},
		{"accuracy", (*flowerdpb.EpochMetrics).GetAccuracy, true},
	},
	{
		{"validation loss", (*flowerdpb.EpochMetrics).GetValLoss, false},
		{"validation accuracy", (*flowerdpb.EpochMetrics).GetValAccuracy, true},
	},
}

// plotFigure2 draws the study's Figure 2 as a figurePixelsX by
// figurePixelsY PNG on w: four panels (loss, accuracy, validation loss,
// validation accuracy against epoch), one line per series in the same
// colour and glyph on every panel, and a legend on each. NaN and infinite
// values are left out of a line; a series with no values is still in the
// legend, marked "(no data)", so a variant that never trained is seen to
// be missing rather than silently dropped.
func plotFigure2(w io.Writer, series []historySeries) error {
	plots := make([][]*plot.Plot, len(figurePanels))
	for r, row := range figurePanels {
		plots[r] = make([]*plot.Plot, len(row))
		for c, panel := range row {
			p, err := plotPanel(panel, series)
			if err != nil {
				return fmt.Errorf("plot %s: %w", panel.title, err)
			}
			plots[r][c] = p
		}
	}
	img := vgimg.New(figureWidth, figureHeight)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(plots), Cols: len(plots[0]),
		PadTop: vg.Points(10), PadBottom: vg.Points(10), PadLeft: vg.Points(10), PadRight: vg.Points(20),
		PadX: vg.Points(40), PadY: vg.Points(30)}
	canvases := plot.Align(plots, tiles, dc)
	for r := range plots {
		for c := range plots[r] {
			plots[r][c].Draw(canvases[r][c])
		}
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("write png: %w", err)
	}
	return nil
}

// plotPanel draws one metric of every series against epoch.
func plotPanel(panel figurePanel, series []historySeries) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = panel.title
	p.Title.TextStyle.Font.Size = vg.Points(16)
	p.X.Label.Text = "epoch"
	p.Y.Label.Text = panel.title
	p.X.Label.TextStyle.Font.Size = vg.Points(13)
	p.Y.Label.TextStyle.Font.Size = vg.Points(13)
	p.X.Tick.Label.Font.Size = vg.Points(11)
	p.Y.Tick.Label.Font.Size = vg.Points(11)
	p.Add(plotter.NewGrid())
	p.Legend.TextStyle.Font.Size = vg.Points(12)
	p.Legend.Top = !panel.fraction // losses fall and accuracies rise: keep the legend off the lines' ends
	p.Y.Min = 0                    // losses are not negative; the upper end follows the data
	for i, s := range series {
		var xys plotter.XYs
		for _, e := range s.epochs {
			y := panel.value(e)
			if math.IsNaN(y) || math.IsInf(y, 0) {
				continue
			}
			xys = append(xys, plotter.XY{X: float64(e.GetEpoch()), Y: y})
		}
		if len(xys) == 0 {
			p.Legend.Add(s.label + " (no data)")
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.label, err)
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(2)
		line.Dashes = plotutil.Dashes(i)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		points.Radius = vg.Points(3)
		p.Add(line, points)
		p.Legend.Add(s.label, line, points)
	}
	if panel.fraction {
		// Data outside [0, 1] would widen the range: keep the panels comparable.
		p.Y.Min, p.Y.Max = 0, 1
	}
	return p, nil
}

// runSeries is one series per run, labelled by label(run).
func runSeries(runs []*flowerdpb.Run, label func(*flowerdpb.Run) string) []historySeries {
	s := make([]historySeries, len(runs))
	for i, r := range runs {
		s[i] = historySeries{label: label(r), epochs: r.GetEpochs()}
	}
	return s
}
