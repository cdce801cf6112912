package model

import (
	"cmp"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	gmx "github.com/gomlx/gomlx/ml/model"
)

// The host's momentum update of the large dense layers (tuningHostUpdate).
//
// In the graph, fc6's step is five passes over its weights' size: the
// weight gradient aᵀ·v [K, N] (a product contracting over the batch, bound by
// writing its output), then v' = m·v + g and w' = w - lr·v', four
// element-wise ops on one core. For model1 (K·N = 67M) that was 350 ms of
// a 3 s step (node profiler). The host does all of it in one pass over
// each row of the weights and velocities, on every core, in SIMD lanes:
// the step graph hands out the product's input a [B, K] and adjoint v [B,
// N] instead (both small), and no longer reads or writes the velocities.
// The weights and velocities stay in buffers shared with the backend
// (sharedValue), so the graph reads the updated weights without a copy.
//
// DropConnect's layers (model5) mask their weights with halfMask's bits of
// uniform draws. A small graph draws them (maskGraph: the same draws, in
// the same order, from the same RNG state as the step graph would), the
// host masks the weights into buffers the step takes as inputs, and masks
// the gradient with the same bits: the graph's 16.7M-element mask
// expansion (three passes) and its two mask products are gone too.
//
// The math is TensorFlow's MomentumOptimizer step, as in the graph
// (momentumUpdate); only the rounding differs: the gradient sums over the
// batch in another order, and v' is one fused multiply-add.

// denseTap is a dense layer whose weights the host updates: its product's
// input a and adjoint v in the step graph (matMul records them), and, for
// DropConnect, the step's input of its weights masked on the host.
type denseTap struct {
	a, v, masked *Node
}

// hostLayer is a dense layer whose weights the host updates.
type hostLayer struct {
	name string
	// dropConnect: its weights are DropConnect's with keep 0.5, the mask
	// halfMask's bits of draws a mask graph makes (Model.hostMasks, the
	// same draws the step graph would): the host masks the weights before
	// the step and the gradient after it.
	dropConnect bool
}

// hostUpdated is the dense layers, in order, whose weights the host
// updates in the training graphs of scope for batches of batch, where
// t.hostUpdate: fc6 and fc7, unless DropConnect's with a keep other than
// 0.5 (whose mask only the graph draws); none for batches over
// maxLaneBatch, which the SIMD lanes do not take.
func hostUpdated(scope *gmx.Scope, batch int) []hostLayer {
	t := tuningOf(scope, true)
	if !t.hostUpdate || !t.customGrad || batch > maxLaneBatch {
		return nil
	}
	reg := Regularization(gmx.GetParamOr(scope, ParamRegularization, string(Dropout)))
	keep := gmx.GetParamOr(scope, ParamKeepProbabilities, []float64{0.5, 0.5})
	var layers []hostLayer
	for i, name := range []string{"fc6", "fc7"} {
		switch {
		case reg != DropConnect || keep[i] >= 1:
			layers = append(layers, hostLayer{name: name})
		case t.dropConnectBits && keep[i] == 0.5: // denseUnits: whole draws of halfMaskBits
			layers = append(layers, hostLayer{name: name, dropConnect: true})
		}
	}
	return layers
}

// newDenseTaps is a tap for each of layers, by name, the DropConnect ones
// reading their masked weights from masked, in order.
func newDenseTaps(layers []hostLayer, masked []*Node) map[string]*denseTap {
	taps := make(map[string]*denseTap, len(layers))
	for _, l := range layers {
		taps[l.name] = &denseTap{}
		if l.dropConnect {
			taps[l.name].masked, masked = masked[0], masked[1:]
		}
	}
	return taps
}

// hostMasks draws the DropConnect masks of the step about to run, for the
// layers of hostUpdated that have them, and masks their weights into
// buffers shared with the backend: the step's inputs (Model.masked). It
// returns each mask as halfMask's draws (bits 7 to 22 of each, 16 weights
// a draw), for hostUpdate.
func (m *Model) hostMasks(batch int) (inputs []*tensors.Tensor, masks [][]uint32, err error) {
	var layers []hostLayer
	for _, l := range hostUpdated(m.store.RootScope(), batch) {
		if l.dropConnect {
			layers = append(layers, l)
		}
	}
	if len(layers) == 0 {
		return nil, nil, nil
	}
	draws, err := m.maskExec.Exec()
	if err != nil {
		return nil, nil, fmt.Errorf("draw the DropConnect masks: %w", err)
	}
	if m.masked == nil {
		m.masked = map[string]*tensors.Tensor{}
	}
	for i, l := range layers {
		w := m.store.Scope("/" + l.name).GetVariable("weights")
		wt, err := sharedValue(m.backend.b, w)
		if err != nil {
			return nil, nil, err
		}
		dst := m.masked[l.name]
		if dst == nil {
			if dst, err = tensors.FromShapeForBackend(m.backend.b, 0, w.Shape()); err != nil {
				return nil, nil, err
			}
			m.masked[l.name] = dst
		}
		bits := drawBits(tensors.MustCopyFlatData[float32](draws[i]))
		draws[i].FinalizeAll()
		err = tensors.MutableFlatData(dst, func(d []float32) {
			tensors.MustConstFlatData(wt, func(src []float32) { maskWeights(d, src, bits) })
		})
		if err != nil {
			return nil, nil, err
		}
		inputs, masks = append(inputs, dst), append(masks, bits)
	}
	return inputs, masks, nil
}

