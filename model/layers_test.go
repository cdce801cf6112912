package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
)

func testBackend(t testing.TB) *Backend {
	t.Helper()
	b, err := NewBackend("go")
	if err != nil {
		t.Fatalf("NewBackend(go) = %v", err)
	}
	return b
}

func randomValues(r *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64()
	}
	return v
}

// eval runs fn on one float64 input of the given dims and returns the flat output.
func eval(t *testing.T, b compute.Backend, fn func(x *Node) *Node, x []float64, dims ...int) []float64 {
	t.Helper()
	out, err := ExecOnce(b, fn, tensors.FromFlatDataAndDimensions(x, dims...))
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	return tensors.MustCopyFlatData[float64](out)
}

// checkGradient compares the graph gradient of sum(fn(x)·r), for a fixed random
// r, with central finite differences at every input element, in float64.
func checkGradient(t *testing.T, name string, fn func(x *Node) *Node, dims ...int) {
	t.Helper()
	b := testBackend(t).b
	r := rand.New(rand.NewPCG(1, 2))
	n := 1
	for _, d := range dims {
		n *= d
	}
	x := randomValues(r, n)
	outLen := len(eval(t, b, fn, x, dims...))
	weights := randomValues(r, outLen)
	objective := func(x *Node) *Node {
		y := fn(x)
		w := Const(x.Graph(), tensors.FromFlatDataAndDimensions(weights, y.Shape().Dimensions...))
		return ReduceAllSum(Mul(y, w))
	}
	grad := eval(t, b, func(x *Node) *Node { return Gradient(objective(x), x)[0] }, x, dims...)
	const h = 1e-6
	for i := range x {
		orig := x[i]
		x[i] = orig + h
		up := eval(t, b, objective, x, dims...)[0]
		x[i] = orig - h
		down := eval(t, b, objective, x, dims...)[0]
		x[i] = orig
		numeric := (up - down) / (2 * h)
		if math.Abs(numeric-grad[i]) > 1e-5*math.Max(1, math.Abs(numeric)) {
			t.Fatalf("%s: d/dx[%d] = %v (graph); finite differences give %v", name, i, grad[i], numeric)
		}
	}
}

func TestMaxPoolGradient(t *testing.T) {
	for _, stride := range []int{2, 3} {
		checkGradient(t, "maxPool3", func(x *Node) *Node { return maxPool3(x, stride, PoolSlices, tuning{}) }, 2, 7, 8, 3)
	}
}

func TestLRNGradient(t *testing.T) {
	for _, custom := range []bool{false, true} {
		checkGradient(t, fmt.Sprintf("localResponseNorm (custom gradient %v)", custom), func(x *Node) *Node {
			// Scale up so the normaliser is far from 1 and its gradient matters.
			return localResponseNorm(MulScalar(x, 30), custom)
		}, 1, 3, 2, 13)
	}
}

func TestConvIm2colGradient(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	kernel := randomValues(r, 3*3*2*4)
	checkGradient(t, "conv2D", func(x *Node) *Node {
		k := Const(x.Graph(), tensors.FromFlatDataAndDimensions(kernel, 3, 3, 2, 4))
		return conv2D(x, k, 2, ConvIm2col, tuning{})
	}, 1, 7, 6, 2)
}

