package model

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/flowerd/flowerd/model/dataset"
	"github.com/flowerd/flowerd/model/dataset/datasettest"
)

// dataDir is the Oxford 17 Flowers folder: $FLOWERD_DATA, else the shared
// copy beside the checkout. Tests that need it skip when it is absent.
func dataDir(t testing.TB) string { return datasettest.Dir(t) }

func loadFlowers(t testing.TB, o dataset.Options) *dataset.Dataset {
	t.Helper()
	o.Dir = dataDir(t)
	ds, err := dataset.Load(context.Background(), o)
	if err != nil {
		t.Fatalf("dataset.Load(%+v) = %v", o, err)
	}
	return ds
}

func newModel(t testing.TB, b *Backend, name string, o Options) *Model {
	t.Helper()
	v, err := LookupVariant(name)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(b, v, o)
	if err != nil {
		t.Fatalf("New(%s) = %v", name, err)
	}
	return m
}

// firstBatch returns the first batch of a split.
func firstBatch(t testing.TB, ds *dataset.Dataset, s dataset.Split, size int) dataset.Batch {
	t.Helper()
	batches, err := ds.Batches(context.Background(), s, dataset.BatchOptions{BatchSize: size})
	if err != nil {
		t.Fatal(err)
	}
	for b := range batches {
		return b
	}
	t.Fatalf("split %v has no batch", s)
	return dataset.Batch{}
}

// cloneBatch copies a batch: a training step takes ownership of its data.
func cloneBatch(b dataset.Batch) dataset.Batch {
	return dataset.Batch{Images: append([]float32(nil), b.Images...), Labels: append([]int32(nil), b.Labels...),
		Weights: append([]float32(nil), b.Weights...), Valid: b.Valid}
}

func TestLookupVariant(t *testing.T) {
	if _, err := LookupVariant("model9"); !errors.Is(err, ErrUnknownVariant) {
		t.Errorf("LookupVariant(model9) = %v; want ErrUnknownVariant", err)
	}
	v, _ := LookupVariant("model3")
	if got := v.KeepProbabilities(); got != [2]float64{0.4, 0.3} {
		t.Errorf("model3 keeps %v; want [0.4 0.3] (tflearn's keep-probability argument)", got)
	}
	v.Convention = DropProbability
	if got := v.KeepProbabilities(); math.Abs(got[0]-0.6) > 1e-12 || math.Abs(got[1]-0.7) > 1e-12 {
		t.Errorf("model3 read as drop probabilities keeps %v; want [0.6 0.7]", got)
	}
	bad := v
	bad.PoolStrides[1] = 0
	if err := bad.Validate(); err == nil {
		t.Error("Validate() of a zero stride = nil; want an error")
	}
}

func TestRankOf(t *testing.T) {
	nan := float32(math.NaN())
	tests := []struct {
		p    []float32
		c    int
		want int
	}{
		{[]float32{0.1, 0.7, 0.2}, 1, 0},
		{[]float32{0.1, 0.7, 0.2}, 0, 2},
		{[]float32{0.5, 0.5, 0}, 1, 1}, // a tie goes to the lower index, as argmax's
		{[]float32{0.5, 0.5, 0}, 0, 0},
		{make([]float32, 17), 3, 3},      // all underflowed: by index, as argmax
		{[]float32{nan, 0.1, 0.2}, 0, 2}, // a NaN class ranks last
		{[]float32{nan, 0.1, 0.2}, 2, 0},
		{[]float32{nan, nan, 0.2}, 1, 2},
	}
	for _, tc := range tests {
		if got := rankOf(tc.p, tc.c); got != tc.want {
			t.Errorf("rankOf(%v, %d) = %d; want %d", tc.p, tc.c, got, tc.want)
		}
		// Top-1 and top-5 must agree: the argmax is the class of rank 0.
		if top := argmax(tc.p); rankOf(tc.p, top) != 0 || (top == tc.c) != (tc.want == 0) {
			t.Errorf("argmax(%v) = %d, of rank %d; want the class of rank 0", tc.p, top, rankOf(tc.p, top))
		}
	}
}

