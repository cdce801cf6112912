package model

import (
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads best with the ops unqualified
	"github.com/gomlx/gomlx/support/exceptions"
)

// withVJP returns forward(inputs), differentiated by vjp instead of by
// GoMLX's autodiff of forward's ops.
//
// GoMLX only offers IdentityWithCustomGradient, for one node. So every input
// goes through such an identity whose gradient is vjp's result for it, and
// the output goes through one that hands the arriving adjoint v to vjp. The
// output's gradient function runs first (autodiff visits nodes in reverse
// creation order), so the inputs' results are ready when their identities
// are reached. The autodiff of forward's own ops still builds its nodes, but
// nothing reads them and the backend never runs them (it executes only what
// the outputs need).
//
// vjp gets the wrapped inputs and the wrapped output (same values as the
// originals), so the backend can hand the originals' buffers over to the
// identities instead of copying them. It returns one adjoint per input; nil
// means none is needed (a zero gradient). Misuse panics with an error value,
// as GoMLX's own checks do: GoMLX turns those into the Exec's error, while
// any other panic value escapes its recovery and leaves the compilation
// pending, so the next call or Finalize on that Exec waits forever.
func withVJP(inputs []*Node, forward func(in []*Node) *Node, vjp func(in []*Node, out, v *Node) []*Node) *Node {
	var grads []*Node
	wrapped := make([]*Node, len(inputs))
	for i, x := range inputs {
		wrapped[i] = IdentityWithCustomGradient(x, func(x, _ *Node) *Node {
			if grads == nil {
				exceptions.Panicf("withVJP: an input's gradient was asked for before the output's")
			}
			if grads[i] == nil {
				return ZerosLike(x)
			}
			return grads[i]
		})
	}
	return IdentityWithCustomGradient(forward(wrapped), func(out, v *Node) *Node {
		grads = vjp(wrapped, out, v)
		if len(grads) != len(inputs) {
			exceptions.Panicf("withVJP: vjp returned %d adjoints for %d inputs", len(grads), len(inputs))
		}
		return v
	})
}

// matMul is a [M,K]·[K,N] matrix product, or a batch of them ([B,M,K]·[B,K,N]
// with the batch axis first), whose gradient, when t.customGrad is set,
// avoids the full transposes GoMLX's DotGeneral gradient makes the go
// backend execute. The backend's matmul wants the left operand's
// contracting axis last; GoMLX computes the right operand's gradient as
// DotGeneral(v [M,N], axis 0, a [M,K], axis 0), which makes the backend
// transpose v, a and the [N,K] result. Here da = v·bᵀ is a matmul in the
// backend's transposed-right layout (no copy), and db is either (vᵀ·a)ᵀ
// (transposing v [M,N] and the [N,K] result) or aᵀ·v (transposing a
// [M,K]), whichever moves fewer elements: the first for im2col
// convolutions (K > N), the second for dense layers (M is the small batch)
// and Winograd's products. The transposes are swapLast's.
//
// With t.narrowPad, a product [M,K]·[K,N] of fewer than narrowN columns
// (fc8's 17 classes) runs on b padded with zero columns to narrowN, and
// its gradients are v·bᵀ and (vᵀ·a)ᵀ with every transpose explicit (a few
// thousand values): the backend's matmul takes a path 10x slower for a
// narrow right operand (fc8 forward at batch 16: 2.4 ms, 0.22 padded) and
// 20x slower for a transposed-right product narrow on its contracting
// axis (fc8's da at batch 32: 20 ms against 1.1), BenchmarkNarrowProduct.
func matMul(a, b *Node, t tuning) *Node {
	var batch []int
	if a.Rank() == 3 {
		batch = []int{0}
	}
	r := len(batch) // index of the first non-batch axis
	n := b.Shape().Dimensions[r+1]
	narrow := t.narrowPad && r == 0 && n < narrowN
	forward := func(in []*Node) *Node {
		if narrow {
			y := DotGeneral(in[0], []int{r + 1}, batch, padAxis(in[1], r+1, 0, narrowN-n, 0), []int{r}, batch)
			return sliceAxis(y, r+1, 0, n)
		}
		return DotGeneral(in[0], []int{r + 1}, batch, in[1], []int{r}, batch)
	}
	if !t.customGrad {
		return forward([]*Node{a, b})
	}
	if t.tap != nil && r == 0 && !narrow {
		// The host takes b's gradient from a and v (denseTap), so b is not
		// wrapped in an identity: the backend would copy it (the weights,
		// which the executable does not own: 51 ms for fc6).
		return withVJP([]*Node{a}, func(in []*Node) *Node { return forward([]*Node{in[0], b}) },
			func(in []*Node, _, v *Node) []*Node {
				t.tap.a, t.tap.v = in[0], v
				return []*Node{DotGeneral(v, []int{1}, nil, b, []int{1}, nil)}
			})
	}
	swap := func(x *Node) *Node { return swapLast(x, t.eyeTranspose) }
	return withVJP([]*Node{a, b}, forward, func(in []*Node, _, v *Node) []*Node {
		a, b := in[0], in[1]
		m, k := a.Shape().Dimensions[r], a.Shape().Dimensions[r+1]
		if narrow {
			// Transposed as they are: the identity's product would be
			// the narrow transposed-right product again.
			da := DotGeneral(v, []int{1}, nil, TransposeAllAxes(b, 1, 0), []int{0}, nil)
			db := DotGeneral(TransposeAllAxes(v, 1, 0), []int{1}, nil, a, []int{0}, nil)
			return []*Node{da, TransposeAllAxes(db, 1, 0)}
		}
		da := DotGeneral(v, []int{r + 1}, batch, b, []int{r + 1}, batch)
		var db *Node
		if m*n+k*n <= m*k {
			db = swap(DotGeneral(swap(v), []int{r + 1}, batch, a, []int{r}, batch))
		} else {
			db = DotGeneral(swap(a), []int{r + 1}, batch, v, []int{r}, batch)
		}
		return []*Node{da, db}
	})
}

