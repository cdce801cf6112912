package model

import (
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
)

// tileGather is the layout of conv1's Winograd input tiles when the host
// gathers them from the images (tuningHostTiles). In the graph, conv1 pads
// the images, folds them space-to-depth and gathers its tiles with one
// strided slice per tile pixel: copies the backend makes element by
// element, in series, 16% of model2's inference at batch 16. The tiles are
// pixels of the images, so the host can copy them straight from the
// images, in runs of s·3 values, on every core, before the graph runs.
//
// The tiles D are [side, side, n, th, tw, c]: D[i, j, img, ti, tj, (dy·s +
// dx)·3 + ch] is pixel (s·(m·ti+i)+dy-before, s·(m·tj+j)+dx-before, ch) of
// image img, or zero outside it, as winogradTiles gathers them from the
// padded spaceToDepth input of conv2DUncut.
type tileGather struct {
	n, size int // images, and their side
	s, r    int // conv1's stride, and its kernel side after folding
	before  int // 'SAME' padding before, in pixels
	oh, ow  int // conv1's output sides
	m, side int // F(mxm, rxr) and its tile side m+r-1
	th, tw  int // tiles per side
	ch, cin int // the images' channels (3), and folded, s·s·ch
	// bt is Winograd's Bᵀ for F(mxm, rxr), side x side, row-major, where
	// the host also transforms the tiles (tuningHostTransform): then the
	// tensor holds V = (Bᵀ⊗Bᵀ)·D, in D's layout, and the graph starts at
	// the products. nil where the graph transforms them.
	bt []float32
	// lanes is bt's rows padded with zeros to 6 entries, each entry
	// repeated 16 times, for transformLanes.
	lanes []float32
}

// conv1Tiles is the layout of conv1's tiles for n images of size x size
// when t has the host gather them, or nil where it does not, or where
// conv1 does not take Winograd (conv2DUncut decides the same way).
func (t tuning) conv1Tiles(n, size int) *tileGather {
	s, k := conv1Stride, conv1Kernel
	r := (k + s - 1) / s
	before, _, out := samePadding(size, k, s)
	if !t.hostTiles || !t.spaceToDepth || !t.spaceToDepthWinograd {
		return nil
	}
	m := t.foldedTile(r, n, out, out)
	if m == 0 {
		return nil
	}
	th := (out + m - 1) / m
	g := &tileGather{
		n: n, size: size, s: s, r: r, before: before, oh: out, ow: out,
		m: m, side: m + r - 1, th: th, tw: th, ch: 3, cin: s * s * 3,
	}
	if t.hostTransform {
		_, _, bt := winogradTransforms(m, r, winogradPoints[[2]int{m, r}])
		for _, row := range bt {
			padded := make([]float32, max(len(row), 6))
			for l, v := range row {
				g.bt = append(g.bt, float32(v))
				padded[l] = float32(v)
			}
			for _, v := range padded {
				for range 16 {
					g.lanes = append(g.lanes, v)
				}
			}
		}
	}
	return g
}

// dims is the shape of the tiles.
func (g *tileGather) dims() []int { return []int{g.side, g.side, g.n, g.th, g.tw, g.cin} }

// tensor is the tiles of n NHWC images (n·size·size·3 values), in a
// buffer shared with backend where it has them.
func (g *tileGather) tensor(backend compute.Backend, images []float32) (*tensors.Tensor, error) {
	t, err := tensors.FromShapeForBackend(backend, 0, shapes.Make(dtypes.Float32, g.dims()...))
	if err != nil {
		return nil, err
	}
	err = tensors.MutableFlatData(t, func(flat []float32) { g.gather(flat, images) })
	return t, err
}

// gather writes the tiles of the images into out, the images split
// between the cores.
func (g *tileGather) gather(out, images []float32) {
	parallelRanges(g.n, func(i0, i1 int) {
		for img := i0; img < i1; img++ {
			g.gatherImage(out, images, img)
		}
	})
}

