package dataset

import (
	"image"
	"image/draw"
)

// resizeRGB converts img to RGB (transparent pixels over black) and resizes
// it to size x size bytes (HWC), ignoring the aspect ratio as PIL's resize in
// tflearn's loader did.
//
// The filter is bilinear as PIL and x/image/draw's BiLinear kernel define it
// (on the flower photos tried, the output matches the latter within one
// level): a triangle whose support
// widens with the shrink factor, so that shrinking averages every source
// pixel instead of skipping some. It is written here rather than taken from
// x/image because it runs a little faster (one vertical pass over whole
// rows, then a horizontal pass over one row) and its scratch memory grows
// with the source width only, where x/image's grows with the output width
// times the source height, in float64s; and so that the package needs the standard library
// only.
func resizeRGB(img image.Image, size int) []uint8 {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	rgba, ok := img.(*image.RGBA)
	if !ok || rgba.Stride != 4*w {
		rgba = image.NewRGBA(image.Rect(0, 0, w, h))
		draw.Draw(rgba, rgba.Bounds(), img, b.Min, draw.Src)
	}
	src := rgba.Pix[:4*w*h]

	xs := triangle(w, size)
	ys := triangle(h, size)
	acc := make([]float32, w*4)
	dst := make([]uint8, size*size*3)
	for y := range size {
		// Vertical: the weighted sum of the source rows under output row y.
		clear(acc)
		for k, wk := range ys.weights[ys.off[y]:ys.off[y+1]] {
			r := ys.start[y] + k
			row := src[r*w*4 : (r+1)*w*4]
			row = row[:len(acc)]
			for i, v := range row {
				acc[i] += wk * float32(v)
			}
		}
		// Horizontal: the weighted sum of the columns under each output pixel.
		out := dst[y*size*3 : (y+1)*size*3]
		for x := range size {
			p := acc[xs.start[x]*4:]
			var r, g, bl float32
			for k, wk := range xs.weights[xs.off[x]:xs.off[x+1]] {
				q := p[k*4 : k*4+3]
				r += wk * q[0]
				g += wk * q[1]
				bl += wk * q[2]
			}
			o := out[x*3 : x*3+3]
			o[0] = toByte(r)
			o[1] = toByte(g)
			o[2] = toByte(bl)
		}
	}
	return dst
}

// toByte rounds v to the nearest byte, clamping.
func toByte(v float32) uint8 { return uint8(max(0, min(v+0.5, 255))) }

// taps holds, for resampling one axis, the source samples that make each
// output sample: output i is the sum over k of weights[off[i]+k] times
// source sample start[i]+k, for k < off[i+1]-off[i].
type taps struct {
	start, off []int
	weights    []float32
}

// triangle returns the taps of the bilinear (triangle) filter for resampling
// in source samples to out samples; the weights of an output sum to 1 and
// are all positive. There are about 2*max(in, out) weights in all.
func triangle(in, out int) taps {
	scale := float64(in) / float64(out)
	support := max(scale, 1) // triangle of radius 1, widened when shrinking
	t := taps{start: make([]int, out), off: make([]int, out+1)}
	t.weights = make([]float32, 0, 2*max(in, out)+2*out)
	var buf []float64
	for i := range out {
		center := (float64(i) + 0.5) * scale
		lo := max(int(center-support+0.5), 0)
		hi := min(int(center+support+0.5), in)
		buf = buf[:0]
		var sum float64
		first := -1
		for j := lo; j < hi; j++ {
			d := (float64(j) + 0.5 - center) / support
			wt := 1 - max(d, -d)
			if wt <= 0 {
				if first >= 0 {
					break
				}
				continue
			}
			if first < 0 {
				first = j
			}
			buf = append(buf, wt)
			sum += wt
		}
		if first < 0 { // cannot happen: the nearest sample has weight >= 1/2
			first, buf, sum = min(int(center), in-1), append(buf, 1), 1
		}
		t.start[i] = first
		for _, wt := range buf {
			t.weights = append(t.weights, float32(wt/sum))
		}
		t.off[i+1] = len(t.weights)
	}
	return t
}
