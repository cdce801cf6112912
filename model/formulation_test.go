package model

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"
	gmx "github.com/gomlx/gomlx/ml/model"
)

// TestTunedNetworkAgrees checks that the go backend's faster formulations
// (every paramTuning bit) predict what the straightforward one does, within
// fp32 tolerance, for the original network and for DropConnect's, at full
// size and a batch of 4, so that space-to-depth and every Winograd form are
// in the graphs: model1 runs F(4x4) for its 5x5 and 3x3 convolutions, model5
// F(4x4) for its 5x5 and F(2x2) for its 3x3 ones.
func TestTunedNetworkAgrees(t *testing.T) {
	if testing.Short() {
		t.Skip("builds full-size networks: skipped under -short")
	}
	b := testBackend(t)
	const n = 4
	r := rand.New(rand.NewPCG(1, 2))
	images := make([]float32, n*227*227*3)
	for i := range images {
		images[i] = r.Float32()
	}
	for _, name := range []string{"model1", "model5"} {
		plain := newTunedOpts(t, b, name, 0, Options{})
		tuned := newTunedOpts(t, b, name, tuningAll, Options{})
		want, got := predictBoth(t, plain, tuned, images, n)
		for i := range want {
			for c := range want[i] {
				if d := math.Abs(float64(got[i][c] - want[i][c])); d > 1e-4 {
					t.Fatalf("%s: image %d class %d: tuned %v, straightforward %v (|d| %.2g > 1e-4)", name, i, c, got[i][c], want[i][c], d)
				}
			}
		}
	}
}

// samePredictions fails unless other predicts bit for bit what ref does
// for the n images; what names the case and the formulation.
func samePredictions(t *testing.T, what string, ref, other *Model, images []float32, n int) {
	t.Helper()
	want, got := predictBoth(t, ref, other, images, n)
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("%s, batch %d, image %d: predicts %v; the reference %v", what, n, i, got[i], want[i])
		}
	}
}

// closePredictions fails unless other predicts what ref does for the n
// images within 1e-5 (float32 rounding of another summation order); what
// names the case.
func closePredictions(t *testing.T, what string, ref, other *Model, images []float32, n int) {
	t.Helper()
	want, got := predictBoth(t, ref, other, images, n)
	for i := range want {
		for c := range want[i] {
			if d := math.Abs(float64(got[i][c] - want[i][c])); d > 1e-5 {
				t.Fatalf("%s: image %d class %d: %v, the reference %v", what, i, c, got[i][c], want[i][c])
			}
		}
	}
}

// predictBoth is the class probabilities a and b predict for the same n
// images.
func predictBoth(t *testing.T, a, b *Model, images []float32, n int) (pa, pb [][]float32) {
	t.Helper()
	var err error
	if pa, err = a.Predict(context.Background(), images, n); err != nil {
		t.Fatalf("batch of %d, first model: Predict = %v", n, err)
	}
	if pb, err = b.Predict(context.Background(), images, n); err != nil {
		t.Fatalf("batch of %d, second model: Predict = %v", n, err)
	}
	return pa, pb
}

// TestPoolFirstAgrees checks that pooling before a convolution's bias and
// ReLU leaves training unchanged: the first step's loss is bit-identical (the
// forward values are) and later ones agree to float32 rounding (the bias
// gradient sums in another order), for pool strides 2 (model1) and 3
// (model2).
func TestPoolFirstAgrees(t *testing.T) {
	b := testBackend(t)
	o := Options{Classes: []string{"a", "b", "c"}, ImageSize: 67}
	images := randomImagesOfSide(4, 67)
	for _, name := range []string{"model1", "model2"} {
		var losses [2][]float64
		for i, bits := range []int{tuningAll &^ tuningPoolFirst, tuningAll} {
			m := newTunedOpts(t, b, name, bits, o)
			for range 3 {
				res, err := m.TrainStep(context.Background(), trainBatch(images, 4, len(o.Classes)), 0.01, 0.9)
				if err != nil {
					t.Fatal(err)
				}
				losses[i] = append(losses[i], res.Loss)
			}
		}
		if losses[0][0] != losses[1][0] {
			t.Errorf("%s: first loss %v pooling first, %v after the ReLU: want identical", name, losses[1][0], losses[0][0])
		}
		for s := range losses[0] {
			if d := math.Abs(losses[0][s] - losses[1][s]); d > 1e-5*math.Abs(losses[0][s]) {
				t.Errorf("%s: step %d loss %v pooling first, %v after the ReLU", name, s+1, losses[1][s], losses[0][s])
			}
		}
	}
}

