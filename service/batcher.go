package service

import (
	"context"
	"fmt"
	"time"

	"github.com/flowerd/flowerd/model"
)

// batcher merges concurrent Classify requests for one variant into one
// forward pass. It takes the first waiting request, adds the ones already
// queued behind it (and, with maxWait > 0, those arriving within maxWait) up
// to maxBatch images, runs them on the published weights, and fans the rows
// back out. An idle variant runs a lone request at once, so batching costs a
// single client nothing; under load, requests queue while a pass runs and
// the next pass takes them together.
type batcher struct {
	m        *model.Model
	maxBatch int
	maxWait  time.Duration
	in       chan *pending
	stopped  chan struct{}
}

// pending is one request waiting for its rows.
type pending struct {
	ctx    context.Context
	images []float32
	n      int
	out    chan batchResult
}

type batchResult struct {
	probs   [][]float32
	version int64
	batch   int // images in the forward pass that answered
	err     error
}

func newBatcher(m *model.Model, maxBatch int, maxWait time.Duration) *batcher {
	return &batcher{m: m, maxBatch: maxBatch, maxWait: maxWait, in: make(chan *pending), stopped: make(chan struct{})}
}

// predict queues a request and waits for its rows.
func (b *batcher) predict(ctx context.Context, images []float32, n int) (batchResult, error) {
	p := &pending{ctx: ctx, images: images, n: n, out: make(chan batchResult, 1)}
	select {
	case b.in <- p:
	case <-ctx.Done():
		return batchResult{}, ctx.Err()
	case <-b.stopped:
		return batchResult{}, errShuttingDown
	}
	select {
	case r := <-p.out:
		return r, r.err
	case <-ctx.Done():
		return batchResult{}, ctx.Err()
	}
}

// run serves requests until ctx is done.
func (b *batcher) run(ctx context.Context) {
	defer close(b.stopped)
	var next *pending
	for {
		first := next
		next = nil
		if first == nil {
			select {
			case first = <-b.in:
			case <-ctx.Done():
				return
			}
		}
		group, total := []*pending{first}, first.n
		var deadline <-chan time.Time
		var timer *time.Timer
		if b.maxWait > 0 {
			timer = time.NewTimer(b.maxWait)
			deadline = timer.C
		}
	collect:
		for total < b.maxBatch {
			var p *pending
			if deadline == nil {
				select {
				case p = <-b.in:
				default:
					break collect
				}
			} else {
				select {
				case p = <-b.in:
				case <-deadline:
					break collect
				}
			}
			if total+p.n > b.maxBatch {
				next = p // starts the next pass
				break
			}
			group, total = append(group, p), total+p.n
		}
		if timer != nil {
			timer.Stop()
		}
		b.pass(ctx, group)
	}
}

// pass runs one forward pass for a group of requests.
func (b *batcher) pass(ctx context.Context, group []*pending) {
	live := group[:0]
	total := 0
	for _, p := range group {
		if err := p.ctx.Err(); err != nil {
			p.out <- batchResult{err: err}
			continue
		}
		live = append(live, p)
		total += p.n
	}
	if len(live) == 0 {
		return
	}
	images := live[0].images
	if len(live) > 1 {
		images = make([]float32, 0, total*len(live[0].images)/live[0].n)
		for _, p := range live {
			images = append(images, p.images...)
		}
	}
	served := b.m.Served()
	probs, err := served.Predict(ctx, images, total)
	if err != nil {
		err = fmt.Errorf("forward pass of %d images: %w", total, err)
	}
	row := 0
	for _, p := range live {
		r := batchResult{version: served.Version(), batch: total, err: err}
		if err == nil {
			r.probs = probs[row : row+p.n]
		}
		row += p.n
		p.out <- r
	}
}
