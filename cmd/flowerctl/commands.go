package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/flowerd/flowerd/clients"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// commands lists the subcommands in the order -h shows them.
var commands = []command{
	{"classify", "classify FILE...", "top-k classes of each image per variant", parseClassify},
	{"train", "train", "start training and watch it (-variant, -epochs, -publish each|end, ...)", parseTrain},
	{"jobs", "jobs", "list training jobs, newest first", parseJobs},
	{"cancel", "cancel ID...", "cancel queued or running jobs", parseCancel},
	{"evaluate", "evaluate", "measure variants on the val or test split", parseEvaluate},
	{"history", "history", "per-epoch metrics of a variant's runs (-csv for CSV; -plot out.png draws Figure 2)", parseHistory},
	{"compare", "compare", "what each variant costs and buys", parseCompare},
	{"models", "models", "the served variants and their versions", parseModels},
	{"pin", "pin", "pin the version a variant serves (-version N), or -unpin (alias: serve-version)", parsePin},
	{"feedback", "feedback FILE", "store a labelled image for fine-tuning (-label)", parseFeedback},
	{"study", "study", studyHelp, parseStudy},
}

// aliases are other names of commands: the old name of pin.
var aliases = map[string]string{"serve-version": "pin"}

// printJSON writes messages as protojson, one value after the other (jq
// reads such a stream).
func printJSON(e *env, msgs ...proto.Message) error {
	for _, m := range msgs {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode json: %w", err)
		}
		if _, err := fmt.Fprintf(e.out, "%s\n", b); err != nil {
			return err
		}
	}
	return nil
}

func noArgs(name string, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", name, args)
	}
	return nil
}

// classify

type classifyCmd struct {
	variant string
	k       int
	files   []string
}

func parseClassify(fs *flag.FlagSet) func([]string) (runner, error) {
	c := &classifyCmd{}
	fs.StringVar(&c.variant, "variant", clients.AllVariants, `variant to ask, or "all"`)
	fs.IntVar(&c.k, "k", 3, "classes per image and variant, 1 to 17")
	return func(args []string) (runner, error) {
		if len(args) == 0 {
			return nil, usagef("classify: name at least one JPEG or PNG file")
		}
		if c.k < 1 || c.k > 17 {
			return nil, usagef("classify: -k %d: want 1 to 17", c.k)
		}
		c.files = args
		return c, nil
	}
}

func (c *classifyCmd) run(ctx context.Context, e *env) error {
	imgs := make([]clients.Image, len(c.files))
	for i, f := range c.files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("classify: %w", err)
		}
		imgs[i] = clients.Image{Name: f, Data: data}
	}
	resp, err := e.c.ClassifyTopK(ctx, c.variant, c.k, imgs...)
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e, resp)
	}
	return writeClassify(e.out, resp)
}

// train

type trainCmd struct {
	req    *flowerdpb.TrainRequest
	detach bool
}

func parseTrain(fs *flag.FlagSet) func([]string) (runner, error) {
	t := &trainCmd{req: &flowerdpb.TrainRequest{}}
	r := t.req
	var epochs, batch int
	var publish string
	fs.StringVar(&r.Variant, "variant", clients.AllVariants, `variant to train, or "all" for one job per variant`)
	fs.IntVar(&epochs, "epochs", 1, "epochs to run")
	fs.IntVar(&batch, "batch-size", 0, "batch size; 0: the server's (64)")
	fs.Float64Var(&r.LearningRate, "lr", 0, "learning rate; 0: the server's (0.001)")
	fs.Float64Var(&r.Momentum, "momentum", 0, "momentum; 0: the server's (0.9)")
	fs.Int64Var(&r.Seed, "seed", 0, "seed of the training order; 0 keeps the resumed state's")
	fs.BoolVar(&r.FromScratch, "from-scratch", false, "start from the seeded initial weights instead of the served version")
	fs.BoolVar(&r.UseFeedback, "feedback", false, "mix the stored feedback images into the training split")
	fs.BoolVar(&r.Augment, "augment", false, "random flips and crops")
	fs.StringVar(&r.DatasetDir, "dataset", "", "dataset folder on the server; empty: the server's")
	fs.StringVar(&publish, "publish", "each", "publish (checkpoint and serve) after each epoch, or only at the end: each|end")
	fs.BoolVar(&t.detach, "detach", false, "start the jobs and return without watching")
	return func(args []string) (runner, error) {
		if err := noArgs("train", args); err != nil {
			return nil, err
		}
		if epochs < 1 {
			return nil, usagef("train: -epochs %d: want at least 1", epochs)
		}
		if batch < 0 {
			return nil, usagef("train: -batch-size %d: want 0 or more", batch)
		}
		r.Epochs, r.BatchSize = int32(epochs), int32(batch)
		switch publish {
		case "each":
			r.Publish = flowerdpb.PublishPolicy_PUBLISH_POLICY_EACH_EPOCH
		case "end":
			r.Publish = flowerdpb.PublishPolicy_PUBLISH_POLICY_AT_END
		default:
			return nil, usagef("train: -publish %q: want each or end", publish)
		}
		return t, nil
	}
}