// TestVariantsFullSize builds every variant at full size and checks its
// parameter count and output.
func TestVariantsFullSize(t *testing.T) {
	want := map[string]int{
		"model1": 87_711_121, "model2": 30_039_441, "model3": 37_379_473, "model4": 46_816_657, "model5": 37_379_473,
	}
	b := testBackend(t)
	for _, v := range Variants() {
		m, err := New(b, v, Options{})
		if err != nil {
			t.Fatalf("New(%s) = %v", v.Name, err)
		}
		if got := m.NumParameters(); got != want[v.Name] {
			t.Errorf("%s has %d parameters; want %d", v.Name, got, want[v.Name])
		}
		images := make([]float32, 2*ImageSize*ImageSize*3)
		for i := range images {
			images[i] = float32(i%251) / 251
		}
		probs, err := m.Predict(context.Background(), images, 2)
		if err != nil {
			t.Fatalf("%s: Predict = %v", v.Name, err)
		}
		if len(probs) != 2 || len(probs[0]) != NumClasses {
			t.Fatalf("%s: Predict gave %d rows of %d; want 2 of %d", v.Name, len(probs), len(probs[0]), NumClasses)
		}
		var sum float64
		for _, p := range probs[1] {
			sum += float64(p)
		}
		if math.Abs(sum-1) > 1e-4 {
			t.Errorf("%s: probabilities sum to %v; want 1", v.Name, sum)
		}
	}
}

func TestPredictRejectsBadInput(t *testing.T) {
	m := newModel(t, testBackend(t), "model2", Options{ImageSize: 67})
	for _, tc := range []struct {
		name string
		n    int
		len  int
	}{
		{"no images", 0, 0},
		{"short", 1, 67*67*3 - 1},
		{"count mismatch", 2, 67 * 67 * 3},
	} {
		if _, err := m.Predict(context.Background(), make([]float32, tc.len), tc.n); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("Predict(%s) = %v; want ErrInvalidInput", tc.name, err)
		}
	}
}

// batchLoss is the mean loss of the training weights on a batch, without dropout.
func batchLoss(t *testing.T, m *Model, b dataset.Batch) float64 {
	t.Helper()
	n := len(b.Labels)
	x, err := m.batchInput(m.store, b.Images, n, false)
	if err != nil {
		t.Fatal(err)
	}
	probs, err := m.runInference(m.evalExec, m.store, x, n)
	if err != nil {
		t.Fatal(err)
	}
	var loss float64
	for i, l := range b.Labels {
		loss -= math.Log(math.Max(float64(probs[i][l]), 1e-10))
	}
	return loss / float64(len(b.Labels))
}

// TestTrainStepLowersLossModel1 takes full-size model1 training steps on one
// fixed batch of real images and checks that the loss goes down, and that
// the first step is a momentum step: w1 = w0 - lr*v1.
func TestTrainStepLowersLossModel1(t *testing.T) {
	if testing.Short() {
		t.Skip("full-size model1 training step: skipped under -short")
	}
	ds := loadFlowers(t, dataset.Options{Classes: []string{"sunflower", "bluebell", "snowdrop", "daffodil"},
		TrainPerClass: 4, ValPerClass: 0, TestPerClass: 0})
	m := newModel(t, testBackend(t), "model1", Options{})
	batch := firstBatch(t, ds, dataset.Train, 16)
	before := batchLoss(t, m, batch)
	w0 := variableValues(t, m, "/fc8/weights")
	for i := range 3 {
		if _, err := m.TrainStep(context.Background(), cloneBatch(batch), DefaultLearningRate, DefaultMomentum); err != nil {
			t.Fatalf("TrainStep %d = %v", i, err)
		}
		if i == 0 {
			w1 := variableValues(t, m, "/fc8/weights")
			v1 := variableValues(t, m, velocityScope+"/fc8/weights")
			for j := range w1 {
				if want := w0[j] - DefaultLearningRate*v1[j]; math.Abs(float64(w1[j]-want)) > 1e-6 {
					t.Fatalf("after one step fc8 weight %d = %v; want w0 - lr*v1 = %v", j, w1[j], want)
				}
			}
		}
	}
	after := batchLoss(t, m, batch)
	t.Logf("model1 loss on a fixed batch: %.4f -> %.4f", before, after)
	if !(after < before) {
		t.Errorf("loss after 3 steps = %v; want below %v", after, before)
	}
}

