package model

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/flowerd/flowerd/model/dataset"
)

// The study's optimizer settings (tflearn's Momentum).
const (
	DefaultLearningRate = 0.001
	DefaultMomentum     = 0.9
	// DefaultBatchSize is the batch size of the tflearn AlexNet example the study follows.
	DefaultBatchSize = 64
)

// TrainOptions configure one training run.
type TrainOptions struct {
	// Epochs to run in this call (on top of those already done). Required.
	Epochs int
	// BatchSize, default DefaultBatchSize.
	BatchSize int
	// LearningRate and Momentum, default the study's 0.001 and 0.9.
	LearningRate, Momentum float64
	// Seed of the training order. 0 keeps the seed of the state being
	// resumed (or 1 for a fresh model), so a resumed run continues exactly.
	Seed int64
	// Augment turns on random flips and crops (off in the study).
	Augment bool
	// EvalBatchSize for the validation pass, default BatchSize.
	EvalBatchSize int
}

func (o TrainOptions) withDefaults(resumeSeed int64) (TrainOptions, error) {
	if o.Epochs < 1 {
		return o, fmt.Errorf("%w: epochs %d: need at least 1", ErrInvalidInput, o.Epochs)
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.BatchSize < 1 || o.BatchSize > 4096 {
		return o, fmt.Errorf("%w: batch size %d: want 1 to 4096", ErrInvalidInput, o.BatchSize)
	}
	if o.LearningRate == 0 {
		o.LearningRate = DefaultLearningRate
	}
	if o.Momentum == 0 {
		o.Momentum = DefaultMomentum
	}
	if !(o.LearningRate > 0 && o.LearningRate < 10) || math.IsNaN(o.LearningRate) {
		return o, fmt.Errorf("%w: learning rate %v: want a value in (0, 10)", ErrInvalidInput, o.LearningRate)
	}
	if !(o.Momentum >= 0 && o.Momentum < 1) {
		return o, fmt.Errorf("%w: momentum %v: want a value in (0, 1), or 0 for the default %v", ErrInvalidInput, o.Momentum, DefaultMomentum)
	}
	if o.Seed == 0 {
		o.Seed = resumeSeed
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.EvalBatchSize <= 0 {
		o.EvalBatchSize = o.BatchSize
	}
	return o, nil
}

// EpochMetrics are one epoch's figures: the study's Figure 2 data plus cost.
type EpochMetrics struct {
	Epoch        int           // 1-based, counting all epochs of the state
	Step         int64         // optimizer steps taken so far
	Loss         float64       // mean training loss over the epoch (with dropout on)
	Accuracy     float64       // training top-1 over the epoch
	ValLoss      float64       // validation loss with the epoch's final weights
	ValAccuracy  float64       // validation top-1
	WallTime     time.Duration // training pass plus validation pass
	ImagesPerSec float64       // training images per second (training pass only)
}

// EpochEnd is handed to Train's epoch hook. While the hook runs, Train holds
// the training state at the end of the epoch, so the hook can save and
// publish exactly those weights.
type EpochEnd struct {
	Metrics EpochMetrics
	m       *Model
}

// WriteState writes the training state as it is at the end of the epoch
// (see Model.WriteState).
func (e EpochEnd) WriteState(w io.Writer) error { return e.m.writeStateLocked(w) }

// Publish serves the epoch's weights, tagged version (see Model.Publish).
func (e EpochEnd) Publish(version int64) error { return e.m.publishLocked(version) }

// StepResult is what one optimizer step reports.
type StepResult struct {
	Loss    float64 // mean loss over the batch's real rows
	Correct float64 // real rows predicted right
	Rows    float64 // real rows
}

// TrainStep runs one momentum-SGD step on a batch of the training state.
// Train is built from it; it is exported for tests and benchmarks.
func (m *Model) TrainStep(ctx context.Context, b dataset.Batch, lr, momentum float64) (StepResult, error) {
	if !m.train.TryLock() {
		return StepResult{}, ErrBusy
	}
	defer m.train.Unlock()
	if err := ctx.Err(); err != nil {
		return StepResult{}, err
	}
	return m.step(b, lr, momentum)
}

func (m *Model) step(b dataset.Batch, lr, momentum float64) (StepResult, error) {
	n := len(b.Labels)
	if err := m.checkImages(b.Images, n); err != nil {
		return StepResult{}, err
	}
	if len(b.Weights) != n {
		return StepResult{}, fmt.Errorf("%w: %d weights for %d labels", ErrInvalidInput, len(b.Weights), n)
	}
	var rows float64
	for i, l := range b.Labels {
		if l < 0 || int(l) >= len(m.opts.Classes) {
			return StepResult{}, fmt.Errorf("%w: label %d of row %d: want 0 to %d", ErrInvalidInput, l, i, len(m.opts.Classes)-1)
		}
		rows += float64(b.Weights[i])
	}
	x, err := m.batchInput(m.store, b.Images, n, true)
	if err != nil {
		return StepResult{}, err
	}
	var res StepResult
	err = catch("training step", func() error {
		masked, masks, err := m.hostMasks(n)
		if err != nil {
			return err
		}
		in := []any{x, tensors.FromFlatDataAndDimensions(b.Labels, n), tensors.FromFlatDataAndDimensions(b.Weights, n),
			tensors.FromScalar(float32(lr)), tensors.FromScalar(float32(momentum))}
		for _, t := range masked {
			in = append(in, t)
		}
		out, err := m.stepExec.Exec(in...)
		if err != nil {
			return err
		}
		lossSum, correct := scalar(out[0]), scalar(out[1])
		res = StepResult{Loss: lossSum / math.Max(rows, 1), Correct: correct, Rows: rows}
		defer func() {
			for _, t := range out[2:] {
				t.FinalizeAll()
			}
		}()
		return m.hostUpdate(out[2:], masks, n, lr, momentum)
	})
	if err != nil {
		return StepResult{}, err
	}
	m.progress.Step++
	m.steps.Add(1)
	return res, nil
}

func scalar(t *tensors.Tensor) float64 {
	v := tensors.ToScalar[float32](t)
	t.FinalizeAll()
	return float64(v)
}

// Train runs o.Epochs epochs of the training split of ds on the training
// state, validating on the validation split after each, and calls onEpoch
// (if not nil) at the end of every epoch: that is where a caller checkpoints
// (EpochEnd.WriteState) and serves (EpochEnd.Publish) the new weights; Train
// publishes nothing itself. Cancelling ctx stops it before the next step;
// the state then holds the steps taken and the error is ctx's. An error
// returned by onEpoch stops training and is returned.
func (m *Model) Train(ctx context.Context, ds *dataset.Dataset, o TrainOptions, onEpoch func(EpochEnd) error) error {
	if !m.train.TryLock() {
		return ErrBusy
	}
	defer m.train.Unlock()
	if err := m.checkDataset(ds); err != nil {
		return err
	}
	o, err := o.withDefaults(m.progress.DataSeed)
	if err != nil {
		return err
	}
	if ds.Len(dataset.Train) == 0 {
		return fmt.Errorf("%w: the training split is empty", ErrInvalidInput)
	}
	m.progress.DataSeed = o.Seed
	for e := 0; e < o.Epochs; e++ {
		start := time.Now()
		batches, err := ds.Batches(ctx, dataset.Train, dataset.BatchOptions{
			BatchSize: o.BatchSize, Shuffle: true, Seed: o.Seed, Epoch: m.progress.Epoch, Augment: o.Augment})
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidInput, err)
		}
		var lossSum, correct, rows float64
		for b := range batches {
			if err := ctx.Err(); err != nil {
				break
			}
			r, err := m.step(b, o.LearningRate, o.Momentum)
			if err != nil {
				return fmt.Errorf("train %s epoch %d: %w", m.variant.Name, m.progress.Epoch+1, err)
			}
			lossSum += r.Loss * r.Rows
			correct += r.Correct
			rows += r.Rows
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		trainTime := time.Since(start)
		m.progress.Epoch++
		met := EpochMetrics{
			Epoch: m.progress.Epoch, Step: m.progress.Step,
			Loss: lossSum / rows, Accuracy: correct / rows,
			ImagesPerSec: rows / trainTime.Seconds(),
		}
		if ds.Len(dataset.Val) > 0 {
			ev, err := m.evaluate(ctx, func(images []float32, n, classes int) ([][]float32, error) {
				// The training side's own executable.
				x, err := m.batchInput(m.store, images, n, false)
				if err != nil {
					return nil, err
				}
				return m.runInference(m.evalExec, m.store, x, n)
			}, ds, dataset.Val, o.EvalBatchSize)
			if err != nil {
				return fmt.Errorf("train %s epoch %d: validate: %w", m.variant.Name, m.progress.Epoch, err)
			}
			met.ValLoss, met.ValAccuracy = ev.Loss, ev.Top1
		}
		met.WallTime = time.Since(start)
		if onEpoch != nil {
			if err := onEpoch(EpochEnd{Metrics: met, m: m}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *Model) checkDataset(ds *dataset.Dataset) error {
	if ds == nil {
		return fmt.Errorf("%w: no dataset", ErrInvalidInput)
	}
	if got := ds.Classes(); !slices.Equal(got, m.opts.Classes) {
		return fmt.Errorf("%w: dataset classes %q differ from the model's %q", ErrInvalidInput, got, m.opts.Classes)
	}
	if ds.ImageSize() != m.opts.ImageSize {
		return fmt.Errorf("%w: dataset images are %dpx, the model takes %dpx", ErrInvalidInput, ds.ImageSize(), m.opts.ImageSize)
	}
	return nil
}

// Evaluation is a model's performance on one split.
type Evaluation struct {
	Split    string
	Examples int
	// Loss is the mean categorical cross-entropy (probabilities clipped at
	// 1e-10, as tflearn's loss).
	Loss       float64
	Top1, Top5 float64
	// PerClass is the top-1 accuracy of each true class (NaN where the split
	// has no example of it).
	PerClass []float64
	// Confusion[true][predicted] counts examples.
	Confusion    [][]int
	ImagesPerSec float64
	Progress     Progress // the training progress of the weights evaluated
	Version      int64    // the served version evaluated
}

// Evaluate measures the published weights on a split of ds.
func (m *Model) Evaluate(ctx context.Context, ds *dataset.Dataset, split dataset.Split, batchSize int) (*Evaluation, error) {
	if err := m.checkDataset(ds); err != nil {
		return nil, err
	}
	if batchSize <= 0 {
		batchSize = 32
	}
	s := m.Served()
	// One batch at a time holds the weights' executable, so Classify waits
	// for at most one batch, not for the whole split.
	ev, err := m.evaluate(ctx, func(images []float32, n, classes int) ([][]float32, error) {
		x, err := m.batchInput(s.store, images, n, false) // gathered before taking the lock
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return m.runInference(s.exec, s.store, x, n)
	}, ds, split, batchSize)
	if err != nil {
		return nil, err
	}
	ev.Progress, ev.Version = s.progress, s.version
	return ev, nil
}

// evaluate measures a split with infer, which runs one batch (runInference
// on an executable, holding whatever lock it needs).
func (m *Model) evaluate(ctx context.Context, infer func(images []float32, n, classes int) ([][]float32, error),
	ds *dataset.Dataset, split dataset.Split, batchSize int) (*Evaluation, error) {
	k := len(m.opts.Classes)
	ev := &Evaluation{Split: split.String(), Confusion: make([][]int, k), PerClass: make([]float64, k)}
	for i := range ev.Confusion {
		ev.Confusion[i] = make([]int, k)
	}
	batches, err := ds.Batches(ctx, split, dataset.BatchOptions{BatchSize: batchSize})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	start := time.Now()
	var top5 int
	for b := range batches {
		probs, err := infer(b.Images, len(b.Labels), k)
		if err != nil {
			return nil, err
		}
		for i := range b.Valid {
			p, label := probs[i], int(b.Labels[i])
			ev.Loss -= math.Log(math.Max(float64(p[label]), 1e-10))
			ev.Confusion[label][argmax(p)]++
			if rankOf(p, label) < 5 {
				top5++
			}
			ev.Examples++
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ev.Examples == 0 {
		return nil, fmt.Errorf("%w: the %s split is empty", ErrInvalidInput, split)
	}
	var top1 int
	for c, row := range ev.Confusion {
		total := 0
		for _, n := range row {
			total += n
		}
		top1 += row[c]
		ev.PerClass[c] = math.NaN()
		if total > 0 {
			ev.PerClass[c] = float64(row[c]) / float64(total)
		}
	}
	n := float64(ev.Examples)
	ev.Loss /= n
	ev.Top1, ev.Top5 = float64(top1)/n, float64(top5)/n
	ev.ImagesPerSec = n / time.Since(start).Seconds()
	return ev, nil
}

func argmax(p []float32) int {
	best := 0
	for i := range p {
		if outranks(p, i, best) {
			best = i
		}
	}
	return best
}

// outranks orders classes by probability, highest first: ties go to the
// lower index (so the top-1 class is the first of the most probable, as
// argmax picks it) and NaN ranks below every number. It is a strict total
// order, so top-1 and top-5 agree: argmax(p) == c exactly when
// rankOf(p, c) == 0.
func outranks(p []float32, i, c int) bool {
	a, b := p[i], p[c]
	switch {
	case a > b:
		return true
	case a == b:
		return i < c
	case b != b: // c is NaN
		return a == a || i < c
	}
	return false
}

// rankOf is the number of classes that outrank class c.
func rankOf(p []float32, c int) int {
	r := 0
	for i := range p {
		if i != c && outranks(p, i, c) {
			r++
		}
	}
	return r
}
