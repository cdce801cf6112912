package dataset_test

import (
	"context"
	"errors"
	"hash/fnv"
	"iter"
	"math"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/flowerd/flowerd/model/dataset"
)

// rowKey identifies the image of row i of b by a hash of its pixels.
func rowKey(b dataset.Batch, i, px int) uint64 {
	h := fnv.New64a()
	row := b.Images[i*px : (i+1)*px]
	h.Write(unsafe.Slice((*byte)(unsafe.Pointer(&row[0])), len(row)*4))
	return h.Sum64()
}

func TestBatchesShapesAndCoverage(t *testing.T) {
	d := loadSmall(t, 1)
	px := d.ImageSize() * d.ImageSize() * 3
	n := d.Len(dataset.Train) // 18

	// The unshuffled epoch gives each file's key and label, in Files order.
	var keys []uint64
	var labels []int32
	for _, b := range collect(t, d, dataset.Train, dataset.BatchOptions{BatchSize: 1}) {
		keys = append(keys, rowKey(b, 0, px))
		labels = append(labels, b.Labels[0])
	}
	if len(keys) != n {
		t.Fatalf("BatchSize 1 gave %d batches; want %d", len(keys), n)
	}
	if !slices.IsSorted(labels) || labels[0] != 0 || labels[n-1] != 2 {
		t.Errorf("unshuffled labels = %v; want sorted, from 0 to 2", labels)
	}
	label := map[uint64]int32{}
	for i, k := range keys {
		if _, dup := label[k]; dup {
			t.Fatalf("two training images have the same pixels (row %d)", i)
		}
		label[k] = labels[i]
	}

	for _, tc := range []struct {
		batch   int
		shuffle bool
		augment bool
	}{
		{4, true, false}, {5, false, false}, {18, true, false}, {32, true, false}, {7, true, true},
	} {
		o := dataset.BatchOptions{BatchSize: tc.batch, Shuffle: tc.shuffle, Augment: tc.augment, Seed: 3, Epoch: 1}
		batches := collect(t, d, dataset.Train, o)
		if got, want := len(batches), d.NumBatches(dataset.Train, tc.batch); got != want || want != (n+tc.batch-1)/tc.batch {
			t.Errorf("%+v: %d batches, NumBatches = %d; want %d", o, got, want, (n+tc.batch-1)/tc.batch)
		}
		seen := map[uint64]int{}
		for bi, b := range batches {
			wantValid := min(tc.batch, n-bi*tc.batch)
			if len(b.Images) != tc.batch*px || len(b.Labels) != tc.batch || len(b.Weights) != tc.batch || b.Valid != wantValid {
				t.Fatalf("%+v: batch %d has %d pixels, %d labels, %d weights, Valid %d; want %d, %d, %d, %d",
					o, bi, len(b.Images), len(b.Labels), len(b.Weights), b.Valid, tc.batch*px, tc.batch, tc.batch, wantValid)
			}
			for i := range tc.batch {
				want := float32(0)
				if i < b.Valid {
					want = 1
				}
				if b.Weights[i] != want {
					t.Errorf("%+v: batch %d: Weights[%d] = %v; want %v", o, bi, i, b.Weights[i], want)
				}
				if i >= b.Valid {
					// Padding repeats a real row of the same batch.
					if j := i % b.Valid; b.Labels[i] != b.Labels[j] || rowKey(b, i, px) != rowKey(b, j, px) {
						t.Errorf("%+v: batch %d: padding row %d differs from row %d", o, bi, i, j)
					}
					continue
				}
				if tc.augment {
					continue
				}
				k := rowKey(b, i, px)
				l, ok := label[k]
				if !ok || l != b.Labels[i] {
					t.Errorf("%+v: batch %d row %d: label %d; the image is not a training image with that label", o, bi, i, b.Labels[i])
				}
				seen[k]++
			}
			for i, v := range b.Images {
				if !(v >= 0 && v <= 1) {
					t.Fatalf("%+v: batch %d: Images[%d] = %v; want within [0, 1]", o, bi, i, v)
				}
			}
		}
		if tc.augment {
			continue
		}
		for k, c := range seen {
			if c != 1 {
				t.Errorf("%+v: an image was seen %d times in an epoch; want once", o, c)
				_ = k
			}
		}
		if len(seen) != n {
			t.Errorf("%+v: %d distinct images in an epoch; want %d", o, len(seen), n)
		}
	}
}

// order returns the row keys of one epoch.
func order(t *testing.T, d *dataset.Dataset, o dataset.BatchOptions) []uint64 {
	px := d.ImageSize() * d.ImageSize() * 3
	var keys []uint64
	for _, b := range collect(t, d, dataset.Train, o) {
		for i := range b.Valid {
			keys = append(keys, rowKey(b, i, px))
		}
	}
	return keys
}

func TestBatchesOrder(t *testing.T) {
	d := loadSmall(t, 1)
	base := dataset.BatchOptions{BatchSize: 4, Shuffle: true, Seed: 5, Epoch: 3}
	ref := order(t, d, base)
	unshuffled := order(t, d, dataset.BatchOptions{BatchSize: 4})
	if slices.Equal(ref, unshuffled) {
		t.Errorf("shuffled order equals the unshuffled one")
	}
	for _, tc := range []struct {
		name string
		o    dataset.BatchOptions
		same bool
	}{
		{"same seed and epoch", base, true},
		{"other batch size", dataset.BatchOptions{BatchSize: 7, Shuffle: true, Seed: 5, Epoch: 3}, true},
		{"other epoch", dataset.BatchOptions{BatchSize: 4, Shuffle: true, Seed: 5, Epoch: 4}, false},
		{"other seed", dataset.BatchOptions{BatchSize: 4, Shuffle: true, Seed: 6, Epoch: 3}, false},
	} {
		if got := order(t, d, tc.o); slices.Equal(got, ref) != tc.same {
			t.Errorf("%s: order equal to %+v's = %v; want %v", tc.name, base, !tc.same, tc.same)
		}
	}
}