// TestTunedTrainingAgrees checks every gradient of the tuned formulation at
// once: one training step of the full network (every paramTuning bit but
// the DropConnect mask's)
// moves every trainable variable as the straightforward formulation's step
// does, within float32 rounding, for pool strides 2,2,2 with dropout and
// 3,3,2 with DropConnect. A gradient lost on the way down (zero below some
// layer) or mis-scaled shows here even where the loss barely moves.
func TestTunedTrainingAgrees(t *testing.T) {
	b := testBackend(t)
	// 107 pixels: conv1's map is 27x27, Winograd's tiles cover 28x28;
	// model5's stride-3 pools on 27 and 9 need no padding and read the tiles
	// (maxPool3Tiles), model1's stride-2 ones pad a cut copy in pixels.
	o := Options{Classes: []string{"a", "b", "c"}, ImageSize: 107}
	images := randomImagesOfSide(4, 107)
	for _, name := range []string{"model1", "model5"} {
		var moves [2]map[string][]float32
		// halfMask draws another (equally distributed) DropConnect mask than
		// RandomBernoulli; TestHalfMask checks it.
		for i, bits := range []int{0, tuningAll &^ tuningDropConnectBits} {
			moves[i] = stepMoves(t, newTunedOpts(t, b, name, bits, o), images, 4)
		}
		compareMoves(t, name+", tuned", moves[0], moves[1])
	}
}

// stepMoves is how far one training step on the n images moves each of
// m's trainable variables, by path.
func stepMoves(t *testing.T, m *Model, images []float32, n int) map[string][]float32 {
	t.Helper()
	return movesAfterSteps(t, m, images, n, 1)
}

// movesAfterSteps is how far steps training steps on the n images
// (trainSteps) move each of m's trainable variables.
func movesAfterSteps(t *testing.T, m *Model, images []float32, n, steps int) map[string][]float32 {
	t.Helper()
	before := trainableValues(t, m)
	trainSteps(t, m, images, n, steps)
	moves := trainableValues(t, m)
	for path, after := range moves {
		for j := range after {
			after[j] -= before[path][j]
		}
	}
	return moves
}

// compareMoves fails unless every variable moved as in want (the reference
// formulation's step), within 2e-3 of its largest move, and moved at all.
func compareMoves(t *testing.T, what string, want, got map[string][]float32) {
	t.Helper()
	for path, w := range want {
		g, scale := got[path], 0.0
		for _, v := range w {
			scale = max(scale, math.Abs(float64(v)))
		}
		if scale == 0 {
			t.Errorf("%s %s: the reference step does not move it", what, path)
			continue
		}
		for j := range w {
			if d := math.Abs(float64(g[j] - w[j])); d > 2e-3*scale {
				t.Errorf("%s %s[%d]: moved %g, %g in the reference (largest move %g)", what, path, j, g[j], w[j], scale)
				break
			}
		}
	}
}