func variableValues(t *testing.T, m *Model, path string) []float32 {
	t.Helper()
	v := m.store.GetVariable(path)
	if v == nil {
		t.Fatalf("no variable %s", path)
	}
	val, err := v.Value()
	if err != nil {
		t.Fatal(err)
	}
	out, err := tensors.CopyFlatData[float32](val)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStateRoundTrip checks that export -> import -> next step gives the same
// loss as without the round trip, and that bad state is refused untouched.
func TestStateRoundTrip(t *testing.T) {
	ds := loadFlowers(t, dataset.Options{Classes: []string{"tulip", "iris"}, TrainPerClass: 4, ValPerClass: 0, TestPerClass: 0, ImageSize: 99})
	b := testBackend(t)
	o := Options{Classes: []string{"iris", "tulip"}, ImageSize: 99}
	a := newModel(t, b, "model5", o) // DropConnect: the RNG state matters
	batch := firstBatch(t, ds, dataset.Train, 8)
	if _, err := a.TrainStep(context.Background(), cloneBatch(batch), 0.01, 0.9); err != nil {
		t.Fatal(err)
	}
	var state bytes.Buffer
	if err := a.WriteState(&state); err != nil {
		t.Fatalf("WriteState = %v", err)
	}
	info, err := ReadStateInfo(bytes.NewReader(state.Bytes()))
	if err != nil || info.Progress.Step != 1 || info.Variant.Name != "model5" {
		t.Fatalf("ReadStateInfo = %+v, %v; want model5 at step 1", info, err)
	}

	c := newModel(t, b, "model5", Options{Classes: []string{"iris", "tulip"}, ImageSize: 99, Seed: 42})
	for _, tc := range []struct {
		name  string
		state []byte
		want  error
	}{
		{"empty", nil, ErrBadState},
		{"truncated", state.Bytes()[:state.Len()/2], ErrBadState},
		{"flipped byte", flipByte(state.Bytes(), state.Len()-100), ErrBadState},
		{"not a state", []byte("hello, world: not a state at all"), ErrBadState},
	} {
		if err := c.ReadState(bytes.NewReader(tc.state)); !errors.Is(err, tc.want) {
			t.Errorf("ReadState(%s) = %v; want %v", tc.name, err, tc.want)
		}
	}
	other := newModel(t, b, "model3", o)
	if err := other.ReadState(bytes.NewReader(state.Bytes())); !errors.Is(err, ErrStateMismatch) {
		t.Errorf("model3.ReadState(model5 state) = %v; want ErrStateMismatch", err)
	}
	if err := c.ReadState(bytes.NewReader(state.Bytes())); err != nil {
		t.Fatalf("ReadState = %v", err)
	}
	if got := c.Served().Progress().Step; got != 0 {
		t.Errorf("served step after ReadState = %d; want 0 (ReadState does not publish)", got)
	}
	if err := c.Publish(7); err != nil {
		t.Fatal(err)
	}
	if got := c.Served(); got.Progress().Step != 1 || got.Version() != 7 {
		t.Errorf("served after Publish(7): step %d, version %d; want 1, 7", got.Progress().Step, got.Version())
	}
	next := firstBatch(t, ds, dataset.Train, 8)
	ra, err := a.TrainStep(context.Background(), cloneBatch(next), 0.01, 0.9)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.TrainStep(context.Background(), cloneBatch(next), 0.01, 0.9)
	if err != nil {
		t.Fatal(err)
	}
	if ra.Loss != rc.Loss {
		t.Errorf("loss of the step after the round trip = %v; without it %v", rc.Loss, ra.Loss)
	}
}

func flipByte(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x40
	return c
}

// TestTrainCancel checks that a cancelled context stops training within one step.
func TestTrainCancel(t *testing.T) {
	ds := loadFlowers(t, dataset.Options{Classes: []string{"crocus", "pansy"}, TrainPerClass: 20, ValPerClass: 2, TestPerClass: 0, ImageSize: 99})
	m := newModel(t, testBackend(t), "model2", Options{Classes: ds.Classes(), ImageSize: 99})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var atCancel atomic.Int64
	go func() {
		for m.steps.Load() < 2 {
			time.Sleep(5 * time.Millisecond)
		}
		atCancel.Store(m.steps.Load())
		cancel()
	}()
	err := m.Train(ctx, ds, TrainOptions{Epochs: 100, BatchSize: 2}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Train after cancel = %v; want context.Canceled", err)
	}
	if got, limit := m.steps.Load(), atCancel.Load()+1; got > limit {
		t.Errorf("training took %d steps; cancelled at %d, so at most %d", got, atCancel.Load(), limit)
	}
	if err := m.Publish(1); err != nil {
		t.Errorf("Publish after a cancelled run = %v", err)
	}
}

// TestTrainOnFlowers trains model2 from scratch on three real classes, at
// 99px to fit the CI budget, and expects validation accuracy clearly above
// chance (1/3).
func TestTrainOnFlowers(t *testing.T) {
	if testing.Short() {
		t.Skip("real training run: skipped under -short")
	}
	ds := loadFlowers(t, dataset.Options{Classes: []string{"sunflower", "tulip", "snowdrop"},
		TrainPerClass: 40, ValPerClass: 15, TestPerClass: 0, Seed: 7, ImageSize: 99})
	m := newModel(t, testBackend(t), "model2", Options{Classes: ds.Classes(), ImageSize: 99})
	const epochs = 16
	var history []EpochMetrics
	err := m.Train(context.Background(), ds, TrainOptions{Epochs: epochs, BatchSize: 16, LearningRate: 0.005}, func(end EpochEnd) error {
		e := end.Metrics
		t.Logf("epoch %d: loss %.3f acc %.3f val_loss %.3f val_acc %.3f  %.1f img/s", e.Epoch, e.Loss, e.Accuracy, e.ValLoss, e.ValAccuracy, e.ImagesPerSec)
		history = append(history, e)
		return end.Publish(int64(e.Epoch))
	})
	if err != nil {
		t.Fatalf("Train = %v", err)
	}
	last := history[len(history)-1]
	if len(history) != epochs || last.Epoch != epochs || m.Served().Version() != epochs {
		t.Fatalf("history = %+v, served version %d; want %d epochs, the last published", history, m.Served().Version(), epochs)
	}
	ev, err := m.Evaluate(context.Background(), ds, dataset.Val, 15)
	if err != nil {
		t.Fatalf("Evaluate = %v", err)
	}
	t.Logf("validation confusion matrix (rows: true %q): %v", ds.Classes(), ev.Confusion)
	if ev.Examples != 45 || ev.Top5 != 1 {
		t.Errorf("Evaluate: %d examples, top-5 %v; want 45 and 1 (3 classes)", ev.Examples, ev.Top5)
	}
	if math.Abs(ev.Top1-last.ValAccuracy) > 1e-9 {
		t.Errorf("Evaluate top-1 %v differs from the last epoch's val accuracy %v", ev.Top1, last.ValAccuracy)
	}
	if ev.Top1 < 0.6 {
		t.Errorf("validation accuracy after %d epochs = %v; want clearly above chance (>= 0.6)", epochs, ev.Top1)
	}
}

// TestFlowerClasses checks the default class names against the data's folders.
func TestFlowerClasses(t *testing.T) {
	entries, err := os.ReadDir(dataDir(t))
	if err != nil {
		t.Fatal(err)
	}
	var folders []string
	for _, e := range entries {
		if e.IsDir() {
			folders = append(folders, e.Name())
		}
	}
	if !slices.Equal(folders, FlowerClasses()) {
		t.Errorf("FlowerClasses() = %q; the data's folders are %q", FlowerClasses(), folders)
	}
}

func TestTrainRejectsMismatchedDataset(t *testing.T) {
	ds := loadFlowers(t, dataset.Options{Classes: []string{"tulip", "iris", "daisy"}, TrainPerClass: 1, ValPerClass: 0, TestPerClass: 0, ImageSize: 99})
	m := newModel(t, testBackend(t), "model2", Options{Classes: []string{"iris", "tulip"}, ImageSize: 99})
	if err := m.Train(context.Background(), ds, TrainOptions{Epochs: 1}, nil); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Train(3-class data, 2-class model) = %v; want ErrInvalidInput", err)
	}
	if err := m.Train(context.Background(), nil, TrainOptions{Epochs: 1}, nil); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Train(nil dataset) = %v; want ErrInvalidInput", err)
	}
}
