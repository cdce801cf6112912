package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// table writes aligned columns; flush it at the end.
func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

func row(tw io.Writer, cells ...string) {
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
}

func f3(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }
func f1(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }
func f4(x float64) string { return strconv.FormatFloat(x, 'f', 4, 64) }
func itoa[T ~int32 | ~int64 | ~int](n T) string {
	return strconv.FormatInt(int64(n), 10)
}

// pct is a fraction as a percentage with one decimal.
func pct(x float64) string { return strconv.FormatFloat(100*x, 'f', 1, 64) + "%" }

// shortState is a job state without its enum prefix: "RUNNING".
func shortState(st flowerdpb.JobState) string {
	return strings.TrimPrefix(st.String(), "JOB_STATE_")
}

func shortStatus(st flowerdpb.ModelStatus) string {
	return strings.TrimPrefix(st.String(), "MODEL_STATUS_")
}

func shortSplit(s flowerdpb.Split) string {
	if s == flowerdpb.Split_SPLIT_UNSPECIFIED {
		return "val"
	}
	return strings.ToLower(strings.TrimPrefix(s.String(), "SPLIT_"))
}

func strides(s []int32) string {
	parts := make([]string, len(s))
	for i, n := range s {
		parts[i] = itoa(n)
	}
	return strings.Join(parts, ",")
}

// params is a parameter count in millions: "30.0M"; "-" while unknown.
func params(n int64) string {
	if n == 0 {
		return "-"
	}
	return f1(float64(n)/1e6) + "M"
}

func seconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

// writeClassify prints one row per image and variant: the variant, the
// version that answered and the top classes with their probabilities.
func writeClassify(w io.Writer, resp *flowerdpb.ClassifyResponse) error {
	tw := table(w)
	row(tw, "IMAGE", "VARIANT", "VERSION", "LATENCY", "TOP CLASSES")
	for i, img := range resp.GetResults() {
		name := img.GetName()
		if name == "" {
			name = "#" + itoa(i)
		}
		for _, p := range img.GetPredictions() {
			top := make([]string, len(p.GetTop()))
			for j, s := range p.GetTop() {
				top[j] = fmt.Sprintf("%s %.3f", s.GetLabel(), s.GetProbability())
			}
			row(tw, name, p.GetVariant(), itoa(p.GetVersion()), f1(p.GetLatencyMs())+"ms", strings.Join(top, ", "))
		}
	}
	return tw.Flush()
}

// writeJobs prints one row per job.
func writeJobs(w io.Writer, jobs []*flowerdpb.Job) error {
	tw := table(w)
	row(tw, "ID", "VARIANT", "STATE", "EPOCHS", "VAL ACC", "UPDATED", "ERROR")
	for _, j := range jobs {
		valAcc := "-"
		if j.GetLastEpoch() != nil {
			valAcc = pct(j.GetLastEpoch().GetValAccuracy())
		}
		updated := "-"
		if t := j.GetUpdatedAt(); t != nil {
			updated = t.AsTime().Local().Format(time.DateTime)
		}
		row(tw, j.GetId(), j.GetVariant(), shortState(j.GetState()),
			fmt.Sprintf("%d/%d", j.GetEpochsDone(), j.GetConfig().GetEpochs()), valAcc, updated, j.GetError())
	}
	return tw.Flush()
}

