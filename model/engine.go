package model

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive // graph code reads best with the ops unqualified
	"github.com/gomlx/gomlx/core/tensors"
	gmx "github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Errors a caller can tell apart with errors.Is.
var (
	// ErrInvalidInput: a batch or an option the model cannot take.
	ErrInvalidInput = errors.New("invalid input")
	// ErrBadState: serialised state that is malformed or truncated.
	ErrBadState = errors.New("bad model state")
	// ErrStateMismatch: state of another variant or architecture.
	ErrStateMismatch = errors.New("state does not match the model")
	// ErrBusy: the training state is in use by another call (one trainer at a time).
	ErrBusy = errors.New("model is busy training")
)

// velocityScope holds the momentum optimizer's velocities, one per trainable
// variable, at the variable's path under it. They are not trainable.
const velocityScope = "/momentum"

// Options configure a Model. The zero value is the study's setting.
type Options struct {
	// Seed drives weight initialisation and the dropout masks. Default 1.
	Seed int64
	// Classes names the output classes, in label order. Default
	// FlowerClasses(), the 17 Oxford Flowers classes in the order the
	// dataset loader numbers them (sorted folder names).
	Classes []string
	// ImageSize is the side of the square input. Default ImageSize (227);
	// smaller sizes are for tests.
	ImageSize int
	// ConvImpl and PoolImpl choose the layer formulations; default: the
	// fastest for the backend (im2col and slices on "go", builtin on XLA).
	ConvImpl, PoolImpl string
}

func (o Options) withDefaults(b *Backend) Options {
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Classes == nil {
		o.Classes = FlowerClasses()
	}
	o.Classes = slices.Clone(o.Classes)
	if o.ImageSize == 0 {
		o.ImageSize = ImageSize
	}
	if o.ConvImpl == "" {
		o.ConvImpl = ConvBuiltin
		if b.IsGo() {
			o.ConvImpl = ConvIm2col
		}
	}
	if o.PoolImpl == "" {
		o.PoolImpl = PoolBuiltin
		if b.IsGo() {
			o.PoolImpl = PoolSlices
		}
	}
	return o
}

func (o Options) validate() error {
	if len(o.Classes) < 2 {
		return fmt.Errorf("%w: %d classes: need at least 2", ErrInvalidInput, len(o.Classes))
	}
	seen := make(map[string]bool, len(o.Classes))
	for _, c := range o.Classes {
		if c == "" || seen[c] {
			return fmt.Errorf("%w: class names must be distinct and not empty: %q", ErrInvalidInput, o.Classes)
		}
		seen[c] = true
	}
	if o.ImageSize < 32 {
		return fmt.Errorf("%w: image size %d: need at least 32", ErrInvalidInput, o.ImageSize)
	}
	if o.ConvImpl != ConvIm2col && o.ConvImpl != ConvBuiltin {
		return fmt.Errorf("%w: conv impl %q: want %q or %q", ErrInvalidInput, o.ConvImpl, ConvIm2col, ConvBuiltin)
	}
	if o.PoolImpl != PoolSlices && o.PoolImpl != PoolBuiltin {
		return fmt.Errorf("%w: pool impl %q: want %q or %q", ErrInvalidInput, o.PoolImpl, PoolSlices, PoolBuiltin)
	}
	return nil
}

// Model is one variant held in memory: a training copy of its state
// (weights, momentum velocities, RNG, step counters) that only the trainer
// touches, and an immutable serving snapshot of the weights that Predict and
// Evaluate read. Publish copies the training weights into a new snapshot and
// swaps it in atomically, so inference never waits for, or races with,
// training. All methods are safe for concurrent use.
type Model struct {
	variant Variant
	backend *Backend
	opts    Options

	// train guards the training state: one trainer (or state import/export) at a time.
	train    sync.Mutex
	store    *gmx.Store
	stepExec *gmx.Exec
	evalExec *gmx.Exec
	// maskExec draws the DropConnect masks the host applies (hostMasks);
	// masked holds the masked weights, by layer, shared with the backend.
	maskExec *gmx.Exec
	masked   map[string]*tensors.Tensor
	progress Progress
	steps    atomic.Int64 // optimizer steps taken by this process, readable while training

	served atomic.Pointer[Served]
}