// TestTileChainAgrees checks that conv3 and conv4 handing the next
// convolution their activations in the tile layout (tuningTileChain)
// predicts bit for bit what gathering the tiles from pixels does, the
// maps' sides multiples of the tile side or not (15x15 for F(4x4) and
// F(2x2) at full size, model4's 10x10, model2's 7x7), and that a training
// step moves every variable as it did, within float32 rounding (the
// gradients add in another order).
func TestTileChainAgrees(t *testing.T) {
	b := testBackend(t)
	for _, tc := range []struct {
		variant string
		batches []int
	}{
		{"model1", []int{1, 16}},
		{"model4", []int{4}},
		{"model2", []int{1, 16}},
	} {
		pixels := newTuned(t, b, tc.variant, tuningAll&^tuningTileChain)
		chained := newTuned(t, b, tc.variant, tuningAll)
		for _, n := range tc.batches {
			images := randomImagesOfSide(n, ImageSize)
			samePredictions(t, tc.variant+", chained tiles", pixels, chained, images, n)
		}
	}
	// 67 pixels: conv3-5's maps are 5x5, F(2x2) tiles cover 6x6.
	o := Options{Classes: []string{"a", "b", "c"}, ImageSize: 67}
	images := randomImagesOfSide(4, 67)
	for _, name := range []string{"model1", "model5"} {
		want := stepMoves(t, newTunedOpts(t, b, name, tuningAll&^tuningTileChain&^tuningDropConnectBits, o), images, 4)
		got := stepMoves(t, newTunedOpts(t, b, name, tuningAll&^tuningDropConnectBits, o), images, 4)
		compareMoves(t, name+", chained tiles", want, got)
	}
}

// trainableValues copies the values of m's trainable variables (not the
// optimizer's velocities), by path.
func trainableValues(t *testing.T, m *Model) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for v := range m.store.IterVariables() {
		if !v.Trainable || strings.HasPrefix(v.Path(), velocityScope+"/") {
			continue
		}
		value, err := v.Value()
		if err != nil {
			t.Fatal(err)
		}
		out[v.Path()] = tensors.MustCopyFlatData[float32](value)
	}
	return out
}

// TestHalfMask checks DropConnect's keep-0.5 mask made from mantissa bits:
// only 0s and 1s; each of the 16 bit positions kept at rate 1/2; neighbours
// within one draw (bits k, k+1) and across draws (bit k of draws i, i+1)
// agree half of the time, all within five standard deviations; another
// RNG state gives another mask.
func TestHalfMask(t *testing.T) {
	b := testBackend(t).b
	const rows, cols = 256, 4096
	n := rows * cols
	mask := func(seed int64) []float32 {
		state, err := RNGStateFromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		out, err := ExecOnce(b, func(state *Node) *Node {
			_, u := RandomUniform(state, shapes.Make(dtypes.Float32, n/halfMaskBits))
			return halfMask(u, shapes.Make(dtypes.Float32, rows, cols))
		}, state)
		if err != nil {
			t.Fatal(err)
		}
		return tensors.MustCopyFlatData[float32](out)
	}
	m := mask(7)
	within := func(name string, hits, total int) {
		t.Helper()
		rate, sigma := float64(hits)/float64(total), 0.5/math.Sqrt(float64(total))
		if math.Abs(rate-0.5) > 5*sigma {
			t.Errorf("%s: rate %.5f over %d; want 0.5 ± %.5f", name, rate, total, 5*sigma)
		}
	}
	var perBit [halfMaskBits]int
	sameNext, sameDraw := 0, 0
	for i, v := range m {
		if v != 0 && v != 1 {
			t.Fatalf("mask[%d] = %v; want 0 or 1", i, v)
		}
		perBit[i%halfMaskBits] += int(v)
		if i%halfMaskBits != halfMaskBits-1 && m[i+1] == v {
			sameDraw++
		}
		if i+halfMaskBits < n && m[i+halfMaskBits] == v {
			sameNext++
		}
	}
	for k, hits := range perBit {
		within(fmt.Sprintf("bit %d kept", 7+k), hits, n/halfMaskBits)
	}
	within("bits k, k+1 of one draw equal", sameDraw, n/halfMaskBits*(halfMaskBits-1))
	within("bit k of draws i, i+1 equal", sameNext, n-halfMaskBits)
	if other := mask(8); slices.Equal(m, other) {
		t.Error("two RNG states gave the same mask")
	}
}