// writeEvaluations prints one row per evaluation and, with perClass, each
// variant's accuracy per class.
func writeEvaluations(w io.Writer, evals []*flowerdpb.Evaluation, perClass bool) error {
	tw := table(w)
	row(tw, "VARIANT", "VERSION", "SPLIT", "EXAMPLES", "LOSS", "TOP-1", "TOP-5", "IMAGES/S")
	for _, e := range evals {
		row(tw, e.GetVariant(), itoa(e.GetVersion()), shortSplit(e.GetSplit()), itoa(e.GetExamples()),
			f3(e.GetLoss()), pct(e.GetTop1()), pct(e.GetTop5()), f1(e.GetImagesPerSec()))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !perClass {
		return nil
	}
	for _, e := range evals {
		fmt.Fprintf(w, "\n%s version %d, per class:\n", e.GetVariant(), e.GetVersion())
		tw := table(w)
		row(tw, "CLASS", "EXAMPLES", "ACCURACY")
		for _, c := range e.GetPerClass() {
			row(tw, c.GetLabel(), itoa(c.GetExamples()), pct(c.GetAccuracy()))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// writeHistory prints each run, newest first, as a heading and its
// per-epoch table: the data of the study's Figure 2.
func writeHistory(w io.Writer, runs []*flowerdpb.Run) error {
	if len(runs) == 0 {
		_, err := fmt.Fprintln(w, "no runs")
		return err
	}
	for i, r := range runs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		started := "-"
		if t := r.GetStartedAt(); t != nil {
			started = t.AsTime().Local().Format(time.DateTime)
		}
		fmt.Fprintf(w, "run %s of %s: %s, started %s, %s", r.GetRunId(), r.GetVariant(), r.GetOutcome(), started, seconds(r.GetTotalSeconds()))
		if r.GetReason() != "" {
			fmt.Fprintf(w, " (%s)", r.GetReason())
		}
		fmt.Fprintln(w)
		tw := table(w)
		row(tw, "EPOCH", "LOSS", "ACCURACY", "VAL LOSS", "VAL ACCURACY", "SECONDS", "IMAGES/S")
		for _, e := range r.GetEpochs() {
			row(tw, itoa(e.GetEpoch()), f3(e.GetLoss()), pct(e.GetAccuracy()), f3(e.GetValLoss()), pct(e.GetValAccuracy()),
				f1(e.GetEpochSeconds()), f1(e.GetImagesPerSec()))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// historyHeader is the CSV header of writeHistoryCSV.
var historyHeader = []string{"variant", "run_id", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds", "images_per_sec", "time"}

// writeHistoryCSV prints one CSV row per epoch of every run, with full
// precision, for plotting.
func writeHistoryCSV(w io.Writer, runs []*flowerdpb.Run) error {
	cw := csv.NewWriter(w)
	cw.Write(historyHeader)
	g := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	for _, r := range runs {
		for _, e := range r.GetEpochs() {
			at := ""
			if e.GetTime() != nil {
				at = e.GetTime().AsTime().UTC().Format(time.RFC3339)
			}
			cw.Write([]string{r.GetVariant(), r.GetRunId(), itoa(e.GetEpoch()), g(e.GetLoss()), g(e.GetAccuracy()),
				g(e.GetValLoss()), g(e.GetValAccuracy()), g(e.GetEpochSeconds()), g(e.GetImagesPerSec()), at})
		}
	}
	cw.Flush()
	return cw.Error()
}

// writeCompare prints the trade-off table, one row per variant.
func writeCompare(w io.Writer, rows []*flowerdpb.VariantComparison) error {
	tw := table(w)
	row(tw, "VARIANT", "STRIDES", "REG", "PARAMS", "GFLOP/IMG", "EPOCHS", "TRAIN TIME", "S/EPOCH",
		"BEST VAL", "LAST VAL", "TEST", "P50", "P95", "P99")
	for _, r := range rows {
		test := "-"
		if r.GetHasTest() {
			test = pct(r.GetTestAccuracy())
		}
		p50, p95, p99 := "-", "-", "-"
		if r.GetClassifySamples() > 0 {
			p50, p95, p99 = f1(r.GetClassifyP50Ms())+"ms", f1(r.GetClassifyP95Ms())+"ms", f1(r.GetClassifyP99Ms())+"ms"
		}
		row(tw, r.GetVariant(), strides(r.GetPoolStrides()), r.GetRegularization(), params(r.GetParameters()),
			f3(r.GetGflopPerImage()), itoa(r.GetEpochs()), seconds(r.GetTotalTrainSeconds()), f1(r.GetMeanEpochSeconds()),
			pct(r.GetBestValAccuracy()), pct(r.GetLastValAccuracy()), test, p50, p95, p99)
	}
	return tw.Flush()
}

// writeModels prints one row per variant and the server's backend.
func writeModels(w io.Writer, resp *flowerdpb.ListModelsResponse) error {
	tw := table(w)
	row(tw, "VARIANT", "STATUS", "SERVED", "PINNED", "VERSIONS", "PARAMS", "STRIDES", "REG", "JOB", "MESSAGE")
	for _, m := range resp.GetModels() {
		pinned := "no"
		if m.GetPinned() {
			pinned = "yes"
		}
		versions := "-"
		if vs := m.GetVersions(); len(vs) > 0 {
			lo, hi := vs[0].GetVersion(), vs[0].GetVersion()
			for _, v := range vs {
				lo, hi = min(lo, v.GetVersion()), max(hi, v.GetVersion())
			}
			versions = fmt.Sprintf("%d (%d-%d)", len(vs), lo, hi)
		}
		job := m.GetJobId()
		if job == "" {
			job = "-"
		}
		row(tw, m.GetName(), shortStatus(m.GetStatus()), itoa(m.GetServedVersion()), pinned, versions,
			params(m.GetParameters()), strides(m.GetPoolStrides()), m.GetRegularization(), job, m.GetStatusMessage())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if b := resp.GetBackend(); b != "" {
		_, err := fmt.Fprintf(w, "backend: %s\n", b)
		return err
	}
	return nil
}