// Progress is where a model's training stands; it is part of its state.
type Progress struct {
	// Step is the number of optimizer steps taken.
	Step int64 `json:"step"`
	// Epoch is the number of completed epochs.
	Epoch int `json:"epoch"`
	// DataSeed is the seed of the training order of the run that made the state.
	DataSeed int64 `json:"data_seed"`
}

// Served is a published, read-only copy of a model's weights with its own
// compiled inference graph, tagged with the version its publisher gave it.
type Served struct {
	m        *Model
	mu       sync.Mutex // one execution at a time on this variable set
	store    *gmx.Store
	exec     *gmx.Exec
	progress Progress
	version  int64
}

// Version is the tag given to Publish: flowerd's checkpoint version, 0 for
// the initial weights.
func (s *Served) Version() int64 { return s.version }

// Progress is the training progress of these weights.
func (s *Served) Progress() Progress { return s.progress }

// New builds variant v on backend b with freshly initialised weights, and
// publishes them.
func New(b *Backend, v Variant, o Options) (*Model, error) {
	if err := v.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	o = o.withDefaults(b)
	if err := o.validate(); err != nil {
		return nil, err
	}
	m := &Model{variant: v, backend: b, opts: o}
	if err := m.initTrainingState(); err != nil {
		return nil, fmt.Errorf("new %s: %w", v.Name, err)
	}
	if err := m.publishLocked(0); err != nil {
		return nil, fmt.Errorf("new %s: %w", v.Name, err)
	}
	return m, nil
}

// Reset replaces the training state with freshly initialised weights from
// seed (0 keeps the model's seed), zero velocities and no progress. The
// served weights do not change until the next Publish.
func (m *Model) Reset(seed int64) error {
	if !m.train.TryLock() {
		return ErrBusy
	}
	defer m.train.Unlock()
	if seed != 0 {
		m.opts.Seed = seed
	}
	return m.initTrainingState()
}

// initTrainingState builds a fresh training store from m.opts.Seed.
func (m *Model) initTrainingState() error {
	store := m.newStore()
	if err := store.SetRNGStateFromSeed(m.opts.Seed); err != nil {
		return fmt.Errorf("seed rng: %w", err)
	}
	if err := m.setTrainingStore(store); err != nil {
		return err
	}
	// Building the step graph creates (and initialises) every variable,
	// velocities included, without running a step.
	if err := m.compileStep(1); err != nil {
		return err
	}
	if err := catch("initialise variables", func() error { return store.InitializeVariables(m.backend.b, nil) }); err != nil {
		return err
	}
	m.progress = Progress{}
	return nil
}

// Variant returns the configuration the model was built from.
func (m *Model) Variant() Variant { return m.variant }

// Options returns the options the model was built with, defaults filled in.
func (m *Model) Options() Options {
	o := m.opts
	o.Classes = slices.Clone(o.Classes)
	return o
}

// Classes names the model's outputs, in label order.
func (m *Model) Classes() []string { return slices.Clone(m.opts.Classes) }

// NumParameters is the number of trainable parameters (weights and biases).
func (m *Model) NumParameters() int {
	n := 0
	for v := range m.served.Load().store.IterVariables() {
		if v.Trainable {
			n += v.Shape().Size()
		}
	}
	return n
}

// Served returns the published weights. Hold on to the result to make
// several calls on one consistent version.
func (m *Model) Served() *Served { return m.served.Load() }

