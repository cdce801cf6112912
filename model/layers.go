package model

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads best with the ops unqualified
	"github.com/gomlx/gomlx/core/tensors"
	gmx "github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Layer formulations. The pure-Go backend runs its built-in convolution as a
// scalar loop (about 40x slower than im2col + its SIMD matmul) and has no
// gradient for the built-in max pool, so on that backend the network uses
// im2col and a max of strided slices; on XLA the built-in ops are right.
const (
	ConvIm2col  = "im2col"
	ConvBuiltin = "builtin"
	PoolSlices  = "slices"
	PoolBuiltin = "builtin"
)

// LRN constants: tflearn's local_response_normalization defaults, with
// TensorFlow semantics (window of 2*radius+1 channels, alpha not divided by
// the window size).
const (
	lrnRadius = 5
	lrnBias   = 1.0
	lrnAlpha  = 1e-4
	lrnBeta   = 0.75 // used as x^-0.75 = 1/(sqrt(x)*sqrt(sqrt(x)))
)

// samePadding returns TensorFlow's 'SAME' padding for one spatial axis: the
// padding before and after, and the output size ceil(in/stride). The odd pixel
// goes after (bottom/right).
func samePadding(in, window, stride int) (before, after, out int) {
	out = (in + stride - 1) / stride
	total := max((out-1)*stride+window-in, 0)
	before = total / 2
	return before, total - before, out
}

// padSpatial pads the two spatial axes of an NHWC tensor with a constant.
func padSpatial(x *Node, h, w [2]int, value float64) *Node {
	return padAxes(x, [2]int{1, 2}, [2][2]int{h, w}, value)
}

// padAxes pads axis axes[k] of x with pad[k][0] constants before and
// pad[k][1] after. It uses Concatenate because Pad has no gradient in this
// GoMLX version.
func padAxes(x *Node, axes [2]int, pad [2][2]int, value float64) *Node {
	for k, axis := range axes {
		p := pad[k]
		if p[0] == 0 && p[1] == 0 {
			continue
		}
		parts := make([]*Node, 0, 3)
		for i, n := range []int{p[0], -1, p[1]} {
			if i == 1 {
				parts = append(parts, x)
				continue
			}
			if n == 0 {
				continue
			}
			dims := x.Shape().Clone().Dimensions
			dims[axis] = n
			parts = append(parts, BroadcastToDims(Scalar(x.Graph(), x.DType(), value), dims...))
		}
		x = Concatenate(parts, axis)
	}
	return x
}

// wholeAxes is the slice specs of every element of a rank-axis tensor, to
// change some of.
func wholeAxes(rank int) []SliceAxisSpec {
	specs := make([]SliceAxisSpec, rank)
	for i := range specs {
		specs[i] = AxisRange()
	}
	return specs
}

// sliceAxis is x[from:to] on one axis, or x itself where that is the
// whole axis: the backend copies even a slice of everything.
func sliceAxis(x *Node, axis, from, to int) *Node {
	if from == 0 && to == x.Shape().Dimensions[axis] {
		return x
	}
	specs := wholeAxes(x.Rank())
	specs[axis] = AxisRange(from, to)
	return Slice(x, specs...)
}

// stridedRange selects count elements starting at start, stride apart.
func stridedRange(start, count, stride int) SliceAxisSpec {
	return AxisRange(start, start+(count-1)*stride+1).Stride(stride)
}

// tuning selects the go backend's faster formulations; the zero value is
// the straightforward one, kept for A/B benchmarks and tests.
type tuning struct {
	// customGrad: hand-written gradients (training graphs only), see matMul
	// and reluVJP.
	customGrad bool
	// spaceToDepth: a strided im2col convolution runs as a stride-1 one on
	// the input rearranged space-to-depth, see conv2D.
	spaceToDepth bool
	// winograd, winograd5: 3x3 (5x5) stride-1 convolutions use Winograd's
	// F(2x2, 3x3) (F(2x2, 5x5)), see winogradConv.
	winograd, winograd5 bool
	// winograd4: where it has the tiles, F(4x4, rxr) instead of F(2x2,
	// rxr), see winogradTile.
	winograd4 bool
	// spaceToDepthWinograd: the stride-1 convolution space-to-depth leaves
	// uses Winograd where winogradTile says so.
	spaceToDepthWinograd bool
	// poolFirst: a convolution's max pool runs before its bias and ReLU,
	// see convLayer.
	poolFirst bool
	// lrnGrad: with customGrad, LRN has its closed-form gradient, see
	// localResponseNorm.
	lrnGrad bool
	// dropConnectBits: DropConnect's keep-0.5 training mask comes from
	// halfMask.
	dropConnectBits bool
	// poolTiles: a pool that needs no padding reads Winograd's tiles
	// directly, see maxPool3Tiles.
	poolTiles bool
	// poolTilesPadded: so does one that pads, see maxPool3Tiles.
	poolTilesPadded bool
	// tileGrad: with customGrad, Winograd's input tiles are differentiated
	// by overlap-add, see winogradTiles.
	tileGrad bool
	// eyeTranspose: with customGrad, a matmul's gradient transposes its
	// narrow operands by a product with the identity, see swapLast.
	eyeTranspose bool
	// dropConnectOut: DropConnect's inference scales the dense layer's
	// output by keep instead of its weights, see denseLayer.
	dropConnectOut bool
	// kernels: where Winograd's transformed kernels come from, see
	// tuning.kernelsFor.
	kernels kernelMode
	// hostTiles: the host gathers conv1's Winograd tiles from the images
	// (see tileGather), and the graphs take those.
	hostTiles bool
	// hostTransform: with hostTiles, the host also transforms them (V =
	// (Bᵀ⊗Bᵀ)·D), see tileGather.transform.
	hostTransform bool
	// narrowPad: a product with fewer than narrowN columns pads them, see
	// matMul.
	narrowPad bool
	// alignedPool: inference graphs give conv1 F(3x3) tiles where its pool
	// is 3x3 of stride 3, so that each pool window is one output tile, see
	// tuning.conv1 and maxPoolAligned.
	alignedPool bool
	// alignTo, conv1's only: the output tile side that matches its pool's
	// windows (tuning.conv1), 0 for none.
	alignTo int
	// hostUpdate: with customGrad, the host updates the large dense layers'
	// weights (hostUpdated), see hostupdate.go.
	hostUpdate bool
	// hostDense: inference graphs stop at conv5's flattened features, and
	// the host runs the dense layers (denseHead), see hostdense.go.
	hostDense bool
	// tap, for one dense layer's product in a training graph: where matMul
	// records its input and adjoint for the host's update, which also means
	// the graph needs no gradient for its weights. nil for none.
	tap *denseTap
	// tiles, for conv1 only: its input is those tiles, laid out so.
	tiles *tileGather
	// tileChain: conv3 and conv4 hand the next convolution their
	// activations in Winograd's tile layout where both take the same
	// tiles, see chainedTiles.
	tileChain bool
}

// kernelMode says where a graph's Winograd convolutions get their
// transformed kernels.
type kernelMode int

const (
	// kernelsInGraph: computed in the graph from the weights (training
	// graphs, and stores that hold none).
	kernelsInGraph kernelMode = iota
	// kernelsStored: read from the layer's scope where the store holds
	// one for the tile size, else computed (inference on served weights).
	kernelsStored
	// kernelsRecord: computed, and stored in the layer's scope (the graph
	// that publishing runs once on served weights).
	kernelsRecord
)