// TestFormulationsAgree checks the go backend's formulations against GoMLX's
// built-in convolution and max pool (forward only: the built-in max pool has
// no gradient on the go backend).
func TestFormulationsAgree(t *testing.T) {
	b := testBackend(t).b
	r := rand.New(rand.NewPCG(5, 6))
	tests := []struct {
		name           string
		dims           []int
		kernel, stride int
		cout           int
	}{
		{"conv 11x11/4 on 27px", []int{2, 27, 27, 3}, 11, 4, 5},
		{"conv 11x11/4 on 30x29px", []int{1, 30, 29, 2}, 11, 4, 3},
		// Enough 4x4 tiles (4·5·5) for Winograd after space-to-depth.
		{"conv 11x11/4 on 4x67px", []int{4, 67, 67, 3}, 11, 4, 3},
		{"conv 3x3/2", []int{1, 8, 7, 2}, 3, 2, 3},
		{"conv 5x5/1", []int{1, 9, 8, 4}, 5, 1, 3},
		{"conv 3x3/1", []int{1, 6, 6, 3}, 3, 1, 2},
		{"conv 3x3/1 odd sides", []int{2, 7, 5, 4}, 3, 1, 3},
		{"conv 5x5/1 odd sides", []int{2, 9, 6, 3}, 5, 1, 4},
	}
	for _, tc := range tests {
		n := tc.dims[0] * tc.dims[1] * tc.dims[2] * tc.dims[3]
		x := randomValues(r, n)
		kernel := randomValues(r, tc.kernel*tc.kernel*tc.dims[3]*tc.cout)
		conv := func(impl string, tu tuning) func(x *Node) *Node {
			return func(x *Node) *Node {
				k := Const(x.Graph(), tensors.FromFlatDataAndDimensions(kernel, tc.kernel, tc.kernel, tc.dims[3], tc.cout))
				return conv2D(x, k, tc.stride, impl, tu)
			}
		}
		want := eval(t, b, conv(ConvBuiltin, tuning{}), x, tc.dims...)
		assertClose(t, tc.name, eval(t, b, conv(ConvIm2col, tuning{}), x, tc.dims...), want)
		assertClose(t, tc.name+" space-to-depth", eval(t, b, conv(ConvIm2col, tuning{spaceToDepth: true}), x, tc.dims...), want)
		if tc.stride > 1 {
			all := tuning{spaceToDepth: true, spaceToDepthWinograd: true, winograd: true, winograd5: true, winograd4: true}
			assertClose(t, tc.name+" space-to-depth winograd", eval(t, b, conv(ConvIm2col, all), x, tc.dims...), want)
		}
		if (tc.kernel == 3 || tc.kernel == 5) && tc.stride == 1 {
			for _, m := range []int{2, 4} {
				wino := func(x *Node) *Node {
					k := Const(x.Graph(), tensors.FromFlatDataAndDimensions(kernel, tc.kernel, tc.kernel, tc.dims[3], tc.cout))
					return winogradConv(x, k, m, tuning{})
				}
				assertClose(t, fmt.Sprintf("%s winograd F(%d)", tc.name, m), eval(t, b, wino, x, tc.dims...), want)
			}
		}
	}
	for _, stride := range []int{1, 2, 3} {
		dims := []int{2, 13, 14, 3}
		x := randomValues(r, 2*13*14*3)
		pool := func(impl string) func(x *Node) *Node {
			return func(x *Node) *Node { return maxPool3(x, stride, impl, tuning{}) }
		}
		assertClose(t, "maxPool3", eval(t, b, pool(PoolSlices), x, dims...), eval(t, b, pool(PoolBuiltin), x, dims...))
	}
}

func assertClose(t *testing.T, name string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values; want %d", name, len(got), len(want))
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > 1e-9*math.Max(1, math.Abs(want[i])) {
			t.Fatalf("%s: value %d = %v; want %v", name, i, got[i], want[i])
		}
	}
}

// TestLRNMatchesDefinition checks the band-matmul LRN against TensorFlow's
// formula computed by hand.
func TestLRNMatchesDefinition(t *testing.T) {
	b := testBackend(t).b
	r := rand.New(rand.NewPCG(7, 8))
	const c = 14
	x := randomValues(r, 2*c)
	for i := range x {
		x[i] *= 40
	}
	got := eval(t, b, func(x *Node) *Node { return localResponseNorm(x, true) }, x, 1, 1, 2, c)
	for p := range 2 {
		for ch := range c {
			var sum float64
			for j := max(0, ch-5); j <= min(c-1, ch+5); j++ {
				sum += x[p*c+j] * x[p*c+j]
			}
			want := x[p*c+ch] / math.Pow(1+1e-4*sum, 0.75)
			if math.Abs(got[p*c+ch]-want) > 1e-9*math.Max(1, math.Abs(want)) {
				t.Fatalf("lrn[%d,%d] = %v; want %v", p, ch, got[p*c+ch], want)
			}
		}
	}
}

