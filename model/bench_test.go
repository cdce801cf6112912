package model

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowerd/flowerd/model/dataset"
)

// BenchmarkVariants measures, for every variant at full size on the backend
// named by $GOMLX_BACKEND (default go): classify latency at batch 1,
// inference throughput at batch 16 and training throughput at batch 32, with
// the effective GFLOP/s each achieves (the network's direct-convolution
// FLOPs per second: Winograd does fewer, so it is not the kernel's rate) and
// the peak resident memory so far. Run it with `make bench`.
func BenchmarkVariants(b *testing.B) {
	backend, err := NewBackend("")
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range Variants() {
		m, err := New(backend, v, Options{})
		if err != nil {
			b.Fatal(err)
		}
		fwd, train := v.FLOPs(ImageSize, NumClasses)
		b.Run(v.Name+"/classify-b1", func(b *testing.B) {
			benchPredict(b, m, 1, fwd)
		})
		b.Run(v.Name+"/infer-b16", func(b *testing.B) {
			benchPredict(b, m, 16, fwd)
		})
		b.Run(v.Name+"/train-b32", func(b *testing.B) {
			benchTrain(b, m, 32, train)
		})
	}
}

func randomImages(n int) []float32 { return randomImagesOfSide(n, ImageSize) }

// randomImagesOfSide is n side x side RGB images of uniform values, the same
// for the same n and side.
func randomImagesOfSide(n, side int) []float32 {
	r := rand.New(rand.NewPCG(uint64(side), uint64(n)))
	x := make([]float32, n*side*side*3)
	for i := range x {
		x[i] = r.Float32()
	}
	return x
}

func benchPredict(b *testing.B, m *Model, n int, flopsPerImage float64) {
	images := randomImages(n)
	ctx := context.Background()
	if _, err := m.Predict(ctx, images, n); err != nil { // compile and warm up
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if _, err := m.Predict(ctx, images, n); err != nil {
			b.Fatal(err)
		}
	}
	report(b, time.Since(start), n, flopsPerImage)
}

func benchTrain(b *testing.B, m *Model, n int, flopsPerImage float64) {
	r := rand.New(rand.NewPCG(2, 3))
	batch := func() dataset.Batch {
		bt := dataset.Batch{Images: randomImages(n), Labels: make([]int32, n), Weights: make([]float32, n), Valid: n}
		for i := range n {
			bt.Labels[i], bt.Weights[i] = int32(r.IntN(NumClasses)), 1
		}
		return bt
	}
	ctx := context.Background()
	if _, err := m.TrainStep(ctx, batch(), DefaultLearningRate, DefaultMomentum); err != nil { // compile and warm up
		b.Fatal(err)
	}
	var elapsed time.Duration
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		bt := batch() // the step takes ownership of its batch
		b.StartTimer()
		start := time.Now()
		if _, err := m.TrainStep(ctx, bt, DefaultLearningRate, DefaultMomentum); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
	}
	report(b, elapsed, n, flopsPerImage)
}

func report(b *testing.B, elapsed time.Duration, batch int, flopsPerImage float64) {
	images := float64(b.N * batch)
	sec := elapsed.Seconds()
	b.ReportMetric(images/sec, "img/s")
	b.ReportMetric(flopsPerImage*images/sec/1e9, "GFLOP/s")
	b.ReportMetric(sec/float64(b.N)*1e3, "ms/batch")
	if mb := peakRSSMiB(); mb > 0 {
		b.ReportMetric(mb, "peak-RSS-MiB")
	}
}

// peakRSSMiB is the process's peak resident memory so far (VmHWM), 0 where
// /proc is not available. It only grows, so read it per variant in the order
// make bench runs them (variants are built one after the other).
func peakRSSMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}

func TestFLOPs(t *testing.T) {
	// The figures the speed issue quotes for model1: 2.82 GFLOP forward, ~8.3 training.
	v, _ := LookupVariant("model1")
	fwd, train := v.FLOPs(ImageSize, NumClasses)
	if got := fmt.Sprintf("%.2f %.1f", fwd/1e9, train/1e9); got != "2.82 8.2" {
		t.Errorf("model1 FLOPs = %s GFLOP (forward, training); want 2.82 8.2", got)
	}
}