// newStore returns an empty store carrying this model's hyperparameters.
func (m *Model) newStore() *gmx.Store {
	store := gmx.NewStore()
	setVariantParams(store, m.variant, len(m.opts.Classes), m.opts.ConvImpl, m.opts.PoolImpl)
	store.RootScope().SetParam(ParamInitSeed, m.opts.Seed)
	if !m.backend.IsGo() || !lanesAvailable() {
		// The host's dense work pays only on the go backend (its buffers
		// are the host's) and in SIMD lanes (the scalar loops are far
		// slower than the backend's matmul).
		store.RootScope().SetParam(paramTuning, tuningAll&^(tuningHostUpdate|tuningHostDense))
	}
	return store
}

// setTrainingStore installs store as the training state, with fresh executors.
// Called with m.train held (or before m is shared).
func (m *Model) setTrainingStore(store *gmx.Store) error {
	step, err := gmx.NewExec(m.backend.b, store, m.stepGraph)
	if err != nil {
		return fmt.Errorf("build training step: %w", err)
	}
	masks, err := gmx.NewExec(m.backend.b, store, m.maskGraph)
	if err != nil {
		return fmt.Errorf("build the DropConnect mask graph: %w", err)
	}
	eval, err := gmx.NewExec(m.backend.b, store, m.inferenceGraph)
	if err != nil {
		return fmt.Errorf("build evaluation graph: %w", err)
	}
	m.store, m.stepExec, m.evalExec, m.maskExec, m.masked = store, step, eval, masks, nil
	return nil
}

// inputShape is the shape of a batch of n images.
func (m *Model) inputShape(n int) shapes.Shape {
	return shapes.Make(dtypes.Float32, n, m.opts.ImageSize, m.opts.ImageSize, 3)
}

// batchInput is what the graphs of store, training or inference ones (their
// conv1 can take other tiles: tuning.conv1), take for n images (NHWC float32,
// n·size·size·3 values): conv1's Winograd tiles, gathered here, where the
// store's formulation has the host gather them (tileGather), else the
// images themselves. It is an Exec argument that donates its buffer: the
// graph's first op on it is a reshape, which the go backend does in place
// only on a buffer the executable owns; on one it does not, it allocates
// and copies (29 ms of model1's 555 ms at batch 16, node profiler). The
// tiles are gathered straight into a buffer the backend shares, where it
// has them, so nothing copies them on the way in.
func (m *Model) batchInput(store *gmx.Store, images []float32, n int, training bool) (any, error) {
	b := m.backend.b
	var t *tensors.Tensor
	if g := m.hostTiles(store, n, training); g != nil {
		var err error
		if t, err = g.tensor(b, images); err != nil {
			return nil, fmt.Errorf("conv1's tiles: %w", err)
		}
	} else {
		t = tensors.FromFlatDataAndDimensions(images, m.inputShape(n).Dimensions...)
	}
	arg, err := DonateTensorBuffer(t, b, 0)
	if err != nil {
		return nil, fmt.Errorf("hand the batch to the backend: %w", err)
	}
	return arg, nil
}

// batchShape is the shape of batchInput's tensor.
func (m *Model) batchShape(store *gmx.Store, n int, training bool) shapes.Shape {
	if g := m.hostTiles(store, n, training); g != nil {
		return shapes.Make(dtypes.Float32, g.dims()...)
	}
	return m.inputShape(n)
}

// hostTiles is the layout of conv1's tiles for n images where the
// training graphs (training set) or the inference graphs of store take
// them, else nil.
func (m *Model) hostTiles(store *gmx.Store, n int, training bool) *tileGather {
	root := store.RootScope()
	return tuningOf(root, training).conv1(root).conv1Tiles(n, m.opts.ImageSize)
}

func (m *Model) compileStep(batch int) error {
	return catch("compile training step", func() error {
		in := []shapes.Shape{m.batchShape(m.store, batch, true), shapes.Make(dtypes.Int32, batch),
			shapes.Make(dtypes.Float32, batch), shapes.Make(dtypes.Float32), shapes.Make(dtypes.Float32)}
		for _, l := range hostUpdated(m.store.RootScope(), batch) {
			if l.dropConnect { // the masked weights (hostMasks)
				inputs := denseUnits // fc7's: fc6's output
				if l.name == "fc6" {
					inputs = m.variant.denseInputs(m.opts.ImageSize)
				}
				in = append(in, shapes.Make(dtypes.Float32, inputs, denseUnits))
			}
		}
		_, err := m.stepExec.Compile(in...)
		return err
	})
}

