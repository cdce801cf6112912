package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowerd/flowerd/clients"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// The study's defaults. -epochs is a cap, not the budget itself: the
// plateau rule (-patience) ends each variant's training once its best
// validation accuracy has not improved for that many epochs. See studyHelp.
const (
	defaultStudyEpochs   = 100
	defaultStudyPatience = 10
	defaultStudySeed     = 1
	defaultStudyProbes   = 50
	defaultStudyOut      = "docs/study"
	studyMaxRuns         = 1000 // runs of a variant GetHistory returns, enough for any resumed lineage
)

// studyHelp is study's -h text: what it does and how the budget was chosen.
const studyHelp = `train every variant, evaluate it on the test split, write the study's report and Figure 2 (-out)

Trains each variant the server serves (one job per variant, the study's
hyperparameters unless flags say otherwise, a checkpoint per epoch), watches
the jobs, evaluates each variant's last checkpoint on the held-out TEST split,
measures Classify latency with -probes calls per variant, and writes -out/README.md
(the study's table, test top-1/top-5 with 95% Wilson score intervals, the
validation accuracy each variant reached in equal training time, the
point-by-point comparison with the study's conclusions, hardware and versions)
and -out/figure2.png. Every number comes from the server: the store's histories
and checkpoints and the evaluations of those checkpoints, so -skip-train
regenerates the report from the store (only the latency table is re-measured).

Budget: -epochs is a cap; the plateau rule stops a variant once its best
validation accuracy has not improved for -patience epochs (the job is
cancelled; the finished epochs stay checkpointed). Why 100 and 10: this
repository records no epoch count of the study; on the 60/10/10 split an
improvement in val accuracy is at least one image of 170 (0.6 points), and
momentum SGD at lr 0.001 from scratch is expected to need tens of epochs to
level off, so 10 epochs without a new best is a plateau that a short lull
does not fake, and 100 is a cap the rule should stop well before. The report marks a variant that was still improving when
it stopped (best within the last -patience epochs): raise -epochs and run
again with -from-scratch=false to resume it. -patience 0 trains exactly
-epochs.`

// studyCmd trains the variants, evaluates them and writes the report.
type studyCmd struct {
	epochs, patience, batch, probes int
	seed                            int64
	fromScratch, skipTrain          bool
	out                             string
}

func parseStudy(fs *flag.FlagSet) func([]string) (runner, error) {
	c := &studyCmd{}
	fs.IntVar(&c.epochs, "epochs", defaultStudyEpochs, "most epochs per variant (counting resumed ones); the plateau rule may stop earlier")
	fs.IntVar(&c.patience, "patience", defaultStudyPatience, "stop a variant when its best validation accuracy has not improved for this many epochs; 0: train all -epochs")
	fs.IntVar(&c.batch, "batch-size", 0, "batch size; 0: the server's (64, the study's)")
	fs.Int64Var(&c.seed, "seed", defaultStudySeed, "seed of the training order of from-scratch runs (resumed runs keep theirs)")
	fs.BoolVar(&c.fromScratch, "from-scratch", true, "start every variant from its seeded initial weights; false resumes each variant's newest run up to -epochs (or not at all if it reached a plateau)")
	fs.BoolVar(&c.skipTrain, "skip-train", false, "train nothing: regenerate the report from the store")
	fs.IntVar(&c.probes, "probes", defaultStudyProbes, "Classify calls per variant before reading the latency percentiles; 0: none")
	fs.StringVar(&c.out, "out", defaultStudyOut, "folder of the report (README.md, figure2.png); created if missing")
	return func(args []string) (runner, error) {
		if err := noArgs("study", args); err != nil {
			return nil, err
		}
		switch {
		case c.epochs < 1:
			return nil, usagef("study: -epochs %d: want at least 1", c.epochs)
		case c.patience < 0:
			return nil, usagef("study: -patience %d: want 0 or more", c.patience)
		case c.batch < 0:
			return nil, usagef("study: -batch-size %d: want 0 or more", c.batch)
		case c.probes < 0:
			return nil, usagef("study: -probes %d: want 0 or more", c.probes)
		case c.out == "":
			return nil, usagef("study: -out: name a folder")
		}
		return c, nil
	}
}

// commandLine is the study command that reproduces this one.
func (c *studyCmd) commandLine() string {
	s := fmt.Sprintf("flowerctl study -epochs %d -patience %d -batch-size %d -seed %d -from-scratch=%v -probes %d -out %s",
		c.epochs, c.patience, c.batch, c.seed, c.fromScratch, c.probes, c.out)
	if c.skipTrain {
		s += " -skip-train"
	}
	return s
}