func (t *trainCmd) run(ctx context.Context, e *env) error {
	jobs, err := e.c.Train(ctx, t.req)
	if err != nil {
		return err
	}
	if e.json {
		if err := printJSON(e, &flowerdpb.TrainResponse{Jobs: jobs}); err != nil {
			return err
		}
	} else {
		for _, j := range jobs {
			n := j.GetConfig().GetEpochs()
			unit := "epochs"
			if n == 1 {
				unit = "epoch"
			}
			fmt.Fprintf(e.out, "started job %s: %s, %d %s\n", j.GetId(), j.GetVariant(), n, unit)
		}
	}
	if t.detach {
		return nil
	}
	return watchJobs(ctx, e, jobs)
}

// jobs

type jobsCmd struct{ variant string }

func parseJobs(fs *flag.FlagSet) func([]string) (runner, error) {
	c := &jobsCmd{}
	fs.StringVar(&c.variant, "variant", "", "only this variant's jobs")
	return func(args []string) (runner, error) { return c, noArgs("jobs", args) }
}

func (c *jobsCmd) run(ctx context.Context, e *env) error {
	jobs, err := e.c.Jobs(ctx, c.variant)
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e, &flowerdpb.ListJobsResponse{Jobs: jobs})
	}
	return writeJobs(e.out, jobs)
}

// cancel

type cancelCmd struct{ ids []string }

func parseCancel(fs *flag.FlagSet) func([]string) (runner, error) {
	return func(args []string) (runner, error) {
		if len(args) == 0 {
			return nil, usagef("cancel: name the job IDs (flowerctl jobs lists them)")
		}
		return &cancelCmd{ids: args}, nil
	}
}

func (c *cancelCmd) run(ctx context.Context, e *env) error {
	var jobs []*flowerdpb.Job
	for _, id := range c.ids {
		j, err := e.c.Cancel(ctx, id)
		if err != nil {
			return err
		}
		jobs = append(jobs, j)
	}
	if e.json {
		return printJSON(e, &flowerdpb.ListJobsResponse{Jobs: jobs})
	}
	return writeJobs(e.out, jobs)
}

// evaluate

type evaluateCmd struct {
	req      *flowerdpb.EvaluateRequest
	perClass bool
}

func parseEvaluate(fs *flag.FlagSet) func([]string) (runner, error) {
	c := &evaluateCmd{req: &flowerdpb.EvaluateRequest{}}
	var split string
	fs.StringVar(&c.req.Variant, "variant", clients.AllVariants, `variant, or "all"`)
	fs.StringVar(&split, "split", "val", "split: val|test")
	fs.Int64Var(&c.req.Version, "version", 0, "checkpoint version; 0: the served one")
	fs.StringVar(&c.req.DatasetDir, "dataset", "", "dataset folder on the server; empty: the server's")
	fs.BoolVar(&c.perClass, "per-class", false, "also print the accuracy of each class")
	return func(args []string) (runner, error) {
		if err := noArgs("evaluate", args); err != nil {
			return nil, err
		}
		switch split {
		case "val":
			c.req.Split = flowerdpb.Split_SPLIT_VAL
		case "test":
			c.req.Split = flowerdpb.Split_SPLIT_TEST
		default:
			return nil, usagef("evaluate: -split %q: want val or test", split)
		}
		if c.req.Version < 0 {
			return nil, usagef("evaluate: -version %d: want 0 or more", c.req.Version)
		}
		return c, nil
	}
}