// TestMomentumUpdate checks two steps of the update against hand-computed values.
func TestMomentumUpdate(t *testing.T) {
	b := testBackend(t).b
	step := func(w, v, g []float64) (nw, nv []float64) {
		out, err := ExecOnceN(b, func(w, v, g *Node) []*Node {
			gr := w.Graph()
			p, nv := momentumUpdate(w, v, g, Scalar(gr, dtypes.Float64, 0.1), Scalar(gr, dtypes.Float64, 0.9))
			return []*Node{p, nv}
		}, w, v, g)
		if err != nil {
			t.Fatalf("exec: %v", err)
		}
		return tensors.MustCopyFlatData[float64](out[0]), tensors.MustCopyFlatData[float64](out[1])
	}
	w, v := []float64{1, -2}, []float64{0, 0}
	w, v = step(w, v, []float64{0.5, 1})
	// v1 = g1 = (0.5, 1); w1 = w0 - 0.1*v1 = (0.95, -2.1)
	assertClose(t, "v1", v, []float64{0.5, 1})
	assertClose(t, "w1", w, []float64{0.95, -2.1})
	w, v = step(w, v, []float64{-1, 2})
	// v2 = 0.9*v1 + g2 = (-0.55, 2.9); w2 = w1 - 0.1*v2 = (1.005, -2.39)
	assertClose(t, "v2", v, []float64{-0.55, 2.9})
	assertClose(t, "w2", w, []float64{1.005, -2.39})
}

func TestSamePadding(t *testing.T) {
	tests := []struct{ in, window, stride, before, after, out int }{
		{227, 11, 4, 4, 4, 57},
		{57, 3, 2, 1, 1, 29},
		{57, 3, 3, 0, 0, 19},
		{29, 5, 1, 2, 2, 29},
		{15, 3, 2, 1, 1, 8},
		{7, 3, 3, 1, 1, 3},
		{8, 3, 2, 0, 1, 4},
	}
	for _, tc := range tests {
		b, a, o := samePadding(tc.in, tc.window, tc.stride)
		if b != tc.before || a != tc.after || o != tc.out {
			t.Errorf("samePadding(%d, %d, %d) = %d, %d, %d; want %d, %d, %d", tc.in, tc.window, tc.stride, b, a, o, tc.before, tc.after, tc.out)
		}
	}
}

// valueAndGrads returns fn(x, w), and the gradients of sum(fn(x, w)·r) with
// respect to x and w for a fixed random r, all flattened, in float64.
func valueAndGrads(t *testing.T, fn func(x, w *Node) *Node, x []float64, xDims []int, w []float64, wDims []int) (y, dx, dw []float64) {
	t.Helper()
	b := testBackend(t).b
	out, err := ExecOnceN(b, func(x, w *Node) []*Node {
		y := fn(x, w)
		r := rand.New(rand.NewPCG(9, 10))
		weights := Const(x.Graph(), tensors.FromFlatDataAndDimensions(randomValues(r, y.Shape().Size()), y.Shape().Dimensions...))
		grads := Gradient(ReduceAllSum(Mul(y, weights)), x, w)
		return []*Node{y, grads[0], grads[1]}
	}, tensors.FromFlatDataAndDimensions(x, xDims...), tensors.FromFlatDataAndDimensions(w, wDims...))
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	return tensors.MustCopyFlatData[float64](out[0]), tensors.MustCopyFlatData[float64](out[1]), tensors.MustCopyFlatData[float64](out[2])
}