func (c *studyCmd) run(ctx context.Context, e *env) error {
	models, err := waitLoaded(ctx, e)
	if err != nil {
		return err
	}
	if !c.skipTrain {
		if err := c.train(ctx, e, models.GetModels()); err != nil {
			return err
		}
	}
	rows, err := c.collect(ctx, e, models.GetModels())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return fmt.Errorf("study: %w", err)
	}
	series := make([]historySeries, len(rows))
	for i, r := range rows {
		series[i] = historySeries{label: r.variant, epochs: r.epochs}
	}
	var fig bytes.Buffer
	if err := plotFigure2(&fig, series); err != nil {
		return fmt.Errorf("study: %w", err)
	}
	if err := os.WriteFile(filepath.Join(c.out, studyFigure), fig.Bytes(), 0o644); err != nil {
		return fmt.Errorf("study: %w", err)
	}
	_, err = os.Stat(filepath.Join(c.out, studyNotes))
	var rep bytes.Buffer
	writeStudyReport(&rep, studyReport{rows: rows, backend: models.GetBackend(), command: c.commandLine(),
		patience: c.patience, host: hostInfo(), notes: err == nil})
	report := filepath.Join(c.out, studyReportFile)
	if err := os.WriteFile(report, rep.Bytes(), 0o644); err != nil {
		return fmt.Errorf("study: %w", err)
	}
	if e.json {
		return nil
	}
	_, err = fmt.Fprintf(e.out, "wrote %s and %s (%d variants)\n", report, filepath.Join(c.out, studyFigure), len(rows))
	return err
}