// inferenceGraph returns class probabilities for a batch of images (as
// batchInput hands them over), or, where the store's tuning has the host
// run the dense head (hostDenseOn), conv5's flattened features, which
// runInference hands to denseHead.
func (m *Model) inferenceGraph(scope *gmx.Scope, images *Node) *Node {
	y := alexNet(scope, images, m.opts.ImageSize, false, false, true, nil)
	if hostDenseOn(scope) {
		return y // conv5's features, for denseHead
	}
	return Softmax(y, -1)
}

// stepGraph is one momentum-SGD step on a batch: inputs images [B,H,W,3]
// (or conv1's tiles of them, as batchInput hands them over),
// labels [B] int32, weights [B] (1 real, 0 padding), learning rate and
// momentum scalars; outputs the weighted loss sum and the weighted count of
// correct predictions. The update is TensorFlow's MomentumOptimizer (as
// tflearn's Momentum): v = momentum*v + grad; w = w - lr*v. For the dense
// layers whose weights the host updates (hostUpdated), the graph takes,
// after those five inputs, each DropConnect one's masked weights
// (hostMasks), and outputs, after those two, each layer's product input
// and adjoint, which hostUpdate turns into the update.
func (m *Model) stepGraph(scope *gmx.Scope, in []*Node) []*Node {
	images, labels, weights, lr, momentum := in[0], in[1], in[2], in[3], in[4]
	g := images.Graph()
	batch := images.Shape().Dimensions[0]
	if images.Rank() == 6 { // conv1's tiles
		batch = images.Shape().Dimensions[2]
	}
	layers := hostUpdated(scope, batch)
	taps := newDenseTaps(layers, in[5:])
	logits := alexNet(scope, images, m.opts.ImageSize, true, false, false, taps)
	lossSum, correct, loss := crossEntropy(logits, labels, weights)

	vars, nodes := trainableNodes(scope, g)
	// The weights the host updates (hostUpdated) get no gradient here,
	// and their velocities are not read: only created, for checkpoints.
	outs := []*Node{lossSum, correct}
	for _, l := range layers {
		w := scope.Store().Scope("/" + l.name).GetVariable("weights")
		i := slices.Index(vars, w)
		vars, nodes = slices.Delete(vars, i, i+1), slices.Delete(nodes, i, i+1)
		variable(scope.Store().Scope(velocityScope+w.Scope()), w.Name(), w.Shape(), nil).SetTrainable(false)
		outs = append(outs, nil, nil) // the tap's, once the gradient has run
	}
	grads := Gradient(loss, nodes...)
	var wrapped map[*Node]*Node
	if gmx.GetParamOr(scope, paramTuning, tuningAll)&tuningUpdateIdentity != 0 {
		wrapped = wrappingIdentities(g, nodes)
	}
	for i, v := range vars {
		vel := variable(scope.Store().Scope(velocityScope+v.Scope()), v.Name(), v.Shape(), nil).SetTrainable(false)
		param := nodes[i]
		if id, ok := wrapped[param]; ok {
			param = id
		}
		newParam, newVel := momentumUpdate(param, vel.ValueGraph(g), grads[i], lr, momentum)
		vel.SetValueGraph(newVel)
		v.SetValueGraph(newParam)
	}
	for i, l := range layers {
		tap := taps[l.name]
		if tap.a == nil {
			exceptions.Panicf("stepGraph: %s's product recorded no input and adjoint for the host's update", l.name)
		}
		outs[2+2*i], outs[3+2*i] = tap.a, tap.v
	}
	return outs
}