// TestCustomGradientsAgree checks every hand-written gradient against GoMLX's
// autodiff of the straightforward formulation: same values, same gradients.
func TestCustomGradientsAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	type gradCase struct {
		name         string
		xDims, wDims []int
		fn           func(custom bool) func(x, w *Node) *Node
	}
	tests := []gradCase{
		// K > N: db = (vᵀ·a)ᵀ.
		{"matMul conv-like", []int{20, 9}, []int{9, 4}, func(c bool) func(x, w *Node) *Node {
			return func(x, w *Node) *Node { return matMul(x, w, tuning{customGrad: c, eyeTranspose: c}) }
		}},
		// M small: db = aᵀ·v.
		{"matMul dense-like", []int{3, 12}, []int{12, 7}, func(c bool) func(x, w *Node) *Node {
			return func(x, w *Node) *Node { return matMul(x, w, tuning{customGrad: c, eyeTranspose: c}) }
		}},
		// Fewer than narrowN columns, padded, with explicit transposes.
		{"matMul narrow, dense-like", []int{3, 12}, []int{12, 7}, func(c bool) func(x, w *Node) *Node {
			return func(x, w *Node) *Node { return matMul(x, w, tuning{customGrad: c, eyeTranspose: c, narrowPad: c}) }
		}},
		{"matMul narrow, conv-like", []int{20, 9}, []int{9, 4}, func(c bool) func(x, w *Node) *Node {
			return func(x, w *Node) *Node { return matMul(x, w, tuning{customGrad: c, eyeTranspose: c, narrowPad: c}) }
		}},
		{"conv2D 3x3/1", []int{2, 6, 5, 3}, []int{3, 3, 3, 4}, func(c bool) func(x, w *Node) *Node {
			return func(x, w *Node) *Node { return conv2D(x, w, 1, ConvIm2col, tuning{customGrad: c, spaceToDepth: c}) }
		}},
		{"matMul batched", []int{3, 10, 6}, []int{3, 6, 4}, func(c bool) func(x, w *Node) *Node {
			return func(x, w *Node) *Node { return matMul(x, w, tuning{customGrad: c, eyeTranspose: c}) }
		}},
		{"matMul batched dense-like", []int{2, 3, 8}, []int{2, 8, 5}, func(c bool) func(x, w *Node) *Node {
			return func(x, w *Node) *Node { return matMul(x, w, tuning{customGrad: c, eyeTranspose: c}) }
		}},
		{"conv2D 5x5/2", []int{1, 9, 8, 2}, []int{5, 5, 2, 3}, func(c bool) func(x, w *Node) *Node {
			return func(x, w *Node) *Node { return conv2D(x, w, 2, ConvIm2col, tuning{customGrad: c, spaceToDepth: c}) }
		}},
		{"conv2D 11x11/4 space-to-depth winograd", []int{4, 67, 67, 2}, []int{11, 11, 2, 3}, func(c bool) func(x, w *Node) *Node {
			return func(x, w *Node) *Node {
				t := tuning{customGrad: c, spaceToDepth: c, spaceToDepthWinograd: c, winograd: c, winograd4: c, tileGrad: c}
				return conv2D(x, w, 4, ConvIm2col, t)
			}
		}},
		// 30x: the normaliser far from 1; 13 channels: windows cut at both ends.
		{"localResponseNorm(x)·w", []int{2, 3, 2, 13}, []int{2, 3, 2, 13}, func(c bool) func(x, w *Node) *Node {
			return func(x, w *Node) *Node { return Mul(localResponseNorm(MulScalar(x, 30), c), w) }
		}},
		{"max(x, w)", []int{4, 5}, []int{4, 5}, func(c bool) func(x, w *Node) *Node {
			return func(x, w *Node) *Node {
				if c {
					return maxVJP(x, w)
				}
				return Max(x, w)
			}
		}},
		{"relu(x)·w", []int{4, 5}, []int{4, 5}, func(c bool) func(x, w *Node) *Node {
			return func(x, w *Node) *Node {
				if c {
					return Mul(reluVJP(x), w)
				}
				return Mul(relu(x), w)
			}
		}},
	}
	// Winograd, each tile size, with the overlap-add tile gradient and
	// without, on sides that are and are not multiples of the tile.
	for _, m := range []int{2, 4} {
		for _, tileGrad := range []bool{false, true} {
			for _, d := range []struct{ x, w []int }{
				{[]int{2, 7, 6, 3}, []int{3, 3, 3, 4}},
				{[]int{1, 8, 9, 2}, []int{3, 3, 2, 2}},
				{[]int{1, 7, 8, 2}, []int{5, 5, 2, 3}},
			} {
				tests = append(tests, gradCase{fmt.Sprintf("winograd F(%d,%d) tileGrad=%v on %v", m, d.w[0], tileGrad, d.x), d.x, d.w, func(c bool) func(x, w *Node) *Node {
					return func(x, w *Node) *Node {
						if c {
							return winogradConv(x, w, m, tuning{customGrad: true, tileGrad: tileGrad, eyeTranspose: true})
						}
						return conv2D(x, w, 1, ConvIm2col, tuning{})
					}
				}})
			}
		}
	}
	// Max pooling with maxVJP, on even and odd sides, for every stride;
	// ties (x rounded to halves) must go where Max's autodiff sends them.
	for _, stride := range []int{1, 2, 3, 4} {
		for _, xDims := range [][]int{{2, 7, 8, 3}, {1, 9, 10, 2}} {
			for _, ties := range []bool{false, true} {
				oh, ow := (xDims[1]+stride-1)/stride, (xDims[2]+stride-1)/stride
				tests = append(tests, gradCase{fmt.Sprintf("maxPool3/%d(x)·w ties=%v on %v", stride, ties, xDims), xDims, []int{xDims[0], oh, ow, xDims[3]},
					func(c bool) func(x, w *Node) *Node {
						return func(x, w *Node) *Node {
							if ties { // values to halves, gradient unchanged
								x = Add(x, StopGradient(Sub(MulScalar(Round(MulScalar(x, 2)), 0.5), x)))
							}
							return Mul(maxPool3(x, stride, PoolSlices, tuning{customGrad: c}), w)
						}
					}})
			}
		}
	}
	for _, tc := range tests {
		size := func(d []int) int {
			n := 1
			for _, v := range d {
				n *= v
			}
			return n
		}
		x, w := randomValues(r, size(tc.xDims)), randomValues(r, size(tc.wDims))
		y0, dx0, dw0 := valueAndGrads(t, tc.fn(false), x, tc.xDims, w, tc.wDims)
		y1, dx1, dw1 := valueAndGrads(t, tc.fn(true), x, tc.xDims, w, tc.wDims)
		assertClose(t, tc.name+" value", y1, y0)
		assertClose(t, tc.name+" d/dx", dx1, dx0)
		assertClose(t, tc.name+" d/dw", dw1, dw0)
	}
}