// winogradKernelName is the variable, in a convolution's scope, of its
// kernel transformed for F(mxm, rxr). Only served stores have them, never
// a training store, where they would go stale at the next step. A served
// store holds every form its inference graphs take: batch 1's, and F(4x4)
// where batch 1 takes F(2x2).
func winogradKernelName(m int) string { return fmt.Sprintf("winograd_kernel_m%d", m) }

// kernelsFor is where the convolution in scope gets its transformed
// kernels, as t.kernels says.
func (t tuning) kernelsFor(scope *gmx.Scope) kernelSource {
	switch t.kernels {
	case kernelsStored:
		return func(kernel *Node, m int) *Node {
			if v := scope.GetVariable(winogradKernelName(m)); v != nil {
				return v.ValueGraph(kernel.Graph())
			}
			return winogradKernel(kernel, m, false)
		}
	case kernelsRecord:
		record := func(kernel *Node, m int) *Node {
			u := winogradKernel(kernel, m, false)
			variable(scope, winogradKernelName(m), u.Shape(), nil).SetTrainable(false).SetValueGraph(u)
			return u
		}
		return func(kernel *Node, m int) *Node {
			// The record graph runs at batch 1. Where that takes F(2x2),
			// larger batches of the same map take F(4x4) (winogradTile):
			// conv3-5 from batch 4 to 16, as the maps shrink.
			if m == 2 && t.winograd4 {
				record(kernel, 4)
			}
			return record(kernel, m)
		}
	}
	return nil
}

// winogradMinTiles is, per output tile side m and kernel side r, the number
// of m x m output tiles (over the batch) from which a stride-1 convolution
// uses F(mxm, rxr). Layer timings (BenchmarkConvForms, training, batch 32 and
// 1, against the next smaller form):
//   - F(2x2, 3x3): 64 tiles (15x15, batch 1) 1.7x faster than im2col. On
//     conv3-5's small maps at batch 1, inference 1.35x on 10x10 (25 tiles,
//     model4) and 1.15x on 7x7 (16, models 2, 3, 5), though training there
//     is slower; training batches have hundreds of tiles.
//   - F(2x2, 5x5): 225 tiles (29x29) 1.5x faster than im2col, 100 (19x19)
//     no faster.
//   - F(4x4, 3x3): 512 tiles (15x15, batch 32) 1.45x faster than F(2x2), 128
//     (7x7) 1.3x; 288 (10x10) the same (the 12x12 padding eats the saving);
//     16 (15x15, batch 1) 1.1x slower.
//   - F(4x4, 5x5): 25 tiles (19x19, batch 1) 1.5x faster than F(2x2) and
//     im2col, 64 (29x29) 1.1x; at batch 32 1.65x (29x29) and 1.75x (19x19).
var winogradMinTiles = map[[2]int]int{{2, 3}: 16, {2, 5}: 200, {4, 3}: 64, {4, 5}: 16}

// winogradTile is the output tile side of the Winograd form a stride-1
// convolution with an r x r kernel uses on n images of h x w pixels, or 0
// for im2col.
func (t tuning) winogradTile(r, n, h, w int) int {
	if !(r == 3 && t.winograd) && !(r == 5 && t.winograd5) {
		return 0
	}
	tiles := func(m int) int { return n * ((h + m - 1) / m) * ((w + m - 1) / m) }
	for _, m := range []int{4, 2} {
		if (m == 2 || t.winograd4) && tiles(m) >= winogradMinTiles[[2]int{m, r}] {
			return m
		}
	}
	return 0
}

// conv1 is the tuning of conv1 in the network of scope: t, with alignTo
// set where t.alignedPool and its pool (the first of ParamPoolStrides) is
// 3x3 of stride 3.
func (t tuning) conv1(scope *gmx.Scope) tuning {
	if t.alignedPool && gmx.GetParamOr(scope, ParamPoolStrides, []int{2, 2, 2})[0] == 3 {
		t.alignTo = 3
	}
	return t
}

// foldedTile is winogradTile for the stride-1 convolution space-to-depth
// leaves of a strided one (conv1's): where t.alignTo is set and divides
// the output's sides, F(alignTo x alignTo) instead of winogradTile's
// choice, which is what a pool of window and stride alignTo reads
// fastest: each of its windows one tile (maxPoolAligned). On models 2-5
// at batch 16, F(3x3)'s pool reads 1.9x faster than F(4x4)'s, while its
// products cost 11% more and its output transform 38% less.
func (t tuning) foldedTile(r, n, oh, ow int) int {
	m := t.winogradTile(r, n, oh, ow)
	if a := t.alignTo; m > 0 && a > 0 && r == 3 && oh%a == 0 && ow%a == 0 {
		return a
	}
	return m
}

// conv2D is a 'SAME'-padded 2-D convolution of an NHWC input with an HWIO
// kernel.
func conv2D(x, kernel *Node, stride int, impl string, t tuning) *Node {
	out := conv2DUncut(x, kernel, stride, impl, t, nil)
	return cropSpatial(out.pixels(), out.oh, out.ow)
}

// convOut is a convolution's output before Winograd's cut to its sides,
// oh x ow: in pixels [n, h', w', c] (h' >= oh), or, with m > 0, in
// Winograd's tile layout [m, m, n, th, tw, c], where pixel (ti·m+dy,
// tj·m+dx) is [dy, dx, n, ti, tj]. Winograd's tiles cover up to m-1 more
// rows and columns than the output (made from padding) when its sides are
// not multiples of m; a max pool that reads the tiles directly
// (maxPool3Tiles) skips them.
type convOut struct {
	y      *Node
	oh, ow int
	m      int
}

// pixels is the output in pixels, uncut.
func (c convOut) pixels() *Node {
	if c.m == 0 {
		return c.y
	}
	// [dy, dx, n, ti, tj, cout] -> [n, ti, dy, tj, dx, cout] -> pixels.
	d := c.y.Shape().Dimensions
	y := TransposeAllAxes(c.y, 2, 3, 0, 4, 1, 5)
	return Reshape(y, d[2], c.m*d[3], c.m*d[4], d[5])
}

// kernelSource gives a Winograd convolution its kernel (as convolved:
// after space-to-depth, for conv1) transformed for F(mxm, rxr), [a, cin,
// cout]. nil computes it in the graph (winogradKernel).
type kernelSource func(kernel *Node, m int) *Node

// transformed is kernel transformed for F(mxm, rxr), from src when it is set.
func (src kernelSource) transformed(kernel *Node, m int, customGrad bool) *Node {
	if src == nil {
		return winogradKernel(kernel, m, customGrad)
	}
	return src(kernel, m)
}