// gatherImage writes image img's share of the tiles, one tile at a time:
// gathered into a scratch tile (and transformed there, with bt), then
// copied to its side² places.
func (g *tileGather) gatherImage(out, images []float32, img int) {
	a := g.side * g.side
	tile := make([]float32, a*g.cin)
	var tmp []float32
	if g.bt != nil {
		tmp = make([]float32, a*g.cin)
	}
	tiles := g.n * g.th * g.tw
	for ti := range g.th {
		for tj := range g.tw {
			g.gatherTile(tile, images, img, ti, tj)
			p := (img*g.th+ti)*g.tw + tj
			v := tile
			if g.bt != nil {
				if transformLanes(out, p*g.cin, tiles*g.cin, tile, tmp, g.lanes, g.side, g.cin) {
					continue
				}
				v = g.transform(tmp, tile)
			}
			for k := range a {
				copy(out[(k*tiles+p)*g.cin:(k*tiles+p+1)*g.cin], v[k*g.cin:(k+1)*g.cin])
			}
		}
	}
}

// gatherTile writes tile (ti, tj) of image img into tile, [side, side,
// cin]: pixel (i, j) at (i·side+j)·cin, zeros outside the image.
func (g *tileGather) gatherTile(tile, images []float32, img, ti, tj int) {
	clear(tile)
	ch := g.ch
	run := g.s * ch // (dx, ch) of one folded pixel: contiguous in the image
	row := g.size * ch
	src := images[img*g.size*row : (img+1)*g.size*row]
	for i := range g.side {
		for j := range g.side {
			dst := (i*g.side + j) * g.cin
			x0 := g.s*(g.m*tj+j) - g.before // first pixel column of the run
			for dy := range g.s {
				y := g.s*(g.m*ti+i) + dy - g.before
				if y < 0 || y >= g.size {
					continue // zeros
				}
				d := tile[dst+dy*run : dst+(dy+1)*run]
				if x0 >= 0 && x0+g.s <= g.size {
					from := src[y*row+x0*ch : y*row+(x0+g.s)*ch]
					if run == 12 { // conv1's: moved inline, not by a call to memmove
						*(*[12]float32)(d) = *(*[12]float32)(from)
					} else {
						copy(d, from)
					}
					continue
				}
				for dx := range g.s {
					if x := x0 + dx; x >= 0 && x < g.size {
						copy(d[dx*ch:(dx+1)*ch], src[y*row+x*ch:y*row+(x+1)*ch])
					}
				}
			}
		}
	}
}

// transform is Bᵀ·d·B of one tile d [side, side, cin], each channel on its
// own, as two passes of side-point transforms (2·side³ multiply-adds per
// channel where (Bᵀ⊗Bᵀ)·d takes side⁴), skipping Bᵀ's zeros: along the
// rows into tmp, then along the columns back into d, which it returns.
func (g *tileGather) transform(tmp, d []float32) []float32 {
	g.mix(tmp, d, 1, g.side)
	g.mix(d, tmp, g.side, 1)
	return d
}

// mix writes dst's pixel o·outer + j·inner = Σ_l Bᵀ[j, l]·src's pixel
// o·outer + l·inner, for every o and j < side: Bᵀ applied along the axis
// of stride inner (in pixels of cin values).
func (g *tileGather) mix(dst, src []float32, inner, outer int) {
	c := g.cin
	for o := range g.side {
		for j := range g.side {
			d := dst[(o*outer+j*inner)*c : (o*outer+j*inner+1)*c]
			clear(d)
			for l, b := range g.bt[j*g.side : (j+1)*g.side] {
				if b == 0 {
					continue
				}
				x := src[(o*outer+l*inner)*c : (o*outer+l*inner+1)*c]
				for i := range d {
					d[i] += b * x[i]
				}
			}
		}
	}
}