func TestCustomGradientsFiniteDifferences(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	kernel := randomValues(r, 3*3*2*4)
	checkGradient(t, "conv2D custom", func(x *Node) *Node {
		k := Const(x.Graph(), tensors.FromFlatDataAndDimensions(kernel, 3, 3, 2, 4))
		return conv2D(x, k, 1, ConvIm2col, tuning{customGrad: true})
	}, 1, 5, 6, 2)
	checkGradient(t, "reluVJP", reluVJP, 3, 7)
	for _, m := range []int{2, 4} {
		checkGradient(t, fmt.Sprintf("conv2D winograd F(%d,3)", m), func(x *Node) *Node {
			k := Const(x.Graph(), tensors.FromFlatDataAndDimensions(kernel, 3, 3, 2, 4))
			return winogradConv(x, k, m, tuning{customGrad: true, tileGrad: true, eyeTranspose: true})
		}, 1, 5, 6, 2)
	}
	for _, stride := range []int{2, 3} {
		checkGradient(t, "maxPool3 custom", func(x *Node) *Node { return maxPool3(x, stride, PoolSlices, tuning{customGrad: true}) }, 2, 7, 8, 3)
	}
}

// TestWinogradFloat32 bounds Winograd's float32 rounding, which grows with
// the tile size and the interpolation points, at the network's shapes and
// value ranges (inputs in [0, 1), as after ReLU and LRN; tflearn's kernel
// initialisation): the largest error of every form, against a float64
// convolution, within 1e-4 of the output's RMS. Measured: im2col 1.1e-6,
// F(2x2) 2e-6 (3x3) and 1e-5 (5x5), F(4x4) 1.8e-5 and 2.3e-5.
func TestWinogradFloat32(t *testing.T) {
	b := testBackend(t).b
	r := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct{ side, cin, k, cout int }{{29, 96, 5, 16}, {15, 256, 3, 16}} {
		x := make([]float64, 2*c.side*c.side*c.cin)
		for i := range x {
			x[i] = r.Float64()
		}
		kernel := make([]float64, c.k*c.k*c.cin*c.cout)
		limit := math.Sqrt(3 / float64(c.k*c.k*c.cin))
		for i := range kernel {
			kernel[i] = (2*r.Float64() - 1) * limit
		}
		run := func(dtype dtypes.DType, conv func(x, k *Node) *Node) []float64 {
			return eval(t, b, func(x *Node) *Node {
				k := Const(x.Graph(), tensors.FromFlatDataAndDimensions(kernel, c.k, c.k, c.cin, c.cout))
				return ConvertDType(conv(ConvertDType(x, dtype), ConvertDType(k, dtype)), dtypes.Float64)
			}, x, 2, c.side, c.side, c.cin)
		}
		want := run(dtypes.Float64, func(x, k *Node) *Node { return conv2D(x, k, 1, ConvIm2col, tuning{}) })
		rms := 0.0
		for _, v := range want {
			rms += v * v
		}
		rms = math.Sqrt(rms / float64(len(want)))
		for _, m := range []int{0, 2, 4} {
			got := run(dtypes.Float32, func(x, k *Node) *Node {
				if m == 0 {
					return conv2D(x, k, 1, ConvIm2col, tuning{})
				}
				return winogradConv(x, k, m, tuning{})
			})
			worst := 0.0
			for i := range got {
				worst = max(worst, math.Abs(got[i]-want[i]))
			}
			if worst > 1e-4*rms {
				t.Errorf("%dx%d on %dpx, tile %d (0: im2col): error %.3g of the output's RMS; want <= 1e-4", c.k, c.k, c.side, m, worst/rms)
			}
		}
	}
}