// trainableNodes is the trainable variables that g reads (the velocities
// are not), and their values in g.
func trainableNodes(scope *gmx.Scope, g *Graph) (vars []*gmx.Variable, values []*Node) {
	for v := range scope.Store().IterVariables() {
		if v.Trainable && v.InUseByGraph(g) && !strings.HasPrefix(v.Path(), velocityScope+"/") {
			vars = append(vars, v)
			values = append(values, v.ValueGraph(g))
		}
	}
	return vars, values
}

// wrappingIdentities maps each of params that only an identity reads (the
// one withVJP wraps it in for a hand-written gradient: the dense layers'
// weights) to that identity. The momentum update then reads the weight
// through it: the identity, its input's only reader, hands the weight's
// buffer on instead of copying it for the update to read later (fc6's
// 268 MB: training 1.09x for model1 on a 2-core AVX-512 machine).
func wrappingIdentities(g *Graph, params []*Node) map[*Node]*Node {
	readers := make(map[*Node][]*Node, len(params))
	for _, p := range params {
		readers[p] = nil
	}
	for _, n := range g.Nodes() {
		for _, in := range n.Inputs() {
			if r, ok := readers[in]; ok {
				readers[in] = append(r, n)
			}
		}
	}
	wrapped := make(map[*Node]*Node)
	for p, r := range readers {
		if len(r) == 1 && r[0].Type() == NodeTypeIdentity {
			wrapped[p] = r[0]
		}
	}
	return wrapped
}

// momentumUpdate is TensorFlow's MomentumOptimizer step (non-Nesterov):
// v' = momentum*v + grad; w' = w - lr*v'.
func momentumUpdate(param, vel, grad, lr, momentum *Node) (newParam, newVel *Node) {
	newVel = Add(Mul(momentum, vel), grad)
	return Sub(param, Mul(lr, newVel)), newVel
}

// crossEntropy is the categorical cross-entropy of softmax(logits) against
// labels, weighted per example. It returns the weighted sum, the weighted
// count of top-1 hits and the mean over the weight (the training loss).
func crossEntropy(logits, labels, weights *Node) (lossSum, correct, mean *Node) {
	classes := logits.Shape().Dimensions[1]
	oneHot := OneHot(labels, classes, dtypes.Float32)
	perExample := Neg(ReduceSum(Mul(oneHot, LogSoftmax(logits, -1)), 1))
	lossSum = ReduceAllSum(Mul(perExample, weights))
	hits := ConvertDType(Equal(ArgMax(logits, 1, dtypes.Int32), labels), dtypes.Float32)
	correct = ReduceAllSum(Mul(hits, weights))
	mean = Div(lossSum, MaxScalar(ReduceAllSum(weights), 1))
	return lossSum, correct, mean
}

// Publish copies the current training weights into a new serving snapshot
// tagged version and swaps it in. In-flight Predict calls finish on the old
// one. It waits for a running training step; during Train, publish from the
// epoch hook (EpochEnd.Publish) instead.
func (m *Model) Publish(version int64) error {
	m.train.Lock()
	defer m.train.Unlock()
	return m.publishLocked(version)
}

func (m *Model) publishLocked(version int64) error {
	store := m.newStore()
	for v := range m.store.IterVariables() {
		if !v.Trainable || strings.HasPrefix(v.Path(), velocityScope+"/") {
			continue
		}
		if _, err := v.CloneToStore(store); err != nil {
			return fmt.Errorf("publish %s: copy %s: %w", m.variant.Name, v.Path(), err)
		}
	}
	if err := m.transformKernels(store); err != nil {
		return fmt.Errorf("publish %s: %w", m.variant.Name, err)
	}
	if err := shareDenseWeights(m.backend.b, store); err != nil {
		return fmt.Errorf("publish %s: %w", m.variant.Name, err)
	}
	exec, err := gmx.NewExec(m.backend.b, store, m.inferenceGraph)
	if err != nil {
		return fmt.Errorf("publish %s: %w", m.variant.Name, err)
	}
	m.served.Store(&Served{m: m, store: store, exec: exec, progress: m.progress, version: version})
	return nil
}

