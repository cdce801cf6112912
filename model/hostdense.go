package model

import (
	"fmt"
	"math"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/tensors"
	gmx "github.com/gomlx/gomlx/ml/model"
)

// The dense head on the host at inference (tuningHostDense).
//
// At batch 1 the dense layers are bound by reading their weights: fc6's
// 268 MB (model1) took the backend's matmul 20 ms of a 56 ms classify,
// about 14 GB/s, as it packs every block of the weights before using it.
// Read once, straight, 16 rows at a time in AVX-512 registers, its rows in
// four fixed parts on up to four cores (denseLanes, hostMatMul), the same
// product takes 9.7 ms; at batch 16, 28 ms against 38. So the inference graphs stop at conv5's flattened features
// and the host runs fc6, fc7 and fc8, their tanh, DropConnect's inference
// scaling and the softmax, on the weights of the graph's store.

// hostDenseOn reports whether the inference graphs of scope hand the dense
// head to the host.
func hostDenseOn(scope *gmx.Scope) bool { return tuningOf(scope, false).hostDense }

// denseHead is the class probabilities [n, classes] of the n rows of
// features x (conv5's output, flattened), by the dense layers of store.
func denseHead(store *gmx.Store, x []float32, n int) ([]float32, error) {
	root := store.RootScope()
	reg := Regularization(gmx.GetParamOr(root, ParamRegularization, string(Dropout)))
	keep := gmx.GetParamOr(root, ParamKeepProbabilities, []float64{0.5, 0.5})
	h := x
	for i, name := range []string{"fc6", "fc7", "fc8"} {
		scale := float32(1)
		if i < 2 && reg == DropConnect && keep[i] < 1 {
			scale = float32(keep[i]) // x·(keep·W) as keep·(x·W), as dropConnectOut
		}
		y, err := denseLayerOnHost(store, name, h, n, scale)
		if err != nil {
			return nil, err
		}
		if i < 2 {
			parallelRanges(len(y), func(j0, j1 int) {
				for j := j0; j < j1; j++ {
					y[j] = float32(math.Tanh(float64(y[j])))
				}
			})
		}
		h = y
	}
	classes := len(h) / n
	for r := range n {
		softmax(h[r*classes : (r+1)*classes])
	}
	return h, nil
}

// denseLayerOnHost is scale·(x·W) + b for layer name of store, x [n, K].
func denseLayerOnHost(store *gmx.Store, name string, x []float32, n int, scale float32) ([]float32, error) {
	scope := store.Scope("/" + name)
	wv, bv := scope.GetVariable("weights"), scope.GetVariable("biases")
	if wv == nil || bv == nil {
		return nil, fmt.Errorf("dense head: %s has no weights or biases", name)
	}
	wt, err := wv.Value() // shared with the backend where publish or hostUpdate moved it
	if err != nil {
		return nil, fmt.Errorf("dense head: %s: %w", name, err)
	}
	k, units := wv.Shape().Dimensions[0], wv.Shape().Dimensions[1]
	if len(x) != n*k {
		return nil, fmt.Errorf("dense head: %s takes %d inputs a row, got %d", name, k, len(x)/max(n, 1))
	}
	var y []float32
	if err := tensors.ConstFlatData(wt, func(w []float32) { y = hostMatMul(x, w, n, k, units) }); err != nil {
		return nil, err
	}
	bt, err := bv.Value()
	if err != nil {
		return nil, err
	}
	b := tensors.MustCopyFlatData[float32](bt)
	for r := range n {
		row := y[r*units : (r+1)*units]
		for c := range row {
			row[c] = scale*row[c] + b[c]
		}
	}
	return y, nil
}

// hostMatMul is x [m, k] · w [k, n], w's rows in four fixed parts (so the
// sums, and the predictions, do not depend on the cores) run on up to four
// cores, x's rows maxDenseRows at a time.
func hostMatMul(x, w []float32, m, k, n int) []float32 {
	workers := max(1, min(4, k/64))
	partial := make([][]float32, workers)
	parallelRanges(workers, func(p0, p1 int) {
		for p := p0; p < p1; p++ {
			y := make([]float32, m*n)
			k0, k1 := k*p/workers, k*(p+1)/workers
			for r := 0; r < m; r += maxDenseRows {
				rows := min(maxDenseRows, m-r)
				yr, xr := y[r*n:(r+rows)*n], x[r*k:(r+rows)*k]
				if !denseLanes(yr, xr, w, rows, k, k0, k1, n) {
					denseRows(yr, xr, w, rows, k, k0, k1, n)
				}
			}
			partial[p] = y
		}
	})
	y := partial[0]
	for _, p := range partial[1:] {
		for i, v := range p {
			y[i] += v
		}
	}
	return y
}

// denseRows is denseLanes one value at a time.
func denseRows(y, x, w []float32, m, kAll, k0, k1, n int) {
	for i := range m {
		yi := y[i*n : (i+1)*n]
		for k := k0; k < k1; k++ {
			a := x[i*kAll+k]
			for c, v := range w[k*n : (k+1)*n] {
				yi[c] += a * v
			}
		}
	}
}

// softmax turns logits into probabilities in place.
func softmax(z []float32) {
	top := float32(math.Inf(-1))
	for _, v := range z {
		top = max(top, v)
	}
	var sum float64
	for i, v := range z {
		e := math.Exp(float64(v - top))
		z[i] = float32(e)
		sum += e
	}
	for i := range z {
		z[i] = float32(float64(z[i]) / sum)
	}
}

// shareDenseWeights moves the dense layers' weights of a served store to
// buffers shared with the backend, where its inference graphs leave them
// to the host (denseHead): read from there, they are not copied out of the
// backend's buffers, which would hold them twice.
func shareDenseWeights(backend compute.Backend, store *gmx.Store) error {
	if !hostDenseOn(store.RootScope()) {
		return nil
	}
	for _, name := range []string{"fc6", "fc7", "fc8"} {
		if w := store.Scope("/" + name).GetVariable("weights"); w != nil {
			if _, err := sharedValue(backend, w); err != nil {
				return fmt.Errorf("share %s's weights: %w", name, err)
			}
		}
	}
	return nil
}