// conv2DUncut is conv2D before Winograd's cut to the output's sides (see
// convOut), with Winograd's transformed kernels from src.
func conv2DUncut(x, kernel *Node, stride int, impl string, t tuning, src kernelSource) convOut {
	if g := t.tiles; g != nil {
		// x is conv1's tiles, gathered on the host (tileGather) as the
		// folded Winograd path below gathers them, and transformed there
		// too where g.bt is set: the rest of that path.
		u := src.transformed(spaceToDepthKernel(kernel, g.s), g.m, t.customGrad)
		a := g.side * g.side
		if g.bt != nil {
			v := Reshape(x, a, x.Shape().Size()/(a*g.cin), g.cin)
			return convOut{winogradMultiply(v, u, g.m, g.r, g.n, g.th, g.tw, t), g.oh, g.ow, g.m}
		}
		d := Reshape(x, a, x.Shape().Size()/a)
		return convOut{winogradProducts(d, u, g.m, g.r, g.n, g.th, g.tw, t), g.oh, g.ow, g.m}
	}
	dims := x.Shape().Dimensions
	kdims := kernel.Shape().Dimensions
	h, w := dims[1], dims[2]
	kh, kw := kdims[0], kdims[1]
	ph0, ph1, oh := samePadding(h, kh, stride)
	pw0, pw1, ow := samePadding(w, kw, stride)
	pixels := func(y *Node) convOut { return convOut{y: y, oh: oh, ow: ow} }
	if impl == ConvBuiltin {
		return pixels(Convolve(x, kernel).StridePerAxis(stride, stride).
			PaddingPerDim([][2]int{{ph0, ph1}, {pw0, pw1}}).Done())
	}
	// Winograd pays once there are enough tiles to fill its matmuls.
	if m := t.winogradTile(kh, dims[0], h, w); m > 0 && stride == 1 && kh == kw {
		u := src.transformed(kernel, m, t.customGrad)
		return convOut{winogradSame(x, u, m, kh, t), oh, ow, m}
	}
	if stride == 1 || !t.spaceToDepth {
		xp := padSpatial(x, [2]int{ph0, ph1}, [2]int{pw0, pw1}, 0)
		return pixels(im2colConv(xp, kernel, stride, oh, ow, t))
	}
	// Space-to-depth: with s = stride, pad the input to s*(out+k'-1) pixels,
	// k' = ceil(k/s), and fold every s x s block into the channels, (row,
	// column, channel) order; pad the kernel with zeros to s*k' taps and fold
	// it the same way. The convolution becomes a stride-1 k' x k' one with
	// s*s*cin input channels: conv1 (11x11/4, 3 channels) gathers 9 taps of
	// 48 channels instead of 121 taps of 3, which the backend copies in far
	// fewer, longer blocks, for 19% more multiply-adds in that layer.
	s := stride
	kph, kpw := (kh+s-1)/s, (kw+s-1)/s
	xp := padSpatial(x, [2]int{ph0, s*(oh+kph-1) - h - ph0}, [2]int{pw0, s*(ow+kpw-1) - w - pw0}, 0)
	xs, ks := spaceToDepth(xp, s), spaceToDepthKernel(kernel, s)
	// The stride-1 convolution left is Winograd's too when it has the tiles.
	if m := t.foldedTile(kph, dims[0], oh, ow); m > 0 && t.spaceToDepthWinograd && kph == kpw {
		u := src.transformed(ks, m, t.customGrad)
		return convOut{winogradValid(xs, [2]int{}, u, m, kph, oh, ow, t), oh, ow, m}
	}
	return pixels(im2colConv(xs, ks, 1, oh, ow, t))
}

// spaceToDepth folds each s x s block of an NHWC tensor (sides multiples of
// s) into channels: [n, h, w, c] -> [n, h/s, w/s, s*s*c], (row, column,
// channel) order.
func spaceToDepth(x *Node, s int) *Node {
	d := x.Shape().Dimensions
	n, h, w, c := d[0], d[1], d[2], d[3]
	x = Reshape(x, n, h/s, s, w/s, s, c)
	x = TransposeAllAxes(x, 0, 1, 3, 2, 4, 5)
	return Reshape(x, n, h/s, w/s, s*s*c)
}

// spaceToDepthKernel is the kernel that convolves spaceToDepth(x, s) with
// stride 1 as kernel convolves x with stride s: [kh, kw, cin, cout] ->
// [ceil(kh/s), ceil(kw/s), s*s*cin, cout], zeros for the missing taps.
func spaceToDepthKernel(kernel *Node, s int) *Node {
	d := kernel.Shape().Dimensions
	kh, kw, cin, cout := d[0], d[1], d[2], d[3]
	kph, kpw := (kh+s-1)/s, (kw+s-1)/s
	k := padAxesEnd(kernel, [2]int{0, 1}, [2]int{kph*s - kh, kpw*s - kw})
	k = Reshape(k, kph, s, kpw, s, cin, cout)
	k = TransposeAllAxes(k, 0, 2, 1, 3, 4, 5)
	return Reshape(k, kph, kpw, s*s*cin, cout)
}

// winogradTransforms returns the Toom-Cook matrices of Winograd's minimal
// filtering F(m, r) (Lavin and Gray, 2015) on the given r+m-2 interpolation
// points plus the point at infinity: for a tile d of m+r-1 inputs and a
// filter g of r taps, the m outputs of their correlation are
// Aᵀ·((G·g) ⊙ (Bᵀ·d)).
func winogradTransforms(m, r int, points []float64) (at, g, bt [][]float64) {
	n := len(points)
	alpha := n + 1
	polyMul := func(p []float64, root float64) []float64 { // p·(x - root)
		out := make([]float64, len(p)+1)
		for i, c := range p {
			out[i+1] += c
			out[i] -= root * c
		}
		return out
	}
	at = make([][]float64, m)
	for i := range at {
		at[i] = make([]float64, alpha)
		for j, p := range points {
			at[i][j] = math.Pow(p, float64(i))
		}
		if i == m-1 {
			at[i][n] = 1
		}
	}
	g = make([][]float64, alpha)
	bt = make([][]float64, alpha)
	all := []float64{1}
	for j, p := range points {
		f, poly := 1.0, []float64{1}
		for l, q := range points {
			if l != j {
				f *= p - q
				poly = polyMul(poly, q)
			}
		}
		g[j] = make([]float64, r)
		for k := range r {
			g[j][k] = math.Pow(p, float64(k)) / f
		}
		bt[j] = append(poly, make([]float64, alpha-len(poly))...)
		all = polyMul(all, p)
	}
	g[n] = make([]float64, r)
	g[n][r-1] = 1
	bt[n] = all
	return at, g, bt
}

// winogradPoints are the m+r-2 finite interpolation points of F(m, r) per
// output tile side m and kernel side r: the small ones first, as they keep
// the transforms' entries (and so the float32 rounding) smallest: the
// relative error stays within 3e-5 (TestWinogradFloat32).
var winogradPoints = map[[2]int][]float64{
	{2, 3}: {0, 1, -1},
	{4, 3}: {0, 1, -1, 2, -2},
	{3, 3}: {0, 1, -1, -2}, // 4.2e-6 of the RMS, against 6.2e-6 with 2 instead of -2
	{2, 5}: {0, 1, -1, 2, -2},
	{4, 5}: {0, 1, -1, 2, -2, 0.5, -0.5},
}

// kron is the Kronecker product m⊗m.
func kron(m [][]float64) [][]float64 {
	r, c := len(m), len(m[0])
	out := make([][]float64, r*r)
	for i := range out {
		out[i] = make([]float64, c*c)
		for j := range out[i] {
			out[i][j] = m[i/r][j/c] * m[i%r][j%c]
		}
	}
	return out
}

// winogradConv is the 'SAME' stride-1 convolution of an NHWC input with an
// r x r HWIO kernel (r = 3 or 5) by Winograd's F(mxm, rxr), m = 2 or 4: each
// m x m output tile costs a = (m+r-1)² products per (cin, cout) pair instead
// of m²r², so the layer's matmul work drops 2.25x (F(2x2, 3x3)), 2.8x
// (F(2x2, 5x5)), 4x (F(4x4, 3x3)) or 6.25x (F(4x4, 5x5)), less the
// transforms and the zero padding of sides that are not multiples of m.
// Every step is a matmul the backend runs in its fast layout, and the input
// gathers a strided slices of 1/m² of the output size where im2col gathers
// r² of the full size:
//
//	D [a, P·cin]    the input tiles (side m+r-1, stride m), P = n·th·tw tiles
//	V = (Bᵀ⊗Bᵀ)·D,  U = (G⊗G)·kernel [a, cin·cout]
//	M[t] = V[t]·U[t] for each of the a tile positions t: [a, P, cout]
//	Y = (Aᵀ⊗Aᵀ)·M   [m², P·cout], scattered back to the m x m output pixels.
//
// Of t it reads customGrad, tileGrad (with customGrad, the gather is
// differentiated by overlap-add, see winogradTiles) and eyeTranspose.
func winogradConv(x, kernel *Node, m int, t tuning) *Node {
	d := x.Shape().Dimensions
	r := kernel.Shape().Dimensions[0]
	u := winogradKernel(kernel, m, t.customGrad)
	out := convOut{winogradSame(x, u, m, r, t), d[1], d[2], m}
	return cropSpatial(out.pixels(), d[1], d[2])
}