// TestWithVJPMisuseIsAnError checks that a vjp returning the wrong number of
// adjoints makes the Exec fail with an error instead of panicking with a
// string, which GoMLX's recovery does not catch: the compilation then stays
// pending and the deferred Finalize waits for it forever.
func TestWithVJPMisuseIsAnError(t *testing.T) {
	b := testBackend(t).b
	done := make(chan error, 1)
	go func() {
		_, err := ExecOnce(b, func(x *Node) *Node {
			y := withVJP([]*Node{x}, func(in []*Node) *Node { return Square(in[0]) },
				func(_ []*Node, _, _ *Node) []*Node { return nil })
			return Gradient(ReduceAllSum(y), x)[0]
		}, tensors.FromFlatDataAndDimensions([]float64{1, 2}, 2))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "vjp returned 0 adjoints for 1 inputs") {
			t.Errorf("Exec = %v; want an error naming the adjoint count", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Exec hung on a vjp returning no adjoints")
	}
}

// TestMaxPoolTilesAgrees checks maxPool3Tiles, which pools a convolution's
// output where it lies in Winograd's tile layout, against maxPool3 of the
// same map in pixels: values, and with customGrad the gradient (as maxVJP
// routes it), bit for bit, for both tile sizes and maps whose pooled side
// is at least, and less than, the number of groups (4 for m = 4, 2 for
// m = 2).
func TestMaxPoolTilesAgrees(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, tc := range []struct{ m, h, w int }{
		{4, 57, 57}, {4, 27, 9}, {4, 9, 6}, {4, 3, 3}, {2, 9, 15}, {2, 3, 6},
	} {
		n, c := 2, 3
		th, tw := (tc.h+tc.m-1)/tc.m, (tc.w+tc.m-1)/tc.m
		dims := []int{tc.m, tc.m, n, th, tw, c}
		x := randomValues(r, tc.m*tc.m*n*th*tw*c)
		out := func(y *Node) convOut { return convOut{y, tc.h, tc.w, tc.m} }
		if !poolReadsTiles(out(nil), 3) {
			t.Fatalf("%+v: a stride-3 pool of it pads", tc)
		}
		for _, custom := range []bool{false, true} {
			// w scales the pooled map, so that both gradients are exercised.
			pooled := []int{n, tc.h / 3, tc.w / 3, c}
			w := randomValues(r, n*tc.h/3*tc.w/3*c)
			y0, dx0, _ := valueAndGrads(t, func(y, w *Node) *Node {
				return Mul(maxPool3(cropSpatial(out(y).pixels(), tc.h, tc.w), 3, PoolSlices, tuning{customGrad: custom}), w)
			}, x, dims, w, pooled)
			y1, dx1, _ := valueAndGrads(t, func(y, w *Node) *Node { return Mul(maxPool3Tiles(out(y), 3, custom), w) }, x, dims, w, pooled)
			for name, pair := range map[string][2][]float64{"value": {y1, y0}, "gradient": {dx1, dx0}} {
				got, want := pair[0], pair[1]
				for i := range want {
					if got[i] != want[i] {
						t.Errorf("m=%d on %dx%d, customGrad %v: %s %d: tiles pool %v, pixel pool %v",
							tc.m, tc.h, tc.w, custom, name, i, got[i], want[i])
						break
					}
				}
			}
		}
	}
}

// TestMaxPoolAlignedAgrees checks maxPoolAligned, a stride-3 pool of
// F(3x3) tiles, against the pixel pool: the same values bit for bit, on
// square and oblong maps (57x57 is conv1's), and that poolAligned takes
// only those.
func TestMaxPoolAlignedAgrees(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	for _, tc := range []struct{ h, w int }{{57, 57}, {9, 6}, {3, 3}} {
		n, c := 2, 3
		th, tw := tc.h/3, tc.w/3
		out := func(y *Node) convOut { return convOut{y, tc.h, tc.w, 3} }
		if !poolAligned(out(nil), 3) {
			t.Fatalf("%+v: not aligned", tc)
		}
		x := randomValues(r, 9*n*th*tw*c)
		pool := func(y *Node) *Node {
			return maxPool3(cropSpatial(out(y).pixels(), tc.h, tc.w), 3, PoolSlices, tuning{})
		}
		want := eval(t, testBackend(t).b, pool, x, 3, 3, n, th, tw, c)
		got := eval(t, testBackend(t).b, func(y *Node) *Node { return maxPoolAligned(out(y)) }, x, 3, 3, n, th, tw, c)
		if !slices.Equal(got, want) {
			t.Errorf("%dx%d: aligned pool %v, pixel pool %v", tc.h, tc.w, got, want)
		}
	}
	for _, o := range []convOut{{m: 4, oh: 57, ow: 57}, {m: 3, oh: 57, ow: 56}, {m: 3, oh: 56, ow: 57}} {
		if poolAligned(o, 3) {
			t.Errorf("poolAligned(%+v, 3): want false", o)
		}
	}
	if poolAligned(convOut{m: 3, oh: 57, ow: 57}, 2) {
		t.Error("poolAligned at stride 2: want false")
	}
}

// TestMaxPoolTilesPaddedAgrees checks maxPool3Tiles on pools that pad (a
// stride-2 pool, or a stride-3 one on sides that are not 3k): the same
// values as the pixel pool bit for bit, padding before and after, on F(4x4)
// and F(2x2) tiles whose last rows are past the output (garbage a pool must
// not read), and the same gradient, GoMLX's and the hand-written one (at
// stride 2 a pixel can be the maximum of two windows).
func TestMaxPoolTilesPaddedAgrees(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	for _, tc := range []struct{ m, h, w, s int }{
		{4, 57, 57, 2}, {4, 29, 29, 2}, {4, 15, 15, 2}, {2, 15, 15, 2}, {2, 8, 8, 2}, {4, 10, 7, 2},
		{4, 19, 19, 3}, {4, 7, 7, 3}, {2, 7, 7, 3}, {2, 10, 8, 3}, {4, 2, 5, 3},
	} {
		n, c := 2, 3
		th, tw := (tc.h+tc.m-1)/tc.m, (tc.w+tc.m-1)/tc.m
		dims := []int{tc.m, tc.m, n, th, tw, c}
		// Few distinct values, so that windows tie and overlapping windows
		// share their maximum.
		x := randomValues(r, tc.m*tc.m*n*th*tw*c)
		for i := range x {
			x[i] = math.Round(x[i] * 2)
		}
		out := func(y *Node) convOut { return convOut{y, tc.h, tc.w, tc.m} }
		if poolReadsTiles(out(nil), tc.s) {
			t.Fatalf("%+v: a stride-%d pool of it does not pad", tc, tc.s)
		}
		_, _, oh := samePadding(tc.h, 3, tc.s)
		_, _, ow := samePadding(tc.w, 3, tc.s)
		pooled := []int{n, oh, ow, c}
		w := randomValues(r, n*oh*ow*c)
		for _, custom := range []bool{false, true} {
			y0, dx0, _ := valueAndGrads(t, func(y, w *Node) *Node {
				return Mul(maxPool3(cropSpatial(out(y).pixels(), tc.h, tc.w), tc.s, PoolSlices, tuning{customGrad: custom}), w)
			}, x, dims, w, pooled)
			y1, dx1, _ := valueAndGrads(t, func(y, w *Node) *Node { return Mul(maxPool3Tiles(out(y), tc.s, custom), w) }, x, dims, w, pooled)
			for name, pair := range map[string][2][]float64{"value": {y1, y0}, "gradient": {dx1, dx0}} {
				got, want := pair[0], pair[1]
				for i := range want {
					if got[i] != want[i] {
						t.Errorf("%+v, customGrad %v: %s %d: tiles pool %v, pixel pool %v", tc, custom, name, i, got[i], want[i])
						break
					}
				}
			}
		}
	}
}

// TestSwapLastExact checks that swapLast's product with the identity is a
// transpose, value for value, in float32, on values of every magnitude
// (normal and subnormal), for ranks 2 and 3, and that past eyeTransposeMax
// it transposes as before.
func TestSwapLastExact(t *testing.T) {
	b := testBackend(t).b
	r := rand.New(rand.NewPCG(25, 26))
	for _, dims := range [][]int{{37, 5}, {3, 50, 96}, {2, 7, 33}, {2, 4, eyeTransposeMax + 1}} {
		n := 1
		for _, d := range dims {
			n *= d
		}
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(75)-37)))
		}
		x[0] = math.SmallestNonzeroFloat32
		swap := func(eye bool) []float32 {
			out, err := ExecOnce(b, func(x *Node) *Node { return swapLast(x, eye) }, tensors.FromFlatDataAndDimensions(x, dims...))
			if err != nil {
				t.Fatalf("%v, eye %v: %v", dims, eye, err)
			}
			if want := append(dims[:len(dims)-2:len(dims)-2], dims[len(dims)-1], dims[len(dims)-2]); !slices.Equal(out.Shape().Dimensions, want) {
				t.Fatalf("%v, eye %v: shape %v, want %v", dims, eye, out.Shape().Dimensions, want)
			}
			return tensors.MustCopyFlatData[float32](out)
		}
		got, want := swap(true), swap(false)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%v: element %d is %v by the identity, %v transposed", dims, i, got[i], want[i])
			}
		}
	}
}
