package dataset_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/flowerd/flowerd/model/dataset"
)

// BenchmarkLoad loads all 17 classes at 227x227 (1360 images).
func BenchmarkLoad(b *testing.B) {
	opts := dataset.Options{Dir: dataDir(b), Logger: quietLogger()}
	for b.Loop() {
		if _, err := dataset.Load(context.Background(), opts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(1360*float64(b.N)/b.Elapsed().Seconds(), "images/s")
}

// BenchmarkDecode decodes one flower photo (666x500 JPEG) to 227x227.
func BenchmarkDecode(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(dataDir(b), "daisy", "image_0801.jpg"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := dataset.Decode(data, 227); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBatch32 builds one batch of 32 227x227 images from the cache.
func BenchmarkBatch32(b *testing.B) {
	opts := dataset.Options{Dir: dataDir(b), Classes: []string{"daisy"}, TrainPerClass: 32, ValPerClass: 1, TestPerClass: 1, Logger: quietLogger()}
	d, err := dataset.Load(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	rows := make([]int, 32)
	for i := range rows {
		rows[i] = i
	}
	for _, augment := range []bool{false, true} {
		name := "plain"
		if augment {
			name = "augment"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				d.BuildBatch(dataset.Train, rows, dataset.BatchOptions{BatchSize: 32, Augment: augment})
			}
		})
	}
}