// transformKernels stores in a served store, beside the weights, the
// Winograd-transformed kernels that inference uses, so that its graphs
// read them instead of transforming every kernel at every call (on the go
// backend, 28% of model2's batch-1 classify): batch 1's forms, and conv3-5's
// F(4x4) forms that larger batches take (6% of model2's batch 16, 3% of
// model1's; conv1's F(3x3) where its pool aligns with those tiles,
// tuning.conv1). Only a served store gets them: its weights never change. They
// cost, per variant, about 80 MB (29 MB for batch 1's forms, 50 MB for
// conv3-5's F(4x4)).
func (m *Model) transformKernels(store *gmx.Store) error {
	if m.opts.ConvImpl != ConvIm2col || gmx.GetParamOr(m.store.RootScope(), paramTuning, tuningAll)&tuningServedKernels == 0 {
		return nil
	}
	// The graph's work is the variables it sets: the convolutions are
	// built on a batch-1 input for their shapes, and the backend runs only
	// what the variables and the output need. The output, a max over the
	// input, is made last on purpose: the go backend (compute v0.1.2) sizes
	// an execution by its outputs' highest node index, and a parameter made
	// after all of them (here conv5's biases, which the graph reads but does
	// not need) is then out of range, a runtime panic.
	exec, err := gmx.NewExec(m.backend.b, store, func(scope *gmx.Scope, images *Node) *Node {
		alexNet(scope, images, m.opts.ImageSize, false, true, false, nil)
		return ReduceAllMax(images)
	})
	if err != nil {
		return fmt.Errorf("transform kernels: %w", err)
	}
	defer exec.Finalize()
	return catch("transform kernels", func() error {
		out, err := exec.Exec(tensors.FromShape(m.inputShape(1)))
		if err != nil {
			return err
		}
		out[0].FinalizeAll()
		return nil
	})
}

// Predict returns the class probabilities of n images (NHWC float32 in
// [0,1], n*size*size*3 values) from the published weights.
func (m *Model) Predict(ctx context.Context, images []float32, n int) ([][]float32, error) {
	return m.Served().Predict(ctx, images, n)
}

// Predict returns the class probabilities of n images (NHWC float32 in
// [0,1], n*size*size*3 values) from these weights.
func (s *Served) Predict(ctx context.Context, images []float32, n int) ([][]float32, error) {
	m := s.m
	if err := m.checkImages(images, n); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	x, err := m.batchInput(s.store, images, n, false) // gathered before taking the lock
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return m.runInference(s.exec, s.store, x, n)
}

func (m *Model) checkImages(images []float32, n int) error {
	per := m.opts.ImageSize * m.opts.ImageSize * 3
	if n < 1 {
		return fmt.Errorf("%w: batch of %d images", ErrInvalidInput, n)
	}
	if len(images) != n*per {
		return fmt.Errorf("%w: %d values for %d images of %dx%dx3 (want %d)",
			ErrInvalidInput, len(images), n, m.opts.ImageSize, m.opts.ImageSize, n*per)
	}
	return nil
}

// runInference executes an inference graph of store on a batch of n (as batchInput
// makes it) and splits the output rows.
func (m *Model) runInference(exec *gmx.Exec, store *gmx.Store, x any, n int) ([][]float32, error) {
	classes := len(m.opts.Classes)
	var flat []float32
	err := catch("run inference", func() error {
		out, err := exec.Exec(x)
		if err != nil {
			return err
		}
		flat, err = tensors.CopyFlatData[float32](out[0])
		out[0].FinalizeAll()
		if err == nil && hostDenseOn(store.RootScope()) {
			flat, err = denseHead(store, flat, n)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = flat[i*classes : (i+1)*classes : (i+1)*classes]
	}
	return rows, nil
}

// catch runs fn, turning a GoMLX panic into an error that says what was being done.
func catch(what string, fn func() error) (err error) {
	if e := exceptions.Try(func() { err = fn() }); e != nil {
		if pe, ok := e.(error); ok {
			return fmt.Errorf("%s: %w", what, pe)
		}
		return fmt.Errorf("%s: %v", what, e)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