// winogradKernel is U = (G⊗G)·kernel, an r x r HWIO kernel transformed for
// F(mxm, rxr): [a, cin, cout], a = (m+r-1)². It depends on the weights
// alone, so served weights have it computed once, at publish
// (Model.transformKernels), instead of at every call.
func winogradKernel(kernel *Node, m int, customGrad bool) *Node {
	kd := kernel.Shape().Dimensions
	r, cin, cout := kd[0], kd[2], kd[3]
	_, g, _ := winogradTransforms(m, r, winogradPoints[[2]int{m, r}])
	gg := winogradConst(kernel, kron(g))
	u := constMatMul(gg, Reshape(kernel, r*r, cin*cout), customGrad)
	return Reshape(u, (m+r-1)*(m+r-1), cin, cout)
}

// winogradSame is winogradConv in the tile layout, uncut (see convOut), for
// an r x r kernel transformed as winogradKernel does: 'SAME' padding
// before, and after enough for every tile.
func winogradSame(x, u *Node, m, r int, t tuning) *Node {
	d := x.Shape().Dimensions
	pad := (r - 1) / 2
	return winogradValid(x, [2]int{pad, pad}, u, m, r, d[1], d[2], t)
}

// winogradValid is winogradConv's 'VALID' convolution of the NHWC input x
// padded with before[0] rows and before[1] columns of zeros at the start
// and at the end to whole tiles, with an r x r kernel transformed as
// winogradKernel does (u [a, cin, cout]), giving oh x ow outputs in the
// tile layout, uncut (see convOut): [m, m, n, ceil(oh/m), ceil(ow/m),
// cout]. The padded sides are at least oh+r-1 and at most whole tiles,
// m·(t-1)+m+r-1.
func winogradValid(x *Node, before [2]int, u *Node, m, r, oh, ow int, t tuning) *Node {
	d := x.Shape().Dimensions
	n := d[0]
	side := m + r - 1
	th, tw := (oh+m-1)/m, (ow+m-1)/m
	pad := [2][2]int{
		{before[0], m*(th-1) + side - d[1] - before[0]},
		{before[1], m*(tw-1) + side - d[2] - before[1]},
	}
	return winogradProducts(winogradTiles(x, pad, side, m, t.customGrad && t.tileGrad), u, m, r, n, th, tw, t)
}

// winogradProducts is winogradValid from the input tiles D [a, P·cin] on:
// V = (Bᵀ⊗Bᵀ)·D, the products with u, and Y = (Aᵀ⊗Aᵀ)·M, in the tile
// layout [m, m, n, th, tw, cout].
func winogradProducts(d, u *Node, m, r, n, th, tw int, t tuning) *Node {
	_, _, bt := winogradTransforms(m, r, winogradPoints[[2]int{m, r}])
	a, p, cin := (m+r-1)*(m+r-1), n*th*tw, u.Shape().Dimensions[1]
	v := constMatMul(winogradConst(d, kron(bt)), d, t.customGrad)
	return winogradMultiply(Reshape(v, a, p, cin), u, m, r, n, th, tw, t)
}

// winogradMultiply is winogradProducts from the transformed tiles V [a,
// P, cin] on: the products with u and Y = (Aᵀ⊗Aᵀ)·M.
func winogradMultiply(v, u *Node, m, r, n, th, tw int, t tuning) *Node {
	at, _, _ := winogradTransforms(m, r, winogradPoints[[2]int{m, r}])
	a, p, cout := (m+r-1)*(m+r-1), n*th*tw, u.Shape().Dimensions[2]
	prod := matMul(v, u, t)
	y := constMatMul(winogradConst(v, kron(at)), Reshape(prod, a, p*cout), t.customGrad)
	return Reshape(y, m, m, n, th, tw, cout)
}

// winogradConst is the transform c as a constant of like's graph and dtype.
func winogradConst(like *Node, c [][]float64) *Node {
	return ConvertDType(Const(like.Graph(), c), like.DType())
}

// cropSpatial is the top-left h x w pixels of an NHWC tensor.
func cropSpatial(x *Node, h, w int) *Node { return windowSpatial(x, 0, 0, h, w) }

// windowSpatial is the h x w pixels of an NHWC tensor from (top, left), in
// one slice, or x itself where that is all of it.
func windowSpatial(x *Node, top, left, h, w int) *Node {
	if d := x.Shape().Dimensions; top == 0 && left == 0 && d[1] == h && d[2] == w {
		return x
	}
	return Slice(x, AxisRange(), AxisRange(top, top+h), AxisRange(left, left+w), AxisRange())
}

// winogradTiles gathers the overlapping side x side input tiles, m apart,
// of the NHWC input x padded with zeros as pad says ([rows, columns] ×
// [before, after]; the padded sides m·(t-1)+side) as D [side², P·c]: row
// i·side+j holds every tile's pixel (i, j). It takes one strided slice per
// pixel. Their gradient, as GoMLX forms it, pads each slice's adjoint back to
// the input's size and adds them: side² passes over the whole input (36 for
// F(4x4, 3x3)). With customGrad it is an overlap-add instead: pixel i =
// q·m+u (u < m) of tile t is pixel u of tile t+q, so the adjoint's rows and
// columns, cut into blocks of m, add as ceil(side/m)² (4) blocks shifted by
// (q, q') tiles, in the tile layout; one transpose then takes the sum to
// pixels, and one slice cuts x's pixels from it, past the padding (GoMLX's
// gradient of the padding, then a cut to the padded sides, made three).
// (Transposing each block to pixels before adding was 4-8% slower per
// layer in training: the backend transposes element by element.)
func winogradTiles(x *Node, pad [2][2]int, side, m int, customGrad bool) *Node {
	d := x.Shape().Dimensions
	n, h, w, c := d[0], d[1], d[2], d[3]
	hp, wp := pad[0][0]+h+pad[0][1], pad[1][0]+w+pad[1][1]
	th, tw := (hp-side)/m+1, (wp-side)/m+1
	forward := func(in []*Node) *Node {
		xp := padSpatial(in[0], pad[0], pad[1], 0)
		tiles := make([]*Node, 0, side*side)
		for i := range side {
			for j := range side {
				s := Slice(xp, AxisRange(), stridedRange(i, th, m), stridedRange(j, tw, m), AxisRange())
				tiles = append(tiles, Reshape(s, 1, n*th*tw*c))
			}
		}
		return Concatenate(tiles, 0)
	}
	if !customGrad {
		return forward([]*Node{x})
	}
	return withVJP([]*Node{x}, forward, func(_ []*Node, _, v *Node) []*Node {
		v = Reshape(v, side, side, n, th, tw, c)
		blocks := (side + m - 1) / m
		var sum *Node
		for q := range blocks {
			mi := min(m, side-q*m)
			for q2 := range blocks {
				mj := min(m, side-q2*m)
				// Pixels past the tile's side are zeros, so every block is
				// m x m, shifted by (q, q') tiles: [u, u', n, T, T', c].
				b := Slice(v, AxisRange(q*m, q*m+mi), AxisRange(q2*m, q2*m+mj))
				b = padAxesEnd(b, [2]int{0, 1}, [2]int{m - mi, m - mj})
				b = padAxes(b, [2]int{3, 4}, [2][2]int{{q, blocks - 1 - q}, {q2, blocks - 1 - q2}}, 0)
				if sum == nil {
					sum = b
				} else {
					sum = Add(sum, b)
				}
			}
		}
		// [u, u', n, T, T', c] -> [n, T, u, T', u', c]: pixels of the
		// padded input and past it, from which x's are cut.
		sum = TransposeAllAxes(sum, 2, 3, 0, 4, 1, 5)
		sum = Reshape(sum, n, (th+blocks-1)*m, (tw+blocks-1)*m, c)
		return []*Node{windowSpatial(sum, pad[0][0], pad[1][0], h, w)}
	})
}

