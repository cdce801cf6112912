package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/flowerd/flowerd/clients"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// barWidth is the width of a progress bar's inside.
const barWidth = 20

// progressLine is a job's state in one line: variant, state, a bar of its
// epochs, the last epoch's metrics and the time left.
func progressLine(ev *flowerdpb.WatchJobResponse, bar bool) string {
	j := ev.GetJob()
	total := j.GetConfig().GetEpochs()
	var b strings.Builder
	fmt.Fprintf(&b, "%-7s %-9s", j.GetVariant(), shortState(j.GetState()))
	if bar {
		filled := 0
		if total > 0 {
			filled = int(int64(j.GetEpochsDone()) * barWidth / int64(total))
		}
		fmt.Fprintf(&b, " [%s%s]", strings.Repeat("#", filled), strings.Repeat(".", barWidth-filled))
	}
	fmt.Fprintf(&b, " epoch %d/%d", j.GetEpochsDone(), total)
	if e := j.GetLastEpoch(); e != nil {
		fmt.Fprintf(&b, "  loss %s acc %s  val loss %s acc %s  %s img/s",
			f3(e.GetLoss()), pct(e.GetAccuracy()), f3(e.GetValLoss()), pct(e.GetValAccuracy()), f1(e.GetImagesPerSec()))
		if e.GetVersion() > 0 {
			fmt.Fprintf(&b, "  v%d", e.GetVersion())
		}
	}
	switch {
	case clients.Ended(j.GetState()):
		if j.GetError() != "" {
			fmt.Fprintf(&b, "  (%s)", j.GetError())
		}
	case ev.GetEtaSeconds() > 0:
		fmt.Fprintf(&b, "  ETA %s", seconds(ev.GetEtaSeconds()))
	}
	return b.String()
}

// watched is one event of one of the watched jobs.
type watched struct {
	i   int
	ev  *flowerdpb.WatchJobResponse
	err error
}

// watchAll streams every job's events into one channel; each job's stream
// ends with a watched{i: i} marker. Its goroutines always send, never give
// up: the caller must read until every job's marker has come.
func watchAll(ctx context.Context, e *env, jobs []*flowerdpb.Job) <-chan watched {
	events := make(chan watched)
	for i, j := range jobs {
		go func() {
			for ev, err := range e.c.Watch(ctx, j.GetId()) {
				events <- watched{i, ev, err}
			}
			events <- watched{i: i}
		}()
	}
	return events
}

// watchJobs follows jobs until they all end. On a terminal it keeps one
// line per job and redraws them in place (\r, and the cursor moved up for
// several jobs); otherwise it prints a line per epoch and one at the end.
// A job that does not complete makes it return an error.
func watchJobs(ctx context.Context, e *env, jobs []*flowerdpb.Job) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := watchAll(ctx, e, jobs)
	p := &progress{w: e.out, tty: e.tty, json: e.json, lines: make([]string, len(jobs))}
	last := make([]*flowerdpb.Job, len(jobs))
	for i, j := range jobs {
		last[i] = j
		p.lines[i] = progressLine(&flowerdpb.WatchJobResponse{Job: j}, e.tty)
	}
	p.draw()
	var errs []error
	for open := len(jobs); open > 0; {
		w := <-events
		switch {
		case w.err != nil:
			if ctx.Err() == nil {
				errs = append(errs, w.err)
			}
		case w.ev != nil:
			last[w.i] = w.ev.GetJob()
			p.update(w.i, w.ev)
		default:
			open--
		}
	}
	p.finish()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stopped watching; the jobs keep running (flowerctl jobs; flowerctl cancel ID): %w", err)
	}
	for _, j := range last {
		if st := j.GetState(); clients.Ended(st) && st != flowerdpb.JobState_JOB_STATE_COMPLETED {
			errs = append(errs, fmt.Errorf("job %s of %s ended %s: %s", j.GetId(), j.GetVariant(), shortState(st), j.GetError()))
		}
	}
	return errors.Join(errs...)
}

// progress draws the watched jobs.
type progress struct {
	w     io.Writer
	tty   bool
	json  bool
	lines []string
	drawn bool
}

func (p *progress) update(i int, ev *flowerdpb.WatchJobResponse) {
	if p.json {
		printJSON(&env{out: p.w}, ev)
		return
	}
	p.lines[i] = progressLine(ev, p.tty)
	if p.tty {
		p.draw()
		return
	}
	// One line per epoch and one when the job ends; state changes in
	// between (queued -> running) are not worth a line.
	if ev.GetEpoch() != nil || clients.Ended(ev.GetJob().GetState()) {
		fmt.Fprintln(p.w, p.lines[i])
	}
}

// draw (re)writes every job's line on a terminal.
func (p *progress) draw() {
	if !p.tty || p.json {
		return
	}
	var b strings.Builder
	if p.drawn && len(p.lines) > 1 {
		fmt.Fprintf(&b, "\x1b[%dA", len(p.lines)-1) // back to the first line
	}
	for i, l := range p.lines {
		b.WriteString("\r" + l + "\x1b[K")
		if i < len(p.lines)-1 {
			b.WriteString("\n")
		}
	}
	p.drawn = true
	io.WriteString(p.w, b.String())
}

func (p *progress) finish() {
	if p.tty && p.drawn && !p.json {
		fmt.Fprintln(p.w)
	}
}