// train starts a job per variant that still needs epochs and watches them,
// cancelling each once it plateaus.
func (c *studyCmd) train(ctx context.Context, e *env, models []*flowerdpb.Model) error {
	var jobs []*flowerdpb.Job
	var prior [][]float64 // validation accuracies each job's run continues
	for _, m := range models {
		req := &flowerdpb.TrainRequest{Variant: m.GetName(), Epochs: int32(c.epochs), BatchSize: int32(c.batch),
			Seed: c.seed, FromScratch: true, Publish: flowerdpb.PublishPolicy_PUBLISH_POLICY_EACH_EPOCH}
		var vals []float64
		if !c.fromScratch {
			runs, err := e.c.History(ctx, &flowerdpb.GetHistoryRequest{Variant: m.GetName(), MaxRuns: studyMaxRuns})
			if err != nil {
				return err
			}
			_, epochs := lineage(runs)
			vals = valAccuracies(epochs)
			if len(epochs) >= c.epochs || plateaued(vals, c.patience) {
				if !e.json {
					fmt.Fprintf(e.out, "%s: %d epochs in the store, %s; not training\n", m.GetName(), len(epochs), stopReason(vals, c.patience, c.epochs))
				}
				continue
			}
			// Resume from the served version and keep the run's order.
			req.Epochs, req.Seed, req.FromScratch = int32(c.epochs-len(epochs)), 0, false
		}
		started, err := e.c.Train(ctx, req)
		if err != nil {
			// Half a study is no study: stop the jobs this one started,
			// which nobody would watch or stop at their plateau.
			for _, j := range jobs {
				if _, cerr := e.c.Cancel(ctx, j.GetId()); cerr != nil && status.Code(cerr) != codes.FailedPrecondition {
					err = errors.Join(err, fmt.Errorf("cancel job %s of %s: %w", j.GetId(), j.GetVariant(), cerr))
				}
			}
			return err
		}
		for _, j := range started {
			if !e.json {
				fmt.Fprintf(e.out, "started job %s: %s, up to %d epochs\n", j.GetId(), j.GetVariant(), j.GetConfig().GetEpochs())
			}
			jobs = append(jobs, j)
			prior = append(prior, vals)
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	if err := c.watch(ctx, e, jobs, prior); err != nil {
		if !e.json {
			fmt.Fprintln(e.out, "study: the finished epochs are in the store; flowerctl study -skip-train writes the report from them")
		}
		return err
	}
	return nil
}

// loadPoll is how often waitLoaded asks whether the variants have loaded.
const loadPoll = 500 * time.Millisecond

// waitLoaded lists the variants once none is loading any more (a server
// just started loads them in the background) and fails if one failed.
func waitLoaded(ctx context.Context, e *env) (*flowerdpb.ListModelsResponse, error) {
	for {
		models, err := e.c.Models(ctx)
		if err != nil {
			return nil, err
		}
		if len(models.GetModels()) == 0 {
			return nil, errors.New("study: the server serves no variant")
		}
		loading := false
		for _, m := range models.GetModels() {
			switch m.GetStatus() {
			case flowerdpb.ModelStatus_MODEL_STATUS_LOADING:
				loading = true
			case flowerdpb.ModelStatus_MODEL_STATUS_FAILED:
				return nil, fmt.Errorf("study: %s failed to load: %s", m.GetName(), m.GetStatusMessage())
			}
		}
		if !loading {
			return models, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("study: waiting for the variants to load: %w", ctx.Err())
		case <-time.After(loadPoll):
		}
	}
}

// stopReason says why a variant with validation accuracies vals trains no
// further.
func stopReason(vals []float64, patience, epochs int) string {
	if plateaued(vals, patience) {
		b := bestIndex(vals)
		return fmt.Sprintf("plateaued (best %s at epoch %d, none better in %d epochs)", f3(vals[b]), b+1, len(vals)-1-b)
	}
	return fmt.Sprintf("reached -epochs %d", epochs)
}

// watch follows the jobs as watchJobs does and cancels a job once its
// validation accuracy (prior's, then the job's epochs) plateaus. A job
// cancelled so is not an error; one that ends otherwise short of COMPLETED
// is.
func (c *studyCmd) watch(ctx context.Context, e *env, jobs []*flowerdpb.Job, prior [][]float64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := watchAll(ctx, e, jobs)
	p := &progress{w: e.out, tty: e.tty, json: e.json, lines: make([]string, len(jobs))}
	last := make([]*flowerdpb.Job, len(jobs))
	vals := make([][]float64, len(jobs))
	stopped := make([]string, len(jobs)) // why the plateau rule cancelled the job
	for i, j := range jobs {
		last[i] = j
		vals[i] = append([]float64(nil), prior[i]...)
		p.lines[i] = progressLine(&flowerdpb.WatchJobResponse{Job: j}, e.tty)
	}
	p.draw()
	var mu sync.Mutex
	var errs []error
	var cancels sync.WaitGroup
	for open := len(jobs); open > 0; {
		w := <-events
		switch {
		case w.err != nil:
			if ctx.Err() == nil {
				mu.Lock()
				errs = append(errs, w.err)
				mu.Unlock()
			}
		case w.ev != nil:
			last[w.i] = w.ev.GetJob()
			p.update(w.i, w.ev)
			if ep := w.ev.GetEpoch(); ep != nil && stopped[w.i] == "" {
				vals[w.i] = append(vals[w.i], ep.GetValAccuracy())
				if plateaued(vals[w.i], c.patience) && !clients.Ended(w.ev.GetJob().GetState()) {
					stopped[w.i] = stopReason(vals[w.i], c.patience, c.epochs)
					id := w.ev.GetJob().GetId()
					cancels.Go(func() {
						// Cancel waits for the job to stop: not on this loop,
						// which must keep reading the events.
						_, err := e.c.Cancel(ctx, id)
						if err != nil && status.Code(err) != codes.FailedPrecondition { // it ended meanwhile
							mu.Lock()
							errs = append(errs, err)
							mu.Unlock()
						}
					})
				}
			}
		default:
			open--
		}
	}
	cancels.Wait()
	p.finish()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stopped watching; the jobs keep running (flowerctl jobs; flowerctl cancel ID): %w", err)
	}
	for i, j := range last {
		st := j.GetState()
		switch {
		case stopped[i] != "" && (st == flowerdpb.JobState_JOB_STATE_CANCELLED || st == flowerdpb.JobState_JOB_STATE_COMPLETED):
			if !e.json {
				fmt.Fprintf(e.out, "%s: stopped at epoch %d: %s\n", j.GetVariant(), len(vals[i]), stopped[i])
			}
		case clients.Ended(st) && st != flowerdpb.JobState_JOB_STATE_COMPLETED:
			errs = append(errs, fmt.Errorf("job %s of %s ended %s: %s", j.GetId(), j.GetVariant(), shortState(st), j.GetError()))
		}
	}
	return errors.Join(errs...)
}

// studyRow is what the report says of one variant, all of it from the
// server.
type studyRow struct {
	variant string
	model   *flowerdpb.Model
	runs    []*flowerdpb.Run          // the lineage, oldest first
	epochs  []*flowerdpb.EpochMetrics // its epochs in order
	eval    *flowerdpb.Evaluation     // on the test split; nil without epochs
	compare *flowerdpb.VariantComparison
}

// collect reads each variant's lineage, evaluates its last checkpoint on
// the test split, probes Classify and reads the latency percentiles.
func (c *studyCmd) collect(ctx context.Context, e *env, models []*flowerdpb.Model) ([]*studyRow, error) {
	var rows []*studyRow
	for _, m := range models {
		r := &studyRow{variant: m.GetName(), model: m}
		runs, err := e.c.History(ctx, &flowerdpb.GetHistoryRequest{Variant: m.GetName(), MaxRuns: studyMaxRuns})
		if err != nil {
			return nil, err
		}
		r.runs, r.epochs = lineage(runs)
		if n := len(r.epochs); n > 0 {
			// The weights after the last epoch, as the study reports; version
			// 0 (an epoch without a checkpoint) means the served one.
			evals, err := e.c.Evaluate(ctx, &flowerdpb.EvaluateRequest{Variant: m.GetName(),
				Split: flowerdpb.Split_SPLIT_TEST, Version: r.epochs[n-1].GetVersion()})
			if err != nil {
				return nil, err
			}
			if len(evals) == 1 {
				r.eval = evals[0]
			}
		}
		rows = append(rows, r)
	}
	if c.probes > 0 {
		probe := probeImage()
		for _, r := range rows {
			for range c.probes {
				if _, err := e.c.ClassifyTopK(ctx, r.variant, 1, clients.Image{Name: "probe", Data: probe}); err != nil {
					return nil, err
				}
			}
		}
	}
	cmp, err := e.c.Compare(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		for _, row := range cmp {
			if row.GetVariant() == r.variant {
				r.compare = row
			}
		}
	}
	return rows, nil
}

// probeImage is a 256x256 PNG with a smooth colour pattern: an input for
// latency, whose content does not change the cost of a forward pass.
func probeImage() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 256, 256))
	for y := range 256 {
		for x := range 256 {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var b bytes.Buffer
	png.Encode(&b, img) // writing to memory does not fail
	return b.Bytes()
}

// lineage picks a variant's study run out of its runs (newest first): the
// newest run with epochs and, while its first epoch is not 1 (it resumed),
// the run it continued: the one named by its from_run, whose epochs from
// the resumed run's first on are dropped (a crash can record an epoch whose
// checkpoint never committed; the resumed run records it again); or, for
// runs recorded before from_run existed, the newest older run whose last
// epoch is just before it. It returns them oldest first, with their epochs
// in order.
func lineage(runs []*flowerdpb.Run) ([]*flowerdpb.Run, []*flowerdpb.EpochMetrics) {
	byID := make(map[string]*flowerdpb.Run, len(runs))
	for _, r := range runs {
		byID[r.GetRunId()] = r
	}
	var chain []*flowerdpb.Run            // newest first
	var parts [][]*flowerdpb.EpochMetrics // each chain run's epochs it contributes
	i := slices.IndexFunc(runs, func(r *flowerdpb.Run) bool { return len(r.GetEpochs()) > 0 })
	if i < 0 {
		return nil, nil
	}
	cur, es := runs[i], runs[i].GetEpochs()
	for {
		chain, parts = append(chain, cur), append(parts, es)
		next := es[0].GetEpoch() // the first epoch of cur's part
		if next <= 1 {
			break
		}
		var prev *flowerdpb.Run
		if id := cur.GetFromRun(); id != "" {
			prev = byID[id]
			if prev == nil || slices.Contains(chain, prev) {
				break // not among the runs read, or a loop: the lineage ends here
			}
			es = slices.DeleteFunc(slices.Clone(prev.GetEpochs()), func(e *flowerdpb.EpochMetrics) bool { return e.GetEpoch() >= next })
		} else {
			for _, r := range runs[i+1:] {
				if pe := r.GetEpochs(); len(pe) > 0 && pe[len(pe)-1].GetEpoch() == next-1 {
					prev, es = r, pe
					break
				}
			}
		}
		if prev == nil || len(es) == 0 {
			break
		}
		cur, i = prev, slices.Index(runs, prev)
	}
	var epochs []*flowerdpb.EpochMetrics
	for j := len(chain) - 1; j >= 0; j-- {
		epochs = append(epochs, parts[j]...)
	}
	slices.Reverse(chain)
	return chain, epochs
}

func valAccuracies(epochs []*flowerdpb.EpochMetrics) []float64 {
	v := make([]float64, len(epochs))
	for i, e := range epochs {
		v[i] = e.GetValAccuracy()
	}
	return v
}

// bestIndex is the index of the first maximum of vals (a later epoch must
// beat it to count as an improvement); -1 for none.
func bestIndex(vals []float64) int {
	b := -1
	for i, v := range vals {
		if b < 0 || v > vals[b] {
			b = i
		}
	}
	return b
}

// plateaued reports whether the best of vals is at least patience epochs
// old: the plateau rule. Patience 0 never plateaus.
func plateaued(vals []float64, patience int) bool {
	if patience <= 0 || len(vals) == 0 {
		return false
	}
	return len(vals)-1-bestIndex(vals) >= patience
}