// padAxesEnd appends pad[k] zeros to axis axes[k] of x.
func padAxesEnd(x *Node, axes, pad [2]int) *Node {
	return padAxes(x, axes, [2][2]int{{0, pad[0]}, {0, pad[1]}}, 0)
}

// im2colConv is the 'VALID' convolution of an already padded NHWC input
// with an HWIO kernel, giving oh x ow outputs: one strided slice of the input
// per kernel tap, stacked on the channel axis in (dy, dx, cin) order, which
// is the row-major order of the kernel reshaped to [kh*kw*cin, cout], then
// one matmul.
func im2colConv(xp, kernel *Node, stride, oh, ow int, t tuning) *Node {
	n, cin := xp.Shape().Dimensions[0], xp.Shape().Dimensions[3]
	kdims := kernel.Shape().Dimensions
	kh, kw, cout := kdims[0], kdims[1], kdims[3]
	taps := make([]*Node, 0, kh*kw)
	for dy := range kh {
		for dx := range kw {
			taps = append(taps, Slice(xp, AxisRange(), stridedRange(dy, oh, stride), stridedRange(dx, ow, stride), AxisRange()))
		}
	}
	cols := taps[0]
	if len(taps) > 1 {
		cols = Concatenate(taps, -1)
	}
	cols = Reshape(cols, n*oh*ow, kh*kw*cin)
	y := matMul(cols, Reshape(kernel, kh*kw*cin, cout), t)
	return Reshape(y, n, oh, ow, cout)
}

// maxPool3 is a 3x3 'SAME'-padded max pool of an NHWC input. With
// t.customGrad the maxes are maxVJP.
func maxPool3(x *Node, stride int, impl string, t tuning) *Node {
	const window = 3
	dims := x.Shape().Dimensions
	ph0, ph1, oh := samePadding(dims[1], window, stride)
	pw0, pw1, ow := samePadding(dims[2], window, stride)
	if impl == PoolBuiltin {
		return MaxPool(x).Window(window).Strides(stride).
			PaddingPerDim([][2]int{{ph0, ph1}, {pw0, pw1}}).Done()
	}
	// Separable max of strided slices: rows first, then columns. Max routes
	// the gradient to the arg-max, which is exactly max-pool's gradient.
	// Padding is the lowest float32, so it never wins against a real value.
	xp := padSpatial(x, [2]int{ph0, ph1}, [2]int{pw0, pw1}, -math.MaxFloat32)
	maxOf := Max
	if t.customGrad {
		maxOf = maxVJP
	}
	var rows *Node
	for d := range window {
		s := Slice(xp, AxisRange(), stridedRange(d, oh, stride), AxisRange(), AxisRange())
		if rows == nil {
			rows = s
		} else {
			rows = maxOf(rows, s)
		}
	}
	var out *Node
	for d := range window {
		s := Slice(rows, AxisRange(), AxisRange(), stridedRange(d, ow, stride), AxisRange())
		if out == nil {
			out = s
		} else {
			out = maxOf(out, s)
		}
	}
	return out
}

// poolReadsTiles reports whether maxPool3Tiles can pool out: a 3x3 pool of
// stride s that needs no padding on either side.
func poolReadsTiles(out convOut, s int) bool {
	ph0, ph1, _ := samePadding(out.oh, 3, s)
	pw0, pw1, _ := samePadding(out.ow, 3, s)
	return ph0+ph1+pw0+pw1 == 0
}

// poolAligned reports whether maxPoolAligned can pool out with a 3x3
// window of stride s: one output tile per window, none cut.
func poolAligned(out convOut, s int) bool {
	return out.m == 3 && s == 3 && out.oh%3 == 0 && out.ow%3 == 0
}

// maxPoolAligned is maxPool3 of stride 3 of a convolution's output in
// Winograd's tile layout of F(3x3) tiles that the map's sides divide into
// (poolAligned): the pool's windows are the tiles, which need no padding,
// so the pooled map is the maximum over each tile's 3x3 pixels, the
// tiles' first two axes, in pixels already: [n, th, tw, c]. Inference
// only: its gradient, GoMLX's of a ReduceMax, splits between tied maxima
// where Max's sends all of it to the first.
func maxPoolAligned(out convOut) *Node {
	d := out.y.Shape().Dimensions
	y := Reshape(out.y, d[0]*d[1], d[2]*d[3]*d[4]*d[5])
	return Reshape(ReduceMax(y, 0), d[2], d[3], d[4], d[5])
}

// maxPool3Tiles is maxPool3 of a convolution's output in Winograd's
// tile layout (see convOut), read where it is: transposing the tiles to
// pixels first moves the whole map (conv1's 57x57x96 per image), where this
// transposes only the pooled map, a ninth of it at stride 3. It pools rows,
// then columns (tilePoolPass), each giving the pooled values grouped by
// their index modulo G, then interleaves the G x G groups.
func maxPool3Tiles(out convOut, stride int, customGrad bool) *Node {
	d := out.y.Shape().Dimensions
	n, c := d[2], d[5]
	ph, _, oh := samePadding(out.oh, 3, stride)
	pw, _, ow := samePadding(out.ow, 3, stride)
	// [dy, dx, n, ti, tj, c] -> rows [e, dx, n, k, tj, c] -> [e2, e, n, k, k2, c].
	y := tilePoolPass(out.y, 0, 3, out.m, stride, out.oh, ph, customGrad)
	y = tilePoolPass(y, 1, 4, out.m, stride, out.ow, pw, customGrad)
	g, kh, kw := y.Shape().Dimensions[0], y.Shape().Dimensions[3], y.Shape().Dimensions[4]
	// -> [n, k, e, k2, e2, c]: pooled row G·k+e, column G·k2+e2.
	y = TransposeAllAxes(y, 2, 3, 1, 4, 0, 5)
	return cropSpatial(Reshape(y, n, kh*g, kw*g, c), oh, ow)
}