func (c *evaluateCmd) run(ctx context.Context, e *env) error {
	evals, err := e.c.Evaluate(ctx, c.req)
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e, &flowerdpb.EvaluateResponse{Evaluations: evals})
	}
	return writeEvaluations(e.out, evals, c.perClass)
}

// history

// historyCmd prints a variant's runs and, with plot, draws them as the
// study's Figure 2. With -plot and no variant (or "all") it takes the newest
// run of every variant the server has: one line per variant, the study's
// figure. With -plot and one variant, each run the request returns (the
// newest 10 unless -runs or -run say otherwise) is a line labelled by its
// run id, to compare runs of one variant.
type historyCmd struct {
	req  *flowerdpb.GetHistoryRequest
	csv  bool
	plot string // PNG file to write; "" draws nothing
}

// allVariants reports whether c takes each variant's newest run.
func (c *historyCmd) allVariants() bool { return c.req.GetVariant() == "" }

func parseHistory(fs *flag.FlagSet) func([]string) (runner, error) {
	c := &historyCmd{req: &flowerdpb.GetHistoryRequest{}}
	var runs int
	fs.StringVar(&c.req.Variant, "variant", "", `variant (required without -plot); with -plot, "all" or none: each variant's newest run`)
	fs.StringVar(&c.req.RunId, "run", "", "only this run")
	fs.IntVar(&runs, "runs", 0, "newest runs to show; 0: the server's default (10)")
	fs.BoolVar(&c.csv, "csv", false, "print CSV, one row per epoch")
	fs.StringVar(&c.plot, "plot", "", fmt.Sprintf("also draw Figure 2 (loss, accuracy, val loss, val accuracy against epoch) to this PNG file, %dx%d pixels", figurePixelsX, figurePixelsY))
	return func(args []string) (runner, error) {
		if err := noArgs("history", args); err != nil {
			return nil, err
		}
		if runs < 0 {
			return nil, usagef("history: -runs %d: want 0 or more", runs)
		}
		c.req.MaxRuns = int32(runs)
		if c.req.Variant == clients.AllVariants {
			c.req.Variant = ""
		}
		if c.allVariants() {
			if c.plot == "" {
				return nil, usagef("history: name one variant with -variant (all variants only with -plot)")
			}
			if c.req.RunId != "" || runs != 0 {
				return nil, usagef("history: -run and -runs need one variant; -plot without one takes each variant's newest run")
			}
		}
		return c, nil
	}
}

func (c *historyCmd) run(ctx context.Context, e *env) error {
	var runs []*flowerdpb.Run
	var series []historySeries
	var err error
	if c.allVariants() {
		runs, series, err = newestRuns(ctx, e.c)
	} else {
		runs, err = e.c.History(ctx, c.req)
		series = runSeries(runs, func(r *flowerdpb.Run) string { return r.GetVariant() + " run " + r.GetRunId() })
	}
	if err != nil {
		return err
	}
	if c.plot != "" {
		var buf bytes.Buffer
		if err := plotFigure2(&buf, series); err != nil {
			return fmt.Errorf("history: %w", err)
		}
		if err := os.WriteFile(c.plot, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("history: %w", err)
		}
	}
	switch {
	case e.json:
		return printJSON(e, &flowerdpb.GetHistoryResponse{Runs: runs})
	case c.csv:
		return writeHistoryCSV(e.out, runs)
	}
	if err := writeHistory(e.out, runs); err != nil {
		return err
	}
	if c.plot != "" {
		_, err = fmt.Fprintf(e.out, "\nwrote Figure 2, %d lines, %dx%d pixels, to %s\n", len(series), figurePixelsX, figurePixelsY, c.plot)
	}
	return err
}