// TestServedKernelsAgree checks that inference on Winograd kernels
// transformed once at publish (tuningServedKernels) predicts exactly what
// transforming them in the graph does, at batch 1 (every kernel read from
// the served store) and batch 16 (model2's conv3-5 then take F(4x4),
// stored as well), and that only the served store holds them, outside the
// parameter count.
func TestServedKernelsAgree(t *testing.T) {
	if testing.Short() {
		t.Skip("builds full-size networks: skipped under -short")
	}
	b := testBackend(t)
	inGraph := newTuned(t, b, "model2", tuningAll&^tuningServedKernels)
	stored := newTuned(t, b, "model2", tuningAll)
	var names []string
	for v := range stored.Served().store.IterVariables() {
		if strings.HasPrefix(v.Name(), "winograd") {
			names = append(names, v.Path())
		}
	}
	slices.Sort(names)
	// conv1 takes F(3x3), aligned with its stride-3 pool (tuning.conv1);
	// conv3-5 take F(2x2) at batch 1 and F(4x4) at batch 16.
	want := []string{"/conv1/winograd_kernel_m3", "/conv2/winograd_kernel_m4",
		"/conv3/winograd_kernel_m2", "/conv3/winograd_kernel_m4", "/conv4/winograd_kernel_m2", "/conv4/winograd_kernel_m4",
		"/conv5/winograd_kernel_m2", "/conv5/winograd_kernel_m4"}
	if !slices.Equal(names, want) {
		t.Errorf("served store's transformed kernels = %q; want %q", names, want)
	}
	for v := range stored.store.IterVariables() {
		if strings.HasPrefix(v.Name(), "winograd") {
			t.Errorf("training store holds %s: it would go stale at the next step", v.Path())
		}
	}
	if got := stored.NumParameters(); got != 30039441 {
		t.Errorf("NumParameters = %d; want 30039441 (the transformed kernels are not parameters)", got)
	}
	for _, n := range []int{1, 16} {
		images := randomImages(n)
		samePredictions(t, "stored kernels", inGraph, stored, images, n)
	}
}