// tilePoolPass max-pools one spatial axis of a map in Winograd's tile
// layout, where pixel t·m+j of that axis lies at index j of axis a and t of
// axis b (a < b), with a 3-wide window of stride s over its size pixels,
// 'SAME'-padded with pad pixels before. Pooled pixel i reads pixels
// s·i+δ-pad, δ < 3. Grouped by e = i mod G, G = lcm(s, m)/s, they are i =
// G·k+e, pixels u+lcm·k with u = s·e+δ-pad: index u mod m of axis a and
// u/m + (lcm/m)·k of axis b, a strided slice. The pixels before 0 and from
// size on (the tiles' rows past the output, made from zeros) are padding,
// the lowest float32, which never wins. The result stacks the groups: [G,
// x's axes but a, axis b now K = ceil(out/G) long], pooled pixel G·k+e at
// [e, ..., k, ...], zeros past the last.
//
// With customGrad the gradient puts each slice's share back by
// concatenation, adding the two that read a pixel where stride-2 windows
// overlap; GoMLX's pads each of the 3·G slices to the whole map and adds
// them, which made training slower than transposing to pixels first.
func tilePoolPass(x *Node, a, b, m, s, size, pad int, customGrad bool) *Node {
	const window = 3
	dims := x.Shape().Dimensions
	_, _, out := samePadding(size, window, s)
	l := s * m / gcd(s, m)
	groups, tileStep := l/s, l/m
	k := (out + groups - 1) / groups
	count := func(e int) int { return max(0, (out-e+groups-1)/groups) }
	// A slice's shape: x's without axis a, axis b K long (b-1 once a is gone).
	sliceDims := slices.Delete(slices.Clone(dims), a, a+1)
	sliceDims[b-1] = k
	zeros := Zeros(x.Graph(), shapes.Make(x.DType(), sliceDims...))
	// span is the k in [k0, k1) whose pixel u+l·k, of n, is in the map; the
	// rest pad.
	span := func(u, n int) (k0, k1 int) {
		k0, k1 = 0, n
		if u < 0 {
			k0 = (-u + l - 1) / l
		}
		if last := u + l*(n-1); last >= size {
			k1 = max(k0, (size-u+l-1)/l)
		}
		return k0, k1
	}
	slice := func(x *Node, u, e int) *Node {
		n := count(e)
		if n == 0 {
			return zeros
		}
		k0, k1 := span(u, n)
		d := slices.Clone(sliceDims)
		var y *Node
		if k1 > k0 {
			p := u + l*k0
			specs := wholeAxes(len(dims))
			specs[a] = AxisRange(p%m, p%m+1)
			specs[b] = stridedRange(p/m, k1-k0, tileStep)
			d[b-1] = k1 - k0
			y = Reshape(Slice(x, specs...), d...)
		}
		if k0 > 0 || k1 < n {
			d[b-1] = n
			lowest := BroadcastToDims(Scalar(x.Graph(), x.DType(), -math.MaxFloat32), d...)
			if y == nil {
				y = lowest
			} else {
				y = padAxis(y, b-1, k0, n-k1, -math.MaxFloat32)
			}
		}
		return padAxisEnd(y, b-1, k-n)
	}
	// taps[e][δ] is the slice of pixels s·e+δ-pad; pairs[e] the max of the first two.
	taps := make([][window]*Node, groups)
	pairs := make([]*Node, groups)
	forward := func(in []*Node) *Node {
		pooled := make([]*Node, groups)
		for e := range groups {
			for dd := range window {
				taps[e][dd] = slice(in[0], s*e+dd-pad, e)
			}
			pairs[e] = Max(taps[e][0], taps[e][1])
			pooled[e] = InsertAxes(Max(pairs[e], taps[e][2]), 0)
		}
		return Concatenate(pooled, 0)
	}
	if !customGrad {
		return forward([]*Node{x})
	}
	return withVJP([]*Node{x}, forward, func(_ []*Node, _, v *Node) []*Node {
		// Each tap's adjoint, routed as maxVJP routes it, goes to the
		// pixels it read: tap u reads pixel u+l·k = ρ+l·(k+σ) for k in
		// span, ρ = u mod l, σ = ⌊u/l⌋ (-1, 0 or 1). res[ρ] sums, over
		// the taps of residue ρ (two where the windows overlap, at stride
		// 2), the adjoint of pixels ρ+l·k', k' < kr.
		// Pixel ρ+l·k' is index ρ/m + tileStep·k' of axis b, so every
		// pixel of the tiles has k' < kr: residues of that length need no
		// cut when tileStep divides the tiles (always at stride 2). (k+1,
		// the taps' reach, cost model1 a 16 -> 15 and a 9 -> 8 crop of
		// conv1's and conv2's gradients, 2% of its step.)
		kr := (dims[b] + tileStep - 1) / tileStep
		res := make([]*Node, l)
		zero := ScalarZero(v.Graph(), v.DType())
		add := func(u, e int, adj *Node) {
			k0, k1 := span(u, count(e))
			if k1 <= k0 {
				return
			}
			sigma := (u+l)/l - 1 // ⌊u/l⌋ for u >= -l
			rho := u - l*sigma
			part := padAxis(sliceAxis(adj, b-1, k0, k1), b-1, k0+sigma, kr-k1-sigma, 0)
			if res[rho] == nil {
				res[rho] = part
			} else {
				res[rho] = Add(res[rho], part)
			}
		}
		for e := range groups {
			ve := Reshape(sliceAxis(v, 0, e, e+1), sliceDims...)
			dPair := Where(GreaterOrEqual(pairs[e], taps[e][2]), ve, zero)
			d0 := Where(GreaterOrEqual(taps[e][0], taps[e][1]), dPair, zero)
			for dd, adj := range []*Node{d0, Sub(dPair, d0), Sub(ve, dPair)} {
				add(s*e+dd-pad, e, adj)
			}
		}
		resDims := slices.Clone(sliceDims)
		resDims[b-1] = kr
		// Pixel ρ+l·k' is index ρ mod m of axis a and ρ/m + tileStep·k' of
		// axis b: stack the m of each ρ/m on axis a, then interleave the
		// tileStep of those on axis b.
		withA := slices.Insert(slices.Clone(resDims), a, 1)
		steps := make([]*Node, tileStep)
		for q := range tileStep {
			rows := make([]*Node, m)
			for j := range m {
				r := res[q*m+j]
				if r == nil {
					r = Zeros(v.Graph(), shapes.Make(v.DType(), resDims...))
				}
				rows[j] = Reshape(r, withA...)
			}
			steps[q] = InsertAxes(Concatenate(rows, a), b+1)
		}
		dx := Concatenate(steps, b+1)
		merged := slices.Clone(dims)
		merged[b] = kr * tileStep
		dx = Reshape(dx, merged...)
		return []*Node{sliceAxis(dx, b, 0, dims[b])}
	})
}

// padAxisEnd appends n zeros to axis axis of x.
func padAxisEnd(x *Node, axis, n int) *Node { return padAxis(x, axis, 0, n, 0) }