func TestBatchesAugment(t *testing.T) {
	d := loadSmall(t, 1)
	o := dataset.BatchOptions{BatchSize: 18, Augment: true, Seed: 1, Epoch: 0}
	plain := collect(t, d, dataset.Train, dataset.BatchOptions{BatchSize: 18})[0]
	aug := collect(t, d, dataset.Train, o)[0]
	again := collect(t, d, dataset.Train, o)[0]
	o.Epoch = 1
	next := collect(t, d, dataset.Train, o)[0]
	if !slices.Equal(aug.Images, again.Images) {
		t.Errorf("augmented batches differ for the same seed and epoch")
	}
	if slices.Equal(aug.Images, plain.Images) || slices.Equal(aug.Images, next.Images) {
		t.Errorf("augmented batch equals the plain one or the next epoch's")
	}
	if !slices.Equal(aug.Labels, plain.Labels) {
		t.Errorf("augmented labels = %v; want %v", aug.Labels, plain.Labels)
	}
	// Augmentation keeps the picture: the mean colour barely moves.
	px := d.ImageSize() * d.ImageSize() * 3
	for i := range aug.Valid {
		var ma, mp float64
		for j := i * px; j < (i+1)*px; j++ {
			ma += float64(aug.Images[j])
			mp += float64(plain.Images[j])
		}
		if diff := math.Abs(ma-mp) / float64(px); diff > 0.25 {
			t.Errorf("row %d: mean pixel moved by %.3f under augmentation; want < 0.25", i, diff)
		}
	}
}

func TestBatchesInvalid(t *testing.T) {
	d := loadSmall(t, 1)
	for _, tc := range []struct {
		s dataset.Split
		o dataset.BatchOptions
	}{
		{dataset.Train, dataset.BatchOptions{}},
		{dataset.Train, dataset.BatchOptions{BatchSize: -1}},
		{dataset.Split(3), dataset.BatchOptions{BatchSize: 1}},
	} {
		if _, err := d.Batches(context.Background(), tc.s, tc.o); !errors.Is(err, dataset.ErrInvalidOptions) {
			t.Errorf("Batches(%v, %+v) = %v; want %v", tc.s, tc.o, err, dataset.ErrInvalidOptions)
		}
	}
}

// settle waits for the number of goroutines to drop to want.
func settle(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > want {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after the epoch ended; want %d:\n%s", got, want, buf[:runtime.Stack(buf, true)])
	}
}

func TestBatchesStopsPrefetcher(t *testing.T) {
	d := loadSmall(t, 1)
	o := dataset.BatchOptions{BatchSize: 2, Shuffle: true}
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context, cancel context.CancelFunc, seq iter.Seq[dataset.Batch]) int
		want int // batches consumed
	}{
		{"cancel in the loop", func(ctx context.Context, cancel context.CancelFunc, seq iter.Seq[dataset.Batch]) int {
			n := 0
			for range seq {
				n++
				if n == 2 {
					cancel()
				}
			}
			return n
		}, 2},
		{"cancel from another goroutine", func(ctx context.Context, cancel context.CancelFunc, seq iter.Seq[dataset.Batch]) int {
			n := 0
			for range seq {
				n++
				if n == 1 {
					go cancel()
					<-ctx.Done()
					time.Sleep(20 * time.Millisecond) // let the prefetcher see it
				}
			}
			return n
		}, 1},
		{"break", func(ctx context.Context, cancel context.CancelFunc, seq iter.Seq[dataset.Batch]) int {
			n := 0
			for range seq {
				n++
				break
			}
			return n
		}, 1},
		{"pull then stop", func(ctx context.Context, cancel context.CancelFunc, seq iter.Seq[dataset.Batch]) int {
			next, stop := iter.Pull(seq)
			defer stop()
			_, ok := next()
			if !ok {
				return 0
			}
			return 1
		}, 1},
		{"cancelled before", func(ctx context.Context, cancel context.CancelFunc, seq iter.Seq[dataset.Batch]) int {
			cancel()
			n := 0
			for range seq {
				n++
			}
			return n
		}, 0},
		{"whole epoch", func(ctx context.Context, cancel context.CancelFunc, seq iter.Seq[dataset.Batch]) int {
			n := 0
			for range seq {
				n++
			}
			return n
		}, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			seq, err := d.Batches(ctx, dataset.Train, o)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.run(ctx, cancel, seq); got != tc.want {
				t.Errorf("consumed %d batches; want %d", got, tc.want)
			}
			settle(t, before)
		})
	}
}

func TestBatchesEmptySplit(t *testing.T) {
	d := loadSmall(t, 1)
	opts := smallOptions(t, 1)
	opts.ValPerClass, opts.Classes = 0, []string{"daisy"}
	d, err := dataset.Load(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, d, dataset.Val, dataset.BatchOptions{BatchSize: 4}); len(got) != 0 || d.Len(dataset.Val) != 0 {
		t.Errorf("empty split: %d batches, Len %d; want 0, 0", len(got), d.Len(dataset.Val))
	}
}
