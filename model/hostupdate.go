package model

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	gmx "github.com/gomlx/gomlx/ml/model"
)

// The host's momentum update of the large dense layers (tuningHostUpdate).
//
// In the graph, fc6's step is five passes over its weights' size: the
// weight gradient aᵀ·v [K, N] (a product with K = the batch, bound by
// writing its output), then v' = m·v + g and w' = w - lr·v', four
// element-wise ops on one core. For model1 (K·N = 67M) that was 350 ms of
// a 3 s step (node profiler). The host does all of it in one pass over
// each row of the weights and velocities, on every core, in SIMD lanes:
// the step graph hands out the product's input a [B, K] and adjoint v [B,
// N] instead (both small), and no longer reads or writes the velocities.
// The weights and velocities stay in buffers shared with the backend
// (sharedValue), so the graph reads the updated weights without a copy.
//
// The math is TensorFlow's MomentumOptimizer step, as in the graph
// (momentumUpdate); only the rounding differs: the gradient sums over the
// batch in another order, and v' is one fused multiply-add.

// hostUpdateMinUnits is the narrowest dense layer whose weights the host
// updates: fc6 and fc7 (4096), not fc8 (the classes).
const hostUpdateMinUnits = 1024

// denseTap is a dense layer whose weights the host updates: its product's
// input a and adjoint v in the step graph (matMul records them).
type denseTap struct {
	a, v *Node
}

// hostUpdated names the dense layers, in order, whose weights the host
// updates in the training graphs of scope: fc6 and fc7 where t.hostUpdate
// and they are not DropConnect's (whose masked gradient only the graph has).
func hostUpdated(scope *gmx.Scope) []string {
	t := tuningOf(scope, true)
	reg := Regularization(gmx.GetParamOr(scope, ParamRegularization, string(Dropout)))
	if !t.hostUpdate || !t.customGrad || reg == DropConnect {
		return nil
	}
	return []string{"fc6", "fc7"}
}

// newDenseTaps is a tap for each layer hostUpdated names, by name.
func newDenseTaps(scope *gmx.Scope) map[string]*denseTap {
	names := hostUpdated(scope)
	if len(names) == 0 {
		return nil
	}
	taps := make(map[string]*denseTap, len(names))
	for _, name := range names {
		taps[name] = &denseTap{}
	}
	return taps
}

// hostUpdate applies the momentum step to the weights of each layer
// hostUpdated names, in order, from the step's outputs: a [B, K] and v [B,
// N] per layer.
func (m *Model) hostUpdate(outs []*tensors.Tensor, lr, momentum float64) error {
	root := m.store.RootScope()
	names := hostUpdated(root)
	if len(outs) != 2*len(names) {
		return fmt.Errorf("training step: %d outputs for the host's update of %d layers", len(outs), len(names))
	}
	for i, name := range names {
		w := m.store.Scope("/" + name).GetVariable("weights")
		vel := m.store.Scope(velocityScope + w.Scope()).GetVariable(w.Name())
		if w == nil || vel == nil {
			return fmt.Errorf("training step: %s has no weights or velocities", name)
		}
		wt, err := sharedValue(m.backend.b, w)
		if err != nil {
			return err
		}
		vt, err := sharedValue(m.backend.b, vel)
		if err != nil {
			return err
		}
		a, v := tensors.MustCopyFlatData[float32](outs[2*i]), tensors.MustCopyFlatData[float32](outs[2*i+1])
		b := outs[2*i].Shape().Dimensions[0]
		k, n := w.Shape().Dimensions[0], w.Shape().Dimensions[1]
		aT := make([]float32, len(a))
		for r := range b {
			for c := range k {
				aT[c*b+r] = a[r*k+c]
			}
		}
		err = tensors.MutableFlatData(wt, func(wf []float32) {
			err := tensors.MutableFlatData(vt, func(vf []float32) {
				momentumStep(wf, vf, aT, v, b, k, n, float32(lr), float32(momentum))
			})
			if err != nil {
				panic(err)
			}
		})
		if err != nil {
			return fmt.Errorf("update %s: %w", name, err)
		}
	}
	return nil
}

// sharedValue is v's value in a buffer the backend shares with the host,
// moved there (once) where it is not: the host then updates it in place,
// and the graphs read it without a copy.
func sharedValue(backend compute.Backend, v *gmx.Variable) (*tensors.Tensor, error) {
	t, err := v.Value()
	if err != nil {
		return nil, err
	}
	if t.IsShared() || !backend.HasSharedBuffers() {
		return t, nil
	}
	s, err := tensors.FromShapeForBackend(backend, 0, t.Shape())
	if err != nil {
		return nil, err
	}
	src := tensors.MustCopyFlatData[float32](t)
	if err := tensors.MutableFlatData(s, func(dst []float32) { copy(dst, src) }); err != nil {
		return nil, err
	}
	if err := v.SetValue(s); err != nil {
		return nil, err
	}
	return s, nil
}

// momentumStep is TensorFlow's momentum step on weights w [k, n] and
// velocities vel [k, n] with the gradient aᵀ·v (aT [k, b], v [b, n]): vel'
// = momentum·vel + g, w' = w - lr·vel', rows split between the cores. The
// SIMD lanes read v in chunks of 16 columns, vc [n/16, b, 16]: a chunk's
// b vectors contiguous, where v's rows n apart would all fall in the same
// few cache sets.
func momentumStep(w, vel, aT, v []float32, b, k, n int, lr, momentum float32) {
	vc := v
	if n%16 == 0 {
		vc = inChunks(v, b, n)
	}
	workers := min(runtime.GOMAXPROCS(0), k)
	var wg sync.WaitGroup
	for i := range workers {
		k0, k1 := k*i/workers, k*(i+1)/workers
		wg.Go(func() {
			if n%16 != 0 || !momentumLanes(w, vel, aT, vc, k0, k1, b, n, lr, momentum) {
				momentumRows(w, vel, aT, v, k0, k1, b, n, lr, momentum)
			}
		})
	}
	wg.Wait()
}

// momentumRows is momentumStep on rows k0 to k1, one value at a time.
func momentumRows(w, vel, aT, v []float32, k0, k1, b, n int, lr, momentum float32) {
	for r := k0; r < k1; r++ {
		a := aT[r*b : (r+1)*b]
		wr, vr := w[r*n:(r+1)*n], vel[r*n:(r+1)*n]
		for c := range n {
			var g float32
			for j, x := range a {
				g += x * v[j*n+c]
			}
			vr[c] = momentum*vr[c] + g
			wr[c] -= lr * vr[c]
		}
	}
}

// inChunks is v [b, n] (n a multiple of 16) as [n/16, b, 16]: each chunk
// of 16 columns, its b rows contiguous.
func inChunks(v []float32, b, n int) []float32 {
	vc := make([]float32, len(v))
	for j := range b {
		for c := 0; c < n; c += 16 {
			copy(vc[c*b+j*16:c*b+(j+1)*16], v[j*n+c:j*n+c+16])
		}
	}
	return vc
}