// padAxis pads one axis of x with before and after constants.
func padAxis(x *Node, axis, before, after int, value float64) *Node {
	return padAxes(x, [2]int{axis, axis}, [2][2]int{{before, after}, {}}, value)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// lrnBand returns the [C, C] 0/1 matrix whose column c sums the channels
// within lrnRadius of c.
func lrnBand(channels int) [][]float32 {
	band := make([][]float32, channels)
	for i := range band {
		band[i] = make([]float32, channels)
		for j := max(0, i-lrnRadius); j <= min(channels-1, i+lrnRadius); j++ {
			band[i][j] = 1
		}
	}
	return band
}

// localResponseNorm is TensorFlow's local_response_normalization over the
// channel axis of an NHWC input:
// out = x / (bias + alpha * sum_{|c'-c|<=r} x[c']^2)^beta.
// The window sum is a matmul with a constant band matrix, and x^-0.75 is
// 1/(sqrt(d)*sqrt(sqrt(d))), both fast and differentiable on every backend.
// With customGrad its gradient is the closed form below.
func localResponseNorm(x *Node, customGrad bool) *Node {
	dims := x.Shape().Dimensions
	c := dims[len(dims)-1]
	rows := x.Shape().Size() / c
	band := ConvertDType(Const(x.Graph(), lrnBand(c)), x.DType())
	windowSum := func(t *Node) *Node {
		return Reshape(DotGeneral(Reshape(t, rows, c), []int{1}, nil, band, []int{0}, nil), dims...)
	}
	var d, q *Node // the forward's d and d^beta, for the gradient
	forward := func(in []*Node) *Node {
		d = AddScalar(MulScalar(windowSum(Square(in[0])), lrnAlpha), lrnBias)
		root := Sqrt(d)
		q = Mul(root, Sqrt(root))
		return Div(in[0], q)
	}
	if !customGrad {
		return forward([]*Node{x})
	}
	// The gradient of out = x·d^-beta, d = bias + alpha·B·x², for the
	// symmetric band B, is dx = v·d^-beta - 2·alpha·beta·x·B·(v·out/d)
	// (x·d^(-beta-1) = out/d): six element-wise passes and one band matmul,
	// where GoMLX's autodiff of the forward ops makes about twenty.
	return withVJP([]*Node{x}, forward, func(in []*Node, out, v *Node) []*Node {
		spread := windowSum(Div(Mul(v, out), d))
		return []*Node{Sub(Div(v, q), MulScalar(Mul(in[0], spread), 2*lrnAlpha*lrnBeta))}
	})
}

// relu is max(x, 0).
func relu(x *Node) *Node { return Max(x, ZerosLike(x)) }

// variable returns the scope's variable name, creating it with init's values
// when it does not exist yet. Values are made on the host from a PRNG seeded
// by the store's ParamInitSeed and the variable's path, so a variant's
// initial weights depend only on its seed, on every backend, and cost a
// fraction of a second (the go backend's in-graph RNG took ~14 s for model1).
func variable(scope *gmx.Scope, name string, shape shapes.Shape, init func(r *rand.Rand, flat []float32)) *gmx.Variable {
	if v := scope.GetVariable(name); v != nil {
		return v
	}
	t := tensors.FromShape(shape)
	if init != nil {
		seed := gmx.GetParamOr(scope, ParamInitSeed, int64(1))
		h := fnv.New64a()
		h.Write([]byte(gmx.JoinPath(scope.Scope(), name)))
		r := rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
		tensors.MustMutableFlatData(t, func(flat []float32) { init(r, flat) })
	}
	return scope.VariableWithValue(name, t)
}

// uniformScaling is tflearn's default conv initializer: uniform in
// ±sqrt(3/fan_in), fan_in being the product of all but the last dimension.
func uniformScaling(fanIn int) func(r *rand.Rand, flat []float32) {
	limit := math.Sqrt(3 / float64(fanIn))
	return func(r *rand.Rand, flat []float32) {
		for i := range flat {
			flat[i] = float32((2*r.Float64() - 1) * limit)
		}
	}
}

// truncatedNormal is tflearn's default dense initializer: a normal with the
// given stddev, redrawn beyond two deviations (TensorFlow's truncated_normal).
func truncatedNormal(stddev float64) func(r *rand.Rand, flat []float32) {
	return func(r *rand.Rand, flat []float32) {
		for i := range flat {
			z := r.NormFloat64()
			for math.Abs(z) > 2 {
				z = r.NormFloat64()
			}
			flat[i] = float32(z * stddev)
		}
	}
}

// convLayer is conv + bias + ReLU, with variables "weights" [k,k,cin,cout] and
// "biases" [cout] in scope, followed by a 3x3 max pool of stride poolStride
// when poolStride > 0. With t.poolFirst the pool runs before the bias and
// the ReLU: max(x+b) = max(x)+b exactly (rounding is monotonic) and ReLU
// commutes with max, so the values are the same, and the bias and ReLU
// (and their gradients) touch the pooled map, a quarter or a ninth of the
// convolution's output. The gradients agree as well: both go to the
// window's first arg-max where its maximum (plus bias) is positive, and
// both are zero where it is not.
func convLayer(scope *gmx.Scope, x *Node, filters, kernel, stride, poolStride int, impl, poolImpl string, t tuning) *Node {
	return convLayerOn(scope, convOut{y: x}, filters, kernel, stride, poolStride, impl, poolImpl, t, 0).y
}

// convLayerOn is convLayer on in: pixels (in.m == 0, in.y NHWC) or the
// previous layer's activation in Winograd's tile layout, which a stride-1
// Winograd convolution with the same tiles reads directly (chainedTiles).
// With keep > 0, no pool, and F(keep x keep) taken, the activation stays
// in the tile layout for the next layer, the pixels past the map zeros
// (tileBias); otherwise it is in pixels (m == 0).
func convLayerOn(scope *gmx.Scope, in convOut, filters, kernel, stride, poolStride int, impl, poolImpl string, t tuning, keep int) convOut {
	x := in.y
	d := x.Shape().Dimensions
	cin := d[len(d)-1]
	if t.tiles != nil {
		cin = t.tiles.ch
	}
	w := variable(scope, "weights", shapes.Make(dtypes.Float32, kernel, kernel, cin, filters), uniformScaling(kernel*kernel*cin))
	b := variable(scope, "biases", shapes.Make(dtypes.Float32, filters), nil)
	g := x.Graph()
	var out convOut
	if in.m > 0 {
		r := kernel
		u := t.kernelsFor(scope).transformed(w.ValueGraph(g), in.m, t.customGrad)
		y := winogradProducts(chainedTiles(x, (r-1)/2, t.customGrad && t.tileGrad), u, in.m, r, d[2], d[3], d[4], t)
		out = convOut{y, in.oh, in.ow, in.m}
	} else {
		out = conv2DUncut(x, w.ValueGraph(g), stride, impl, t, t.kernelsFor(scope))
	}
	relu := relu
	if t.customGrad {
		relu = reluVJP
	}
	if keep > 0 && out.m == keep && poolStride == 0 {
		return convOut{relu(Add(out.y, tileBias(b.ValueGraph(g), out))), out.oh, out.ow, out.m}
	}
	var y *Node
	switch {
	case poolStride > 0 && t.poolFirst && poolImpl == PoolSlices && !t.customGrad && poolAligned(out, poolStride):
		y = maxPoolAligned(out)
	case poolStride > 0 && t.poolFirst && t.poolTiles && out.m > 0 && poolImpl == PoolSlices &&
		(poolReadsTiles(out, poolStride) || t.poolTilesPadded):
		y = maxPool3Tiles(out, poolStride, t.customGrad)
	default:
		y = cropSpatial(out.pixels(), out.oh, out.ow)
		if poolStride > 0 && t.poolFirst {
			y = maxPool3(y, poolStride, poolImpl, t)
		}
	}
	y = relu(Add(y, ExpandLeftToRank(b.ValueGraph(g), 4)))
	if poolStride > 0 && !t.poolFirst {
		y = maxPool3(y, poolStride, poolImpl, t)
	}
	return convOut{y: y}
}

// tileBias is a convolution's bias b [c] for its output in the tile layout
// (out.y [m, m, n, th, tw, c]): [m, m, 1, th, tw, c], -1e30 instead at the
// pixels past the map that the tiles cover where its sides are not
// multiples of m, so that the ReLU after it makes them zeros, the 'SAME'
// padding the next layer's tiles read there (chainedTiles).
func tileBias(b *Node, out convOut) *Node {
	d := out.y.Shape().Dimensions
	m, th, tw, c := d[0], d[3], d[4], d[5]
	b = Reshape(b, 1, 1, 1, 1, 1, c)
	if out.oh%m == 0 && out.ow%m == 0 {
		return b
	}
	off := make([]float32, m*m*th*tw)
	for i := range off {
		dy, dx, ti, tj := i/(m*th*tw), i/(th*tw)%m, i/tw%th, i%tw
		if m*ti+dy >= out.oh || m*tj+dx >= out.ow {
			off[i] = -1e30
		}
	}
	dims := []int{m, m, 1, th, tw, c}
	offset := Reshape(Const(b.Graph(), off), m, m, 1, th, tw, 1)
	return Add(BroadcastToDims(b, dims...), BroadcastToDims(offset, dims...))
}

// chainedTiles is the input tiles D [side², P·c] of a stride-1 'SAME'
// Winograd convolution F(mxm, rxr), r = 2p+1, 2p <= m, laid out as
// winogradTiles lays them out, taken from an input in the tile layout y
// [m, m, n, th, tw, c] whose pixels past the map are zeros (tileBias).
// Tile t's row i is pixel m·t+i-p: rows p to p+m-1 are tile t's own rows,
// the p before them the last p rows of tile t-1 and the p after them the
// first p of tile t+1, zeros before the first tile and past the last (the
// 'SAME' padding). So D is y with p rows of its neighbours concatenated on
// each side, rows then columns: slices of 2p/m of the map and block
// copies, where gathering from pixels transposes the map to pixels, cuts
// and pads it, and takes side² strided slices (all element by element but
// the pad). With customGrad each side's gradient adds the neighbours'
// rows back onto the tile's own (GoMLX's pads every part of the
// concatenation back to the whole and adds them).
func chainedTiles(y *Node, p int, customGrad bool) *Node {
	if m := y.Shape().Dimensions[0]; 2*p > m {
		exceptions.Panicf("chainedTiles: %d rows of padding for tiles of side %d", p, m)
	}
	for _, ax := range [][2]int{{0, 3}, {1, 4}} {
		y = withNeighbourRows(y, ax[0], ax[1], p, customGrad)
	}
	d := y.Shape().Dimensions
	return Reshape(y, d[0]*d[1], y.Shape().Size()/(d[0]*d[1]))
}

// withNeighbourRows is y (in the tile layout: the m rows of each tile
// along axis a, the tiles along axis b) with the last p rows of the tile
// before concatenated before each tile's rows and the first p of the tile
// after past them (see chainedTiles).
func withNeighbourRows(y *Node, a, b, p int, customGrad bool) *Node {
	m := y.Shape().Dimensions[a]
	forward := func(in []*Node) *Node {
		return Concatenate([]*Node{shiftedRows(in[0], a, b, m-p, m, true), in[0], shiftedRows(in[0], a, b, 0, p, false)}, a)
	}
	if !customGrad {
		return forward([]*Node{y})
	}
	return withVJP([]*Node{y}, forward, func(_ []*Node, _, v *Node) []*Node {
		// v has m+2p rows: the tile before's, then the tile's own (p to
		// p+m-1), then the tile after's. Own rows 0 to p-1 were also the
		// rows after the tile before; m-p to m-1 the rows before the tile
		// after.
		parts := []*Node{Add(sliceAxis(v, a, p, 2*p), shiftedRows(v, a, b, m+p, m+2*p, true))}
		if m > 2*p {
			parts = append(parts, sliceAxis(v, a, 2*p, m))
		}
		parts = append(parts, Add(sliceAxis(v, a, m, m+p), shiftedRows(v, a, b, 0, p, false)))
		return []*Node{Concatenate(parts, a)}
	})
}

// shiftedRows is rows from to to (axis a) of every tile of x along axis
// b, each tile's taken from the tile before it (down) or after it, zeros
// where there is none.
func shiftedRows(x *Node, a, b, from, to int, down bool) *Node {
	nt := x.Shape().Dimensions[b]
	if nt == 1 {
		dims := slices.Clone(x.Shape().Dimensions)
		dims[a] = to - from
		return Zeros(x.Graph(), shapes.Make(x.DType(), dims...))
	}
	specs := wholeAxes(x.Rank())
	specs[a] = AxisRange(from, to)
	if down {
		specs[b] = AxisRange(0, nt-1)
		return padAxis(Slice(x, specs...), b, 1, 0, 0)
	}
	specs[b] = AxisRange(1, nt)
	return padAxis(Slice(x, specs...), b, 0, 1, 0)
}

// denseLayer is x·W + b with W [in, out], regularised as asked: dropout on its
// output or DropConnect on its weights, only while training. keep == 1 means
// no regularisation. t.customGrad differentiates the matmul by hand (matMul).
func denseLayer(scope *gmx.Scope, x *Node, units int, reg Regularization, keep float64, training bool, t tuning) *Node {
	g := x.Graph()
	in := x.Shape().Dimensions[1]
	w := variable(scope, "weights", shapes.Make(dtypes.Float32, in, units), truncatedNormal(0.02)).ValueGraph(g)
	b := variable(scope, "biases", shapes.Make(dtypes.Float32, units), nil).ValueGraph(g)
	y := func(w *Node) *Node { return matMul(x, w, t) }
	if reg == DropConnect && keep < 1 {
		switch {
		case training && t.tap != nil && t.tap.masked != nil:
			w = t.tap.masked // masked on the host (hostMasks), from the same draws
		case training && t.dropConnectBits && keep == 0.5 && w.Shape().Size()%halfMaskBits == 0:
			u := scope.RandomUniform(g, shapes.Make(dtypes.Float32, w.Shape().Size()/halfMaskBits))
			w = Mul(w, halfMask(u, w.Shape()))
		case training:
			w = Mul(w, scope.RandomBernoulli(Scalar(g, dtypes.Float32, keep), w.Shape()))
		case t.dropConnectOut:
			// x·(keep·W) as keep·(x·W): scaling the [batch, units] product
			// instead of the [in, units] weights (37M values in model5) at
			// every inference.
			return Add(MulScalar(y(w), keep), ExpandLeftToRank(b, 2))
		default:
			w = MulScalar(w, keep)
		}
	}
	return Add(y(w), ExpandLeftToRank(b, 2))
}

// halfMaskBits is how many keep-0.5 decisions halfMask takes from one
// uniform float32: 16 of the 23 bits of its mantissa, bits 7 to 22.
const halfMaskBits = 16

// halfMask is a 0/1 float mask of the given shape, each entry 1 with
// probability exactly 1/2, made from Size/halfMaskBits uniform floats u in
// [0, 1): entry i·16+k is bit 7+k of u[i]'s mantissa. DropConnect's
// RandomBernoulli draws one uniform per weight (33.5M per model5 step) and
// spends five passes turning them into a mask; this draws a sixteenth as
// many. A uniform float's mantissa bits are uniform and independent: the
// uint32 -> float32 rounding can carry into them, but a carry flips a bit
// that is itself uniform and independent of the lower ones, which keeps it
// uniform (TestHalfMask checks the rate and independence).
func halfMask(u *Node, shape shapes.Shape) *Node {
	g := u.Graph()
	n := u.Shape().Size()
	bits := BroadcastToDims(Reshape(Bitcast(u, dtypes.Uint32), n, 1), n, halfMaskBits)
	shifts := make([]uint32, halfMaskBits)
	for k := range shifts {
		shifts[k] = uint32(7 + k)
	}
	shift := BroadcastToDims(Reshape(Const(g, shifts), 1, halfMaskBits), n, halfMaskBits)
	bit := BitwiseAnd(BitwiseShiftRightLogical(bits, shift), Scalar(g, dtypes.Uint32, 1))
	return StopGradient(ConvertDType(Reshape(bit, shape.Dimensions...), shape.DType))
}

// dropout is tflearn's dropout(x, keep): kept units are scaled by 1/keep while
// training; identity at inference.
func dropout(scope *gmx.Scope, x *Node, keep float64, training bool) *Node {
	if !training || keep >= 1 {
		return x
	}
	g := x.Graph()
	mask := scope.RandomBernoulli(Scalar(g, dtypes.Float32, keep), x.Shape())
	return MulScalar(Mul(x, mask), 1/keep)
}