// maskGraph draws, for each DropConnect layer the host updates, the
// uniforms halfMask makes its keep-0.5 mask of, in the step graph's order
// (the layers the host takes do not depend on the batch below
// maxLaneBatch, where hostMasks runs it).
func (m *Model) maskGraph(scope *gmx.Scope, g *Graph) []*Node {
	var draws []*Node
	for _, l := range hostUpdated(scope, 1) {
		if l.dropConnect {
			w := scope.Store().Scope("/" + l.name).GetVariable("weights")
			draws = append(draws, scope.In("%s", l.name).RandomUniform(g, shapes.Make(dtypes.Float32, w.Shape().Size()/halfMaskBits)))
		}
	}
	return draws
}

// drawBits is the bits of each float32 draw.
func drawBits(u []float32) []uint32 {
	bits := make([]uint32, len(u))
	for i, x := range u {
		bits[i] = math.Float32bits(x)
	}
	return bits
}

// maskWeights writes w masked by halfMask's mask of draws bits into dst:
// weight i·16+k kept where bit 7+k of draw i is set.
func maskWeights(dst, w []float32, bits []uint32) {
	parallelRanges(len(bits), func(i0, i1 int) {
		if maskLanes(dst, w, bits, i0, i1) {
			return
		}
		for i := i0; i < i1; i++ {
			for k := range halfMaskBits {
				e := i*halfMaskBits + k
				dst[e] = w[e] * float32(bits[i]>>(7+k)&1)
			}
		}
	})
}

// parallelRanges calls f on [0, n) split in one range per core.
func parallelRanges(n int, f func(i0, i1 int)) {
	workers := max(1, min(runtime.GOMAXPROCS(0), n))
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() { f(n*i/workers, n*(i+1)/workers) })
	}
	wg.Wait()
}

// hostUpdate applies the momentum step to the weights of each layer
// hostUpdated names, in order, from the step's outputs: a [B, K] and v [B,
// N] per layer; masks are the DropConnect layers' (hostMasks), in order.
//
// It runs after the step graph has updated every other variable: an error
// here leaves the state mid-step (fc6 and fc7 not updated), which the
// error returned to the trainer reports; it does not happen short of a
// broken store.
func (m *Model) hostUpdate(outs []*tensors.Tensor, masks [][]uint32, batch int, lr, momentum float64) error {
	layers := hostUpdated(m.store.RootScope(), batch)
	if len(outs) != 2*len(layers) {
		return fmt.Errorf("training step: %d outputs for the host's update of %d layers", len(outs), len(layers))
	}
	for i, l := range layers {
		w := m.store.Scope("/" + l.name).GetVariable("weights")
		if w == nil {
			return fmt.Errorf("training step: %s has no weights", l.name)
		}
		vel := m.store.Scope(velocityScope + w.Scope()).GetVariable(w.Name())
		if vel == nil {
			return fmt.Errorf("training step: %s has no velocities", l.name)
		}
		var mask []uint32
		if l.dropConnect {
			mask, masks = masks[0], masks[1:]
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
		var velErr error
		err = tensors.MutableFlatData(wt, func(wf []float32) {
			velErr = tensors.MutableFlatData(vt, func(vf []float32) {
				momentumStep(wf, vf, aT, v, mask, b, k, n, float32(lr), float32(momentum))
			})
		})
		if err = cmp.Or(err, velErr); err != nil {
			return fmt.Errorf("update %s: %w", l.name, err)
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
	// Copied straight from the backend's buffer where t is there: copying
	// it out first would hold a third copy (fc6's 268 MB) until the GC.
	var copyErr error
	err = tensors.MutableFlatData(s, func(dst []float32) {
		if !t.IsOnAnyDevice() {
			copyErr = tensors.ConstFlatData(t, func(src []float32) { copy(dst, src) })
			return
		}
		buf, err := t.Buffer(backend, 0)
		if err != nil {
			copyErr = err
			return
		}
		copyErr = buf.ToFlatData(dst)
	})
	if err = cmp.Or(err, copyErr); err != nil {
		return nil, err
	}
	if err := v.SetValue(s); err != nil {
		return nil, err
	}
	return s, nil
}

// momentumStep is TensorFlow's momentum step on weights w [k, n] and
// velocities vel [k, n] with the gradient aᵀ·v (aT [k, b], v [b, n]),
// masked by halfMask's mask of the draws mask where it is not nil: vel' =
// momentum·vel + g, w' = w - lr·vel', rows split between the cores. The
// SIMD lanes read v in chunks of 16 columns, vc [n/16, b, 16]: a chunk's
// b vectors contiguous, where v's rows n apart would all fall in the same
// few cache sets.
func momentumStep(w, vel, aT, v []float32, mask []uint32, b, k, n int, lr, momentum float32) {
	vc := v
	if n%16 == 0 {
		vc = inChunks(v, b, n)
	}
	parallelRanges(k, func(k0, k1 int) {
		if n%16 != 0 || !momentumLanes(w, vel, aT, vc, mask, k0, k1, b, n, lr, momentum) {
			momentumRows(w, vel, aT, v, mask, k0, k1, b, n, lr, momentum)
		}
	})
}

// momentumRows is momentumStep on rows k0 to k1, one value at a time.
func momentumRows(w, vel, aT, v []float32, mask []uint32, k0, k1, b, n int, lr, momentum float32) {
	for r := k0; r < k1; r++ {
		a := aT[r*b : (r+1)*b]
		wr, vr := w[r*n:(r+1)*n], vel[r*n:(r+1)*n]
		for c := range n {
			var g float32
			for j, x := range a {
				g += x * v[j*n+c]
			}
			if e := r*n + c; mask != nil && mask[e/halfMaskBits]>>(7+e%halfMaskBits)&1 == 0 {
				g = 0
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
