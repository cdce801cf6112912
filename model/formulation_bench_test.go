package model

import (
	"context"
	"flag"
	"slices"
	"testing"
	"time"

	"github.com/flowerd/flowerd/model/dataset"
)

var abBase = flag.Int("ab.base", 0, "BenchmarkTuningAB: paramTuning bits of the baseline (0: the straightforward formulation)")

// newTuned builds variant name at full size with the given paramTuning bits.
// Graphs are built at their first run, after the parameter is set.
func newTuned(b testing.TB, backend *Backend, name string, bits int) *Model {
	return newTunedOpts(b, backend, name, bits, Options{})
}

// newTunedOpts is newTuned with model options.
func newTunedOpts(b testing.TB, backend *Backend, name string, bits int, o Options) *Model {
	b.Helper()
	v, err := LookupVariant(name)
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(backend, v, o)
	if err != nil {
		b.Fatal(err)
	}
	m.store.RootScope().SetParam(paramTuning, bits)
	m.served.Load().store.RootScope().SetParam(paramTuning, bits)
	return m
}

// BenchmarkFormulations runs the go backend's formulation with no tuning
// (paramTuning 0) and with all of it, for model1 and model2 at full size:
// classify at batch 1, inference at batch 16, training at batch 32. On a
// shared machine prefer BenchmarkTuningAB, which interleaves the two.
func BenchmarkFormulations(b *testing.B) {
	backend, err := NewBackend("go")
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"model1", "model2"} {
		v, _ := LookupVariant(name)
		fwd, train := v.FLOPs(ImageSize, NumClasses)
		for _, bits := range []int{0, tuningAll} {
			form := "new"
			if bits == 0 {
				form = "legacy"
			}
			var m *Model
			setup := func(b *testing.B) {
				if m == nil {
					m = newTuned(b, backend, name, bits)
				}
			}
			b.Run(name+"/"+form+"/classify-b1", func(b *testing.B) {
				setup(b)
				benchPredict(b, m, 1, fwd)
			})
			b.Run(name+"/"+form+"/infer-b16", func(b *testing.B) {
				setup(b)
				benchPredict(b, m, 16, fwd)
			})
			b.Run(name+"/"+form+"/train-b32", func(b *testing.B) {
				setup(b)
				benchTrain(b, m, 32, train)
			})
			m = nil // free it before the next formulation
		}
	}
}

// BenchmarkTuningAB holds two copies of each variant, the
// baseline (paramTuning = -ab.base, default 0) and the current formulation,
// and alternates their runs (classify b1, inference b16, training b32), so
// both see the same machine load. It reports each one's figures and the
// speedup, the baseline's total time over the current one's. E.g.
// `go test ./model/ -run '^$' -bench TuningAB -benchtime 4x -ab.base 3`.
func BenchmarkTuningAB(b *testing.B) {
	backend, err := NewBackend("go")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range VariantNames() {
		v, _ := LookupVariant(name)
		fwd, train := v.FLOPs(ImageSize, NumClasses)
		var models [2]*Model
		setup := func(b *testing.B) {
			if models[0] == nil {
				models = [2]*Model{newTuned(b, backend, name, *abBase), newTuned(b, backend, name, tuningAll)}
			}
		}
		run := func(b *testing.B, n int, flops float64, once func(m *Model) error) {
			setup(b)
			for _, m := range models { // compile and warm up
				if err := once(m); err != nil {
					b.Fatal(err)
				}
			}
			var elapsed [2]time.Duration
			b.ResetTimer()
			for round := 0; b.Loop(); round++ {
				for j := range models {
					i := (j + round) % 2 // alternate which goes first
					start := time.Now()
					if err := once(models[i]); err != nil {
						b.Fatal(err)
					}
					elapsed[i] += time.Since(start)
				}
			}
			images := float64(b.N * n)
			b.ReportMetric(images/elapsed[0].Seconds(), "base-img/s")
			b.ReportMetric(images/elapsed[1].Seconds(), "img/s")
			b.ReportMetric(flops*images/elapsed[1].Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(float64(elapsed[0])/float64(elapsed[1]), "speedup")
		}
		predict := func(n int) func(m *Model) error {
			images := randomImages(n)
			return func(m *Model) error { _, err := m.Predict(ctx, images, n); return err }
		}
		b.Run(name+"/classify-b1", func(b *testing.B) { run(b, 1, fwd, predict(1)) })
		b.Run(name+"/infer-b16", func(b *testing.B) { run(b, 16, fwd, predict(16)) })
		b.Run(name+"/train-b32", func(b *testing.B) {
			images := randomImages(32)
			run(b, 32, train, func(m *Model) error {
				bt := trainBatch(images, 32, NumClasses)
				_, err := m.TrainStep(ctx, bt, DefaultLearningRate, DefaultMomentum)
				return err
			})
		})
		models = [2]*Model{}
	}
}

// trainBatch is a fresh batch of a copy of the n images, labelled
// 0, 1, ... in turn over classes: a training step takes ownership of its
// batch.
func trainBatch(images []float32, n, classes int) dataset.Batch {
	bt := dataset.Batch{Images: slices.Clone(images), Labels: make([]int32, n), Weights: make([]float32, n), Valid: n}
	for i := range n {
		bt.Labels[i], bt.Weights[i] = int32(i%classes), 1
	}
	return bt
}

// BenchmarkHostTiles times the host's share of conv1 for 16 full-size
// images: gathering its Winograd tiles (tuningHostTiles), and gathering
// and transforming them (tuningHostTransform), on every core.
func BenchmarkHostTiles(b *testing.B) {
	images := randomImagesOfSide(16, ImageSize)
	for _, transform := range []bool{false, true} {
		t := tuning{spaceToDepth: true, spaceToDepthWinograd: true, winograd: true, winograd4: true,
			hostTiles: true, hostTransform: transform}
		g := t.conv1Tiles(16, ImageSize)
		out := make([]float32, 36*g.n*g.th*g.tw*g.cin)
		b.Run(map[bool]string{false: "gather", true: "transform"}[transform], func(b *testing.B) {
			for b.Loop() {
				g.gather(out, images)
			}
		})
	}
}

// BenchmarkMomentumStep times the host's momentum step of fc6's weights
// (tuningHostUpdate): model1's 16384x4096, batch 32, on every core.
func BenchmarkMomentumStep(b *testing.B) {
	const k, n, batch = 16384, 4096, 32
	w, vel := make([]float32, k*n), make([]float32, k*n)
	for i := range w { // touched, as a live model's are
		w[i], vel[i] = 1, 2
	}
	aT, v := make([]float32, k*batch), make([]float32, batch*n)
	for i := range aT {
		aT[i] = float32(i%7) * 0.1
	}
	for i := range v {
		v[i] = float32(i%5) * 0.1
	}
	for b.Loop() {
		momentumStep(w, vel, aT, v, nil, batch, k, n, 0.01, 0.9)
	}
}