// newestRuns fetches the newest run of every variant the server lists, in
// its order, and one series per variant labelled by the variant's name (a
// variant without runs is a series without epochs).
func newestRuns(ctx context.Context, c *clients.Client) ([]*flowerdpb.Run, []historySeries, error) {
	models, err := c.Models(ctx)
	if err != nil {
		return nil, nil, err
	}
	var runs []*flowerdpb.Run
	var series []historySeries
	for _, m := range models.GetModels() {
		rs, err := c.History(ctx, &flowerdpb.GetHistoryRequest{Variant: m.GetName(), MaxRuns: 1})
		if err != nil {
			return nil, nil, err
		}
		s := historySeries{label: m.GetName()}
		if len(rs) > 0 {
			runs = append(runs, rs[0])
			s.epochs = rs[0].GetEpochs()
		}
		series = append(series, s)
	}
	return runs, series, nil
}

// compare

type compareCmd struct{}

func parseCompare(fs *flag.FlagSet) func([]string) (runner, error) {
	return func(args []string) (runner, error) { return compareCmd{}, noArgs("compare", args) }
}

func (compareCmd) run(ctx context.Context, e *env) error {
	rows, err := e.c.Compare(ctx)
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e, &flowerdpb.CompareVariantsResponse{Rows: rows})
	}
	return writeCompare(e.out, rows)
}

// models

type modelsCmd struct{}

func parseModels(fs *flag.FlagSet) func([]string) (runner, error) {
	return func(args []string) (runner, error) { return modelsCmd{}, noArgs("models", args) }
}

func (modelsCmd) run(ctx context.Context, e *env) error {
	resp, err := e.c.Models(ctx)
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e, resp)
	}
	return writeModels(e.out, resp)
}

// pin

type pinCmd struct {
	variant string
	version int64
	unpin   bool
}

func parsePin(fs *flag.FlagSet) func([]string) (runner, error) {
	c := &pinCmd{}
	fs.StringVar(&c.variant, "variant", "", "variant (required)")
	fs.Int64Var(&c.version, "version", 0, "checkpoint version to pin (flowerctl models lists them)")
	fs.BoolVar(&c.unpin, "unpin", false, "serve the latest version again")
	return func(args []string) (runner, error) {
		if err := noArgs("pin", args); err != nil {
			return nil, err
		}
		if c.variant == "" || c.variant == clients.AllVariants {
			return nil, usagef("pin: name one variant with -variant")
		}
		if c.unpin == (c.version != 0) {
			return nil, usagef("pin: give either -version N (N > 0) or -unpin")
		}
		if c.version < 0 {
			return nil, usagef("pin: -version %d: want a stored version, above 0", c.version)
		}
		return c, nil
	}
}

func (c *pinCmd) run(ctx context.Context, e *env) error {
	var m *flowerdpb.Model
	var err error
	if c.unpin {
		m, err = e.c.Unpin(ctx, c.variant)
	} else {
		m, err = e.c.SetServingVersion(ctx, c.variant, c.version)
	}
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e, &flowerdpb.SetServingVersionResponse{Model: m})
	}
	return writeModels(e.out, &flowerdpb.ListModelsResponse{Models: []*flowerdpb.Model{m}})
}

// feedback

type feedbackCmd struct {
	label string
	file  string
}

func parseFeedback(fs *flag.FlagSet) func([]string) (runner, error) {
	c := &feedbackCmd{}
	fs.StringVar(&c.label, "label", "", "the image's true class, one of the 17 (required)")
	return func(args []string) (runner, error) {
		if len(args) != 1 {
			return nil, usagef("feedback: name one JPEG or PNG file, got %d", len(args))
		}
		if strings.TrimSpace(c.label) == "" {
			return nil, usagef("feedback: give the true class with -label")
		}
		c.file = args[0]
		return c, nil
	}
}

func (c *feedbackCmd) run(ctx context.Context, e *env) error {
	data, err := os.ReadFile(c.file)
	if err != nil {
		return fmt.Errorf("feedback: %w", err)
	}
	resp, err := e.c.SubmitFeedback(ctx, data, c.label)
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e, resp)
	}
	_, err = fmt.Fprintf(e.out, "stored %s as %s: feedback %s, %d stored (train with -feedback to use them)\n",
		filepath.Base(c.file), c.label, resp.GetId(), resp.GetStored())
	return err
}