// narrowN is the width from which the backend's matmul takes its fast path
// for the right operand's columns (matMul pads narrower ones to it).
const narrowN = 32

// eyeTransposeMax is the widest last axis swapLast moves by a product with
// the identity. The backend transposes element by element, 4-9 ns per
// float32 on the AVX-512 machine; the product costs 2·C multiply-adds per
// element, at 70-80 GFLOP/s: [64, 2048, 96] took 36 ms against 92, [36,
// 7200, 48] 29 against 47, [36, 3200, 128] 56 against 58 and [36, 512, 256]
// 32 against 21 (10 runs each, one process).
const eyeTransposeMax = 96

// swapLast exchanges the last two axes of a rank-2 or rank-3 tensor (the
// first axis of rank 3 a batch). With eye set and the last axis C at most
// eyeTransposeMax wide, it is the product I·xᵀ of the [C, C] identity with
// x, which the backend's matmul runs in its fast layout (x contracted on
// its last axis). That is exact: each output is one value times 1 plus
// zeros (a NaN or an infinity would spread along its row, where training
// has already failed).
func swapLast(x *Node, eye bool) *Node {
	d := x.Shape().Dimensions
	rank := len(d)
	c := d[rank-1]
	if !eye || c > eyeTransposeMax {
		if rank == 2 {
			return TransposeAllAxes(x, 1, 0)
		}
		return TransposeAllAxes(x, 0, 2, 1)
	}
	id := make([][]float32, c)
	for i := range id {
		id[i] = make([]float32, c)
		id[i][i] = 1
	}
	e := ConvertDType(Const(x.Graph(), id), x.DType())
	if rank == 2 {
		return DotGeneral(e, []int{1}, nil, x, []int{1}, nil)
	}
	e = BroadcastToDims(InsertAxes(e, 0), d[0], c, c)
	return DotGeneral(e, []int{2}, []int{0}, x, []int{2}, []int{0})
}

// constMatMul is c·d for a constant c [R,S] and d [S,X]; with custom set its
// gradient for d is cᵀ·v, a matmul in the backend's layout, where GoMLX's
// would transpose v [R,X] and the [X,S] result.
func constMatMul(c, d *Node, custom bool) *Node {
	forward := func(in []*Node) *Node { return DotGeneral(c, []int{1}, nil, in[0], []int{0}, nil) }
	if !custom {
		return forward([]*Node{d})
	}
	return withVJP([]*Node{d}, forward, func(_ []*Node, _, v *Node) []*Node {
		return []*Node{DotGeneral(TransposeAllAxes(c, 1, 0), []int{1}, nil, v, []int{0}, nil)}
	})
}

// reluVJP is max(x, 0) with the gradient v·[y > 0] computed in two passes
// (a comparison and a select) instead of the seven element-wise passes of
// Max's generic gradient (two signs, adds, subtractions and products for
// both operands).
func reluVJP(x *Node) *Node {
	return withVJP([]*Node{x}, func(in []*Node) *Node { return Max(in[0], ZerosLike(in[0])) },
		func(_ []*Node, y, v *Node) []*Node {
			zero := ScalarZero(y.Graph(), y.DType())
			return []*Node{Where(GreaterThan(y, zero), v, zero)}
		})
}

// maxVJP is the element-wise Max(a, b) with its gradient (v to a where
// a >= b, else to b, as GoMLX's) computed as one comparison, one select and
// one subtraction (b's share is v less a's, exactly) instead of seven
// element-wise passes. The backend's select costs about four subtractions
// (a branch per element on data that is half one way, half the other).
func maxVJP(a, b *Node) *Node {
	return withVJP([]*Node{a, b}, func(in []*Node) *Node { return Max(in[0], in[1]) },
		func(in []*Node, _, v *Node) []*Node {
			da := Where(GreaterOrEqual(in[0], in[1]), v, ScalarZero(v.Graph(), v.DType()))
			return []*Node{da, Sub(v, da)}
		})
}
