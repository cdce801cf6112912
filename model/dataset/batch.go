package dataset

import (
	"context"
	"fmt"
	"iter"
	"math/rand/v2"
)

// BatchOptions configure Batches.
type BatchOptions struct {
	// BatchSize is the number of rows of every batch; required.
	BatchSize int
	// Shuffle visits the split in a permutation drawn from (Seed, Epoch),
	// instead of in the order of Files.
	Shuffle bool
	// Seed and Epoch select the shuffle order and the augmentation, so that
	// resuming at epoch E gives exactly the batches of an unbroken run.
	Seed  int64
	Epoch int
	// Augment applies a random horizontal flip and a random crop (80 to 100%
	// of each side, anywhere in the image) resized back to full size, drawn
	// per (Seed, Epoch, example). Off by default, as in the study.
	Augment bool
}

// Batch is one batch of examples. Every batch of a call to Batches has
// BatchSize rows, so that the graph that consumes it keeps its shapes.
type Batch struct {
	// Images holds BatchSize x H x W x 3 pixels in [0, 1] (NHWC). Each batch
	// has its own slice; the consumer owns it.
	Images []float32
	// Labels holds the class index of each row.
	Labels []int32
	// Weights is 1 for a real row and 0 for a padding row.
	Weights []float32
	// Valid is the number of real rows, which come first; the rest of the
	// last batch of an epoch repeats real examples of that batch.
	Valid int
}

// NumBatches returns the number of batches of batchSize in one epoch of s.
func (d *Dataset) NumBatches(s Split, batchSize int) int {
	if batchSize < 1 {
		return 0
	}
	return (d.Len(s) + batchSize - 1) / batchSize
}

// Batches returns one epoch of split s as fixed-size batches. While the
// consumer works on a batch, a goroutine started by the range loop prepares
// the next; the loop waits for it to stop when the
// range loop ends, by exhaustion, break or ctx being cancelled (the caller
// tells a cancelled epoch from a finished one by ctx.Err()). Each range over
// the sequence yields the same batches.
func (d *Dataset) Batches(ctx context.Context, s Split, o BatchOptions) (iter.Seq[Batch], error) {
	if s < 0 || s >= numSplits {
		return nil, fmt.Errorf("batches: %w: unknown split %v", ErrInvalidOptions, s)
	}
	if o.BatchSize < 1 {
		return nil, fmt.Errorf("batches: %w: batch size %d, want at least 1", ErrInvalidOptions, o.BatchSize)
	}
	return func(yield func(Batch) bool) {
		n := d.Len(s)
		if n == 0 {
			return
		}
		order := make([]int, n)
		for i := range order {
			order[i] = i
		}
		if o.Shuffle {
			order = permutation(rand.NewPCG(uint64(o.Seed), mix(domainShuffle, uint64(s), uint64(o.Epoch))), n)
		}
		ctx, cancel := context.WithCancel(ctx)
		ch := make(chan Batch)
		go func() {
			defer close(ch)
			for start := 0; start < n; start += o.BatchSize {
				b := d.batch(s, order[start:min(start+o.BatchSize, n)], o)
				select {
				case ch <- b:
				case <-ctx.Done():
					return
				}
			}
		}()
		defer func() {
			cancel()
			for range ch { // wait for the producer to exit
			}
		}()
		for b := range ch {
			if ctx.Err() != nil || !yield(b) {
				return
			}
		}
	}, nil
}

// batch builds the batch of the examples at indices rows of split s, padded
// to o.BatchSize rows by repeating them.
func (d *Dataset) batch(s Split, rows []int, o BatchOptions) Batch {
	px := d.size * d.size * 3
	b := Batch{
		Images:  make([]float32, o.BatchSize*px),
		Labels:  make([]int32, o.BatchSize),
		Weights: make([]float32, o.BatchSize),
		Valid:   len(rows),
	}
	var aug augmenter
	for i := range o.BatchSize {
		idx := rows[i%len(rows)]
		e := &d.splits[s][idx]
		b.Labels[i] = e.label
		if i < len(rows) {
			b.Weights[i] = 1
		}
		dst := b.Images[i*px : (i+1)*px]
		if o.Augment {
			r := rand.NewPCG(uint64(o.Seed), mix(domainAugment, uint64(s), uint64(o.Epoch), uint64(idx)))
			aug.apply(dst, e.pix, d.size, r)
			continue
		}
		for j, v := range e.pix {
			dst[j] = byteToFloat[v]
		}
	}
	return b
}

// augmenter flips and crops images; it keeps its sampling tables between
// calls.
type augmenter struct {
	x0, x1, y0, y1 []int
	wx, wy         []float32
}

// Crop side range, as a fraction of the image side.
const minCrop, maxCrop = 0.8, 1.0

// apply writes to dst the image src (size x size x 3 bytes), flipped
// horizontally with probability 1/2 and cropped to a random square of
// minCrop..maxCrop of its side, resized back to size x size bilinearly,
// scaled to [0, 1].
func (a *augmenter) apply(dst []float32, src []uint8, size int, r *rand.PCG) {
	flip := r.Uint64()&1 == 1
	side := float64(size) * (minCrop + (maxCrop-minCrop)*float01(r))
	offX := (float64(size) - side) * float01(r)
	offY := (float64(size) - side) * float01(r)
	a.x0, a.x1, a.wx = axis(a.x0, a.x1, a.wx, size, side, offX, flip)
	a.y0, a.y1, a.wy = axis(a.y0, a.y1, a.wy, size, side, offY, false)
	for y := range size {
		r0 := src[a.y0[y]*size*3:]
		r1 := src[a.y1[y]*size*3:]
		wy := a.wy[y]
		out := dst[y*size*3 : (y+1)*size*3]
		for x := range size {
			i0, i1, wx := a.x0[x]*3, a.x1[x]*3, a.wx[x]
			for c := range 3 {
				top := float32(r0[i0+c]) + wx*(float32(r0[i1+c])-float32(r0[i0+c]))
				bot := float32(r1[i0+c]) + wx*(float32(r1[i1+c])-float32(r1[i0+c]))
				out[x*3+c] = (top + wy*(bot-top)) * (1.0 / 255)
			}
		}
	}
}

// axis computes, for each output coordinate along one axis, the two source
// pixels and the weight of the second, for a crop of length side starting
// at off, optionally mirrored.
func axis(i0, i1 []int, w []float32, size int, side, off float64, flip bool) ([]int, []int, []float32) {
	i0, i1, w = i0[:0], i1[:0], w[:0]
	scale := side / float64(size)
	for o := range size {
		if flip {
			o = size - 1 - o
		}
		s := off + (float64(o)+0.5)*scale - 0.5
		s = max(0, min(s, float64(size-1)))
		lo := int(s)
		hi := min(lo+1, size-1)
		i0, i1, w = append(i0, lo), append(i1, hi), append(w, float32(s-float64(lo)))
	}
	return i0, i1, w
}