// TestUpdateIdentityAgrees checks that the momentum update reading the
// dense weights through the identities of their hand-written gradients
// (tuningUpdateIdentity) finds those identities, fc6-fc8's, and leaves
// training bit for bit as it was: the same state after three steps.
func TestUpdateIdentityAgrees(t *testing.T) {
	b := testBackend(t)
	o := Options{Classes: []string{"a", "b", "c"}, ImageSize: 67}
	images := randomImagesOfSide(4, 67)
	var states [2][]byte
	for i, bits := range []int{tuningAll &^ tuningUpdateIdentity, tuningAll} {
		states[i] = stateAfterSteps(t, newTunedOpts(t, b, "model1", bits, o), images, 4, 3)
	}
	if !bytes.Equal(states[0], states[1]) {
		t.Errorf("state after 3 steps differs with the update reading through the identities")
	}

	m := newTunedOpts(t, b, "model1", tuningAll, o)
	var got []string
	exec, err := gmx.NewExec(b.b, m.store, func(scope *gmx.Scope, x *Node) *Node {
		g := x.Graph()
		logits := AlexNet(scope, x, true)
		vars, params := trainableNodes(scope, g)
		Gradient(ReduceAllSum(logits), params...)
		wrapped := wrappingIdentities(g, params)
		for i, p := range params {
			if _, ok := wrapped[p]; ok {
				got = append(got, vars[i].Path())
			}
		}
		return ReduceAllSum(logits)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.Compile(m.inputShape(2)); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"/fc6/weights", "/fc7/weights", "/fc8/weights"}; !slices.Equal(got, want) {
		t.Errorf("weights read through their gradient's identity: %q; want %q", got, want)
	}
}

// hostTileCases are the variants, options and batches the host's tiles
// are checked on: full size (batch 1 and 16), and small images where
// batch 1 takes F(2x2) and batch 4 F(4x4).
var hostTileCases = []struct {
	variant string
	o       Options
	batches []int
}{
	{"model2", Options{}, []int{1, 16}},
	{"model1", Options{Classes: []string{"a", "b", "c"}, ImageSize: 67}, []int{1, 4}},
}

// TestHostTilesAgree checks that conv1's Winograd tiles gathered on the
// host (tuningHostTiles, without tuningHostTransform, which
// TestHostTransformAgrees checks) leave inference and training bit for bit as the
// in-graph gather has them: the same predictions at full size (batch 1 and
// 16) and on small images where batch 1 takes F(2x2) and batch 4 F(4x4),
// and the same state after two training steps.
func TestHostTilesAgree(t *testing.T) {
	b := testBackend(t)
	for _, tc := range hostTileCases {
		size := cmp.Or(tc.o.ImageSize, ImageSize)
		inGraph := newTunedOpts(t, b, tc.variant, tuningAll&^tuningHostTiles, tc.o)
		host := newTunedOpts(t, b, tc.variant, tuningAll&^tuningHostTransform, tc.o)
		for _, n := range tc.batches {
			if tuningOf(host.store.RootScope(), false).conv1(host.store.RootScope()).conv1Tiles(n, size) == nil {
				t.Fatalf("%s, batch %d: conv1 takes no host tiles", tc.variant, n)
			}
			images := randomImagesOfSide(n, size)
			samePredictions(t, tc.variant+", host tiles", inGraph, host, images, n)
		}
		if tc.o.ImageSize == 0 {
			continue
		}
		images := randomImagesOfSide(4, size)
		if !bytes.Equal(stateAfterSteps(t, inGraph, images, 4, 2), stateAfterSteps(t, host, images, 4, 2)) {
			t.Errorf("%s: state after 2 steps differs with the host's tiles", tc.variant)
		}
	}
}

// trainSteps takes steps training steps on the n images (labelled in turn
// over m's classes), lr 0.01, momentum 0.9.
func trainSteps(t *testing.T, m *Model, images []float32, n, steps int) {
	t.Helper()
	for range steps {
		if _, err := m.TrainStep(context.Background(), trainBatch(images, n, len(m.opts.Classes)), 0.01, 0.9); err != nil {
			t.Fatal(err)
		}
	}
}

// stateAfterSteps is m's serialised state after steps training steps on the
// n images (labelled in turn over m's classes), lr 0.01, momentum 0.9.
func stateAfterSteps(t *testing.T, m *Model, images []float32, n, steps int) []byte {
	t.Helper()
	trainSteps(t, m, images, n, steps)
	var buf bytes.Buffer
	if err := m.WriteState(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestHostTransformAgrees checks the host's Winograd transform of conv1's
// tiles (tuningHostTransform): one tile, every channel, against (Bᵀ⊗Bᵀ)·d
// in float64 for F(2x2), F(3x3) and F(4x4); and predictions against the graph's
// transform at full size (batch 1 and 16) and on small images where batch
// 1 takes F(2x2), within float32 rounding: the host sums in another order.
// TestTunedNetworkAgrees and TestTunedTrainingAgrees cover it against the
// straightforward formulation, training included.
func TestHostTransformAgrees(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		m, n, size int
		f4         bool // winograd4
		alignTo    int
	}{
		{2, 1, 67, false, 0},
		{4, 4, 67, true, 0},
		{3, 1, 71, true, 3}, // conv1's map 18x18
	} {
		tu := tuning{spaceToDepth: true, spaceToDepthWinograd: true, winograd: true, winograd4: c.f4,
			hostTiles: true, hostTransform: true, alignTo: c.alignTo}
		g := tu.conv1Tiles(c.n, c.size)
		if g == nil || g.bt == nil || g.m != c.m {
			t.Fatalf("%+v: conv1 takes no host-transformed F(%dx%d) tiles: %+v", c, c.m, c.m, g)
		}
		a := g.side * g.side
		d := make([]float32, a*g.cin)
		for i := range d {
			d[i] = r.Float32()*2 - 1
		}
		want := make([]float64, len(d))
		bt := make([][]float64, g.side)
		for i := range bt {
			bt[i] = make([]float64, g.side)
			for j := range bt[i] {
				bt[i][j] = float64(g.bt[i*g.side+j])
			}
		}
		for i, row := range kron(bt) {
			for k, b := range row {
				for c := range g.cin {
					want[i*g.cin+c] += b * float64(d[k*g.cin+c])
				}
			}
		}
		check := func(how string, got []float32) {
			t.Helper()
			for i := range want {
				if diff := math.Abs(float64(got[i]) - want[i]); diff > 1e-5*max(1, math.Abs(want[i])) {
					t.Fatalf("F(%dx%d), %s, tile value %d: %v, want %v", g.m, g.m, how, i, got[i], want[i])
				}
			}
		}
		check("one value at a time", g.transform(make([]float32, len(d)), slices.Clone(d)))
		// Written into a buffer of 3 tiles, as tile 1 of them.
		out := make([]float32, 3*len(d))
		if transformLanes(out, g.cin, 3*g.cin, slices.Clone(d), make([]float32, len(d)), g.lanes, g.side, g.cin) {
			got := make([]float32, 0, len(d))
			for k := range a {
				got = append(got, out[(3*k+1)*g.cin:(3*k+2)*g.cin]...)
			}
			check("in SIMD lanes", got)
		} else {
			t.Logf("F(%dx%d): no SIMD lanes on this build, CPU or tile side", g.m, g.m)
		}
	}
	b := testBackend(t)
	for _, tc := range hostTileCases {
		size := cmp.Or(tc.o.ImageSize, ImageSize)
		inGraph := newTunedOpts(t, b, tc.variant, tuningAll&^tuningHostTransform, tc.o)
		host := newTunedOpts(t, b, tc.variant, tuningAll, tc.o)
		for _, n := range tc.batches {
			if g := tuningOf(host.store.RootScope(), false).conv1(host.store.RootScope()).conv1Tiles(n, size); g == nil || g.bt == nil {
				t.Fatalf("%s, batch %d: conv1 takes no host-transformed tiles", tc.variant, n)
			}
			images := randomImagesOfSide(n, size)
			closePredictions(t, fmt.Sprintf("%s, batch %d, host transform", tc.variant, n), inGraph, host, images, n)
		}
	}
}

// TestAlignedPoolAgrees checks that inference on F(3x3) tiles for conv1,
// pooled a tile at a time (tuningAlignedPool), predicts what F(4x4) does,
// within float32 rounding, at full size, batch 1 and 16, for a variant
// whose first pool has stride 3 (model2) and one whose others do not
// (model4); that training graphs keep F(4x4); and that stride-2 pools
// (model1) keep it too.
func TestAlignedPoolAgrees(t *testing.T) {
	b := testBackend(t)
	for _, tc := range []struct {
		variant string
		m       int // conv1's inference tiles
	}{{"model2", 3}, {"model4", 3}, {"model1", 4}} {
		aligned := newTuned(t, b, tc.variant, tuningAll)
		root := aligned.store.RootScope()
		for training, want := range map[bool]int{false: tc.m, true: 4} {
			if g := tuningOf(root, training).conv1(root).conv1Tiles(16, ImageSize); g == nil || g.m != want {
				t.Fatalf("%s, training %v: conv1's tiles %+v; want F(%dx%d)", tc.variant, training, g, want, want)
			}
		}
		if tc.m != 3 {
			continue
		}
		f4 := newTuned(t, b, tc.variant, tuningAll&^tuningAlignedPool)
		for _, n := range []int{1, 16} {
			images := randomImagesOfSide(n, ImageSize)
			closePredictions(t, fmt.Sprintf("%s, batch %d, F(3x3) tiles", tc.variant, n), f4, aligned, images, n)
		}
	}
}

// TestMomentumStep checks the host's momentum step (tuningHostUpdate) on
// random values against TensorFlow's, in float64: one value at a time and
// in SIMD lanes, for batches of 1, 4 and 32, rows split between the cores
// unevenly, without and with a DropConnect mask (halfMask's bits of
// draws); and the weights masked by the same draws (maskWeights).
func TestMomentumStep(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const k, n, lr, mom = 7, 48, 0.01, 0.9
	random := func(size int) []float32 {
		x := make([]float32, size)
		for i := range x {
			x[i] = r.Float32()*2 - 1
		}
		return x
	}
	draws := make([]uint32, k*n/halfMaskBits)
	for i := range draws {
		draws[i] = r.Uint32()
	}
	kept := func(e int) bool { return draws[e/halfMaskBits]>>(7+e%halfMaskBits)&1 == 1 }
	for _, b := range []int{1, 4, 32} {
		for _, mask := range [][]uint32{nil, draws} {
			w, vel, aT, v := random(k*n), random(k*n), random(k*b), random(b*n)
			wantW, wantV := make([]float64, k*n), make([]float64, k*n)
			for row := range k {
				for c := range n {
					g := 0.0
					for j := range b {
						g += float64(aT[row*b+j]) * float64(v[j*n+c])
					}
					i := row*n + c
					if mask != nil && !kept(i) {
						g = 0
					}
					wantV[i] = mom*float64(vel[i]) + g
					wantW[i] = float64(w[i]) - lr*wantV[i]
				}
			}
			check := func(how string, gotW, gotV []float32) {
				t.Helper()
				for i := range wantW {
					if math.Abs(float64(gotV[i])-wantV[i]) > 1e-5*max(1, math.Abs(wantV[i])) ||
						math.Abs(float64(gotW[i])-wantW[i]) > 1e-6 {
						t.Fatalf("batch %d, masked %v, %s, value %d: w %v v %v; want %v %v",
							b, mask != nil, how, i, gotW[i], gotV[i], wantW[i], wantV[i])
					}
				}
			}
			w1, v1 := slices.Clone(w), slices.Clone(vel)
			momentumRows(w1, v1, aT, v, mask, 0, k, b, n, lr, mom)
			check("one value at a time", w1, v1)
			w2, v2 := slices.Clone(w), slices.Clone(vel)
			vc := inChunks(v, b, n)
			if momentumLanes(w2, v2, aT, vc, mask, 0, 3, b, n, lr, mom) && momentumLanes(w2, v2, aT, vc, mask, 3, k, b, n, lr, mom) {
				check("in SIMD lanes", w2, v2)
			} else {
				t.Logf("batch %d: no SIMD lanes on this build or CPU", b)
			}
			w3, v3 := slices.Clone(w), slices.Clone(vel)
			momentumStep(w3, v3, aT, v, mask, b, k, n, lr, mom)
			check("on every core", w3, v3)
		}
	}
	w := random(k * n)
	masked := make([]float32, len(w))
	maskWeights(masked, w, draws)
	for i := range w {
		if want := map[bool]float32{true: w[i], false: 0}[kept(i)]; masked[i] != want {
			t.Fatalf("masked weight %d = %v; want %v", i, masked[i], want)
		}
	}
}

// TestHostUpdateAgrees checks that the host's update of fc6's and fc7's
// weights (tuningHostUpdate) trains as the graph's does, for dropout
// (model1) and DropConnect (model5, masked on the host from the same
// draws): after three steps (the velocities in play), every trainable
// variable has moved as in the graph, within float32 rounding, and so
// have the velocities; and that the state still round-trips through a
// checkpoint.
func TestHostUpdateAgrees(t *testing.T) {
	b := testBackend(t)
	o := Options{Classes: []string{"a", "b", "c"}, ImageSize: 67}
	images := randomImagesOfSide(4, 67)
	for _, variant := range []string{"model1", "model5"} {
		var moves [2]map[string][]float32
		var models [2]*Model
		for i, bits := range []int{tuningAll &^ tuningHostUpdate, tuningAll} {
			m := newTunedOpts(t, b, variant, bits, o)
			if got := len(hostUpdated(m.store.RootScope(), 4)); got != 2*i {
				t.Fatalf("%s, bits %d: the host updates %d layers; want %d", variant, bits, got, 2*i)
			}
			moves[i], models[i] = movesAfterSteps(t, m, images, 4, 3), m
		}
		compareMoves(t, variant+", host update", moves[0], moves[1])
		for _, path := range []string{velocityScope + "/fc6/weights", velocityScope + "/fc7/weights"} {
			want, got := variableValues(t, models[0], path), variableValues(t, models[1], path)
			compareMoves(t, variant+", host update, velocity", map[string][]float32{path: want}, map[string][]float32{path: got})
		}
		var state bytes.Buffer
		if err := models[1].WriteState(&state); err != nil {
			t.Fatal(err)
		}
		m := newTunedOpts(t, b, variant, tuningAll, o)
		if err := m.ReadState(bytes.NewReader(state.Bytes())); err != nil {
			t.Fatal(err)
		}
		a := stateAfterSteps(t, models[1], images, 4, 1)
		if c := stateAfterSteps(t, m, images, 4, 1); !bytes.Equal(a, c) {
			t.Errorf("%s: a step after restoring the checkpoint differs from one on the original", variant)
		}
	}
}

// TestHostMatMul checks the host's dense product (hostMatMul) against
// float64 on both paths: in SIMD lanes (16-column multiples, batches of 1,
// 5 and 40, past one block of maxDenseRows) and one value at a time (fc8's
// 17 columns).
func TestHostMatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct{ m, k, n int }{{1, 300, 48}, {5, 257, 32}, {40, 129, 16}, {3, 70, 17}} {
		x, w := make([]float32, c.m*c.k), make([]float32, c.k*c.n)
		for i := range x {
			x[i] = r.Float32()*2 - 1
		}
		for i := range w {
			w[i] = r.Float32()*2 - 1
		}
		got := hostMatMul(x, w, c.m, c.k, c.n)
		for i := range c.m {
			for j := range c.n {
				want := 0.0
				for l := range c.k {
					want += float64(x[i*c.k+l]) * float64(w[l*c.n+j])
				}
				if d := math.Abs(float64(got[i*c.n+j]) - want); d > 1e-4 {
					t.Fatalf("%+v: y[%d, %d] = %v; want %v", c, i, j, got[i*c.n+j], want)
				}
			}
		}
	}
}

// TestHostDenseAgrees checks that the dense head on the host at inference
// (tuningHostDense) predicts what the graph's does, within float32
// rounding, for dropout (model1) and DropConnect's inference scaling
// (model5), at full size, batch 1 and 16, and in validation on the
// training store (batchLoss).
func TestHostDenseAgrees(t *testing.T) {
	b := testBackend(t)
	for _, variant := range []string{"model1", "model5"} {
		graph := newTuned(t, b, variant, tuningAll&^tuningHostDense)
		host := newTuned(t, b, variant, tuningAll)
		for _, n := range []int{1, 16} {
			images := randomImagesOfSide(n, ImageSize)
			closePredictions(t, fmt.Sprintf("%s, batch %d, host's dense head", variant, n), graph, host, images, n)
		}
		batch := trainBatch(randomImagesOfSide(2, ImageSize), 2, NumClasses)
		if lg, lh := batchLoss(t, graph, batch), batchLoss(t, host, batch); math.Abs(lg-lh) > 1e-5*math.Abs(lg) {
			t.Errorf("%s: validation loss %v with the host's head, %v with the graph's", variant, lh, lg)
		}
	}
	// The exported AlexNet keeps its whole head in the graph: logits.
	m := newTuned(t, b, "model2", tuningAll)
	out, err := gmx.ExecOnce(b.b, m.store, func(scope *gmx.Scope, x *Node) *Node { return AlexNet(scope, x, false) },
		tensors.FromFlatDataAndDimensions(randomImages(2), 2, ImageSize, ImageSize, 3))
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Shape().Dimensions; !slices.Equal(got, []int{2, NumClasses}) {
		t.Errorf("AlexNet at inference returns %v; want the logits, [2 %d]", got, NumClasses)
	}
}
