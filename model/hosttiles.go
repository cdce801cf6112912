package model

import (
	"runtime"
	"sync"

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
	m := t.winogradTile(r, n, out, out)
	if m == 0 {
		return nil
	}
	th := (out + m - 1) / m
	return &tileGather{
		n: n, size: size, s: s, r: r, before: before, oh: out, ow: out,
		m: m, side: m + r - 1, th: th, tw: th, ch: 3, cin: s * s * 3,
	}
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

// gather copies the tiles out of the images into out, which holds zeros,
// one image per goroutine at a time.
func (g *tileGather) gather(out, images []float32) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), g.n) {
		wg.Go(func() {
			for img := range next {
				g.gatherImage(out, images, img)
			}
		})
	}
	for img := range g.n {
		next <- img
	}
	close(next)
	wg.Wait()
}

// gatherImage writes image img's share of the tiles.
func (g *tileGather) gatherImage(out, images []float32, img int) {
	ch := g.ch
	run := g.s * ch // (dx, ch) of one folded pixel: contiguous in the image
	row := g.size * ch
	src := images[img*g.size*row : (img+1)*g.size*row]
	for i := range g.side {
		for j := range g.side {
			for ti := range g.th {
				for tj := range g.tw {
					dst := ((((i*g.side+j)*g.n+img)*g.th+ti)*g.tw + tj) * g.cin
					x0 := g.s*(g.m*tj+j) - g.before // first pixel column of the run
					for dy := range g.s {
						y := g.s*(g.m*ti+i) + dy - g.before
						if y < 0 || y >= g.size {
							continue // zeros
						}
						d := out[dst+dy*run : dst+(dy+1)*run]
						if x0 >= 0 && x0+g.s <= g.size {
							copy(d, src[y*row+x0*ch:y*row+(x0+g.s)*ch])
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
	}
}
