package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/flowerd/flowerd/clients"
	"github.com/flowerd/flowerd/model"
	"github.com/flowerd/flowerd/model/dataset"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
	"github.com/flowerd/flowerd/service"
	"github.com/flowerd/flowerd/service/servicetest"
)

func TestWilson(t *testing.T) {
	tests := []struct {
		p      float64
		n      int
		lo, hi float64
	}{
		{0.5, 0, 0, 1},
		{0, 10, 0, 0.2775},
		{1, 10, 0.7225, 1},
		{0.5, 100, 0.4038, 0.5962},
		{0.91, 170, 0.8595, 0.9458},   // 155/170
		{0.7941, 170, 0.7272, 0.8481}, // 135/170
	}
	for _, tc := range tests {
		lo, hi := wilson(tc.p, tc.n)
		if math.Abs(lo-tc.lo) > 5e-4 || math.Abs(hi-tc.hi) > 5e-4 {
			t.Errorf("wilson(%v, %d) = [%.4f, %.4f]; want [%.4f, %.4f]", tc.p, tc.n, lo, hi, tc.lo, tc.hi)
		}
		if !(0 <= lo && lo <= hi && hi <= 1) || (tc.n > 0 && (lo > tc.p || tc.p > hi)) {
			t.Errorf("wilson(%v, %d) = [%v, %v]; want 0 <= lo <= p <= hi <= 1", tc.p, tc.n, lo, hi)
		}
	}
}

func TestAgainstTrend(t *testing.T) {
	tests := []struct {
		xs     []float64
		n      int
		rising bool
		want   float64
		ok     bool
	}{
		{nil, 5, false, 0, false},
		{[]float64{1}, 5, false, 0, false},
		{[]float64{3, 2, 1.5, 1.4, 1.39}, 5, false, 0, true}, // falls fast, then levels off: not noise
		{[]float64{0.1, 0.5, 0.6, 0.61}, 4, true, 0, true},
		{[]float64{3, 3.3, 2, 2.1}, 4, false, (0.3 + 0.1) / 3, true}, // two rises in three steps
		{[]float64{0.2, 0.1, 0.4}, 3, true, 0.1 / 2, true},
		{[]float64{3, 2, 1, 5}, 3, false, 0, true}, // the rise is outside the window
		{[]float64{3, 2, 1, 5}, 9, false, 4.0 / 3, true},
	}
	for _, tc := range tests {
		got, ok := againstTrend(tc.xs, tc.n, tc.rising)
		if ok != tc.ok || math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("againstTrend(%v, %d, %v) = %v, %v; want %v, %v", tc.xs, tc.n, tc.rising, got, ok, tc.want, tc.ok)
		}
	}
}

func TestPlateaued(t *testing.T) {
	tests := []struct {
		vals     []float64
		patience int
		want     bool
	}{
		{nil, 3, false},
		{[]float64{0.1, 0.2, 0.3}, 0, false},
		{[]float64{0.5, 0.4, 0.5, 0.5}, 3, true}, // equal is no improvement
		{[]float64{0.5, 0.4, 0.5, 0.6}, 3, false},
		{[]float64{0.5, 0.4, 0.5}, 3, false},
		{[]float64{0.1}, 1, false},
		{[]float64{0.2, 0.1}, 1, true},
	}
	for _, tc := range tests {
		if got := plateaued(tc.vals, tc.patience); got != tc.want {
			t.Errorf("plateaued(%v, %d) = %v; want %v", tc.vals, tc.patience, got, tc.want)
		}
	}
}

func TestLineage(t *testing.T) {
	run := func(id string, from, to int32) *flowerdpb.Run {
		r := &flowerdpb.Run{RunId: id}
		for e := from; e <= to; e++ {
			r.Epochs = append(r.Epochs, epoch(e, int64(e)))
		}
		return r
	}
	from := func(r *flowerdpb.Run, id string) *flowerdpb.Run { r.FromRun = id; return r }
	tests := []struct {
		name string
		runs []*flowerdpb.Run // newest first
		want []string         // run ids, oldest first
		n    int              // epochs
	}{
		{"none", nil, nil, 0},
		{"from scratch", []*flowerdpb.Run{run("c", 1, 3), run("b", 1, 9)}, []string{"c"}, 3},
		{"resumed twice", []*flowerdpb.Run{run("c", 6, 8), run("b", 3, 5), run("a", 1, 2), run("z", 1, 4)}, []string{"a", "b", "c"}, 8},
		{"empty runs skipped", []*flowerdpb.Run{run("x", 1, 0), run("c", 4, 5), run("y", 1, 0), run("b", 1, 3)}, []string{"b", "c"}, 5},
		{"gap: a run of another lineage", []*flowerdpb.Run{run("c", 4, 5), run("b", 1, 2), run("a", 1, 3)}, []string{"a", "c"}, 5},
		// from_run names the run continued; its epochs from the resumed
		// run's first on (recorded before a crash) are dropped.
		{"from_run, overlap after a crash", []*flowerdpb.Run{from(run("c", 5, 6), "b"), run("b", 1, 5)}, []string{"b", "c"}, 6},
		{"from_run over the guess", []*flowerdpb.Run{from(run("c", 4, 5), "a"), run("b", 1, 3), run("a", 1, 3)}, []string{"a", "c"}, 5},
		{"from_run twice", []*flowerdpb.Run{from(run("c", 7, 8), "b"), from(run("b", 3, 7), "a"), run("a", 1, 4)}, []string{"a", "b", "c"}, 8},
		{"from_run not read", []*flowerdpb.Run{from(run("c", 4, 5), "gone"), run("b", 1, 3)}, []string{"c"}, 2},
	}
	for _, tc := range tests {
		runs, epochs := lineage(tc.runs)
		var ids []string
		for _, r := range runs {
			ids = append(ids, r.GetRunId())
		}
		if strings.Join(ids, ",") != strings.Join(tc.want, ",") || len(epochs) != tc.n {
			t.Errorf("lineage(%s) = runs %v, %d epochs; want %v, %d", tc.name, ids, len(epochs), tc.want, tc.n)
		}
		for i := 1; i < len(epochs); i++ {
			if epochs[i].GetEpoch() != epochs[i-1].GetEpoch()+1 {
				t.Errorf("lineage(%s) epochs %d then %d; want consecutive", tc.name, epochs[i-1].GetEpoch(), epochs[i].GetEpoch())
			}
		}
	}
}

func TestParseStudy(t *testing.T) {
	a, stderr := testApp(nil)
	_, r, err := a.parse([]string{"study", "-epochs", "30", "-patience", "0", "-batch-size", "32", "-seed", "7",
		"-from-scratch=false", "-skip-train", "-probes", "0", "-out", "x"})
	want := &studyCmd{epochs: 30, batch: 32, seed: 7, skipTrain: true, out: "x"}
	if c, ok := r.(*studyCmd); err != nil || !ok || *c != *want {
		t.Errorf("parse(study ...) = %#v, %v; want %#v (stderr %q)", r, err, want, stderr)
	}
	_, r, err = a.parse([]string{"study"})
	want = &studyCmd{epochs: 100, patience: 10, seed: 1, fromScratch: true, probes: 50, out: "docs/study"}
	if c, ok := r.(*studyCmd); err != nil || !ok || *c != *want {
		t.Errorf("parse(study) = %#v, %v; want %#v", r, err, want)
	}
	for _, args := range [][]string{
		{"study", "-epochs", "0"}, {"study", "-patience", "-1"}, {"study", "-batch-size", "-1"},
		{"study", "-probes", "-1"}, {"study", "-out", ""}, {"study", "extra"},
	} {
		a, _ := testApp(nil)
		if code := a.main(t.Context(), args); code != 2 {
			t.Errorf("main(%q) = %d; want 2", args, code)
		}
	}
}

// studyRowRE is a row of the results table: variant, then the CIs of test
// top-1 and top-5 at the end.
var studyRowRE = regexp.MustCompile(`(?m)^\| (model\d) \|.* \| (\d+) \| ([0-9.]+) \[([0-9.]+), ([0-9.]+)\] \| ([0-9.]+) \[([0-9.]+), ([0-9.]+)\] \|$`)

// section is the text of a report from heading to the next "## ".
func section(report, heading string) string {
	_, s, ok := strings.Cut(report, heading+"\n")
	if !ok {
		return ""
	}
	if i := strings.Index(s, "\n## "); i >= 0 {
		s = s[:i]
	}
	return s
}

// TestStudy runs study end to end against the real service (all five
// variants at 67x67 pixels, one image per class and split, one epoch),
// then regenerates the report with -skip-train.
func TestStudy(t *testing.T) {
	if testing.Short() {
		t.Skip("loads and trains five (small) networks: skipped under -short")
	}
	if raceEnabled {
		t.Skip("runs GoMLX graphs in-process, too slow under -race")
	}
	variants := model.VariantNames()
	srv := servicetest.Start(t, service.Options{
		Variants: variants,
		Model:    model.Options{ImageSize: 67},
		Dataset:  dataset.Options{TrainPerClass: 1, ValPerClass: 1, TestPerClass: 1, Seed: 3},
	})
	opts := clients.Options{
		Retry:       clients.Retry{MaxAttempts: 200, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
		DialOptions: []grpc.DialOption{srv.DialOption()},
	}
	study := func(t *testing.T, out string, extra ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		a := &app{stdout: &stdout, stderr: &stderr, client: opts, getenv: func(string) string { return "" }}
		args := append([]string{"-addr", servicetest.Target, "study", "-epochs", "1", "-batch-size", "8", "-probes", "3", "-out", out}, extra...)
		start := time.Now()
		if code := a.main(t.Context(), args); code != 0 {
			t.Fatalf("flowerctl %q exited %d: %s\n%s", args, code, stderr.String(), stdout.String())
		}
		t.Logf("flowerctl %q took %v", args, time.Since(start).Round(time.Millisecond))
		data, err := os.ReadFile(filepath.Join(out, studyReportFile))
		if err != nil {
			t.Fatal(err)
		}
		png, err := os.ReadFile(filepath.Join(out, studyFigure))
		if err != nil {
			t.Fatal(err)
		}
		checkFigure(t, "study's "+studyFigure, png)
		if !strings.Contains(stdout.String(), "wrote "+filepath.Join(out, studyReportFile)) {
			t.Errorf("study printed\n%s\nwant it to name the report", stdout.String())
		}
		return string(data)
	}

	first := study(t, filepath.Join(t.TempDir(), "study"))
	results := section(first, studyResultsHeading)
	rows := studyRowRE.FindAllStringSubmatch(results, -1)
	if len(rows) != len(variants) {
		t.Fatalf("results table has %d rows; want one per variant, %v:\n%s", len(rows), variants, first)
	}
	for i, m := range rows {
		if m[1] != variants[i] {
			t.Errorf("row %d is %s; want %s", i, m[1], variants[i])
		}
		if m[2] != "17" {
			t.Errorf("%s: %s test examples; want 17 (one per class)", m[1], m[2])
		}
		for _, at := range []int{3, 6} { // top-1, top-5
			p, _ := strconv.ParseFloat(m[at], 64)
			lo, _ := strconv.ParseFloat(m[at+1], 64)
			hi, _ := strconv.ParseFloat(m[at+2], 64)
			if !(0 <= lo && lo <= p && p <= hi && hi <= 1) {
				t.Errorf("%s: %s [%s, %s]; want 0 <= lo <= p <= hi <= 1", m[1], m[at], m[at+1], m[at+2])
			}
		}
	}
	for _, h := range []string{studyEqualTimeHeading, studyComparisonHeading, studyServingHeading, studyRunsHeading, studySetupHeading} {
		if section(first, h) == "" {
			t.Errorf("report has no %q section:\n%s", h, first)
		}
	}
	comparison := section(first, studyComparisonHeading)
	if n := strings.Count(comparison, "\n- **"); n != 5 {
		t.Errorf("comparison has %d findings; want the study's 5:\n%s", n, comparison)
	}
	// One epoch: the jaggedness of a curve cannot be told, the rest can.
	for _, want := range []string{"model1 has the smoothest loss.** Cannot tell", "0.91", "0.79", "noisier validation curves.** Cannot tell", "model5 (DropConnect)"} {
		if !strings.Contains(comparison, want) {
			t.Errorf("comparison\n%s\nwant it to contain %q", comparison, want)
		}
	}
	if !strings.Contains(section(first, studyServingHeading), "| model1 | 3 | ") {
		t.Errorf("serving table\n%s\nwant model1's 3 probes", section(first, studyServingHeading))
	}
	if !strings.Contains(section(first, studySetupHeading), "backend (ListModels): go") {
		t.Errorf("setup section\n%s\nwant the go backend", section(first, studySetupHeading))
	}

	if strings.Contains(first, studyNotes) {
		t.Errorf("report links %s, which does not exist", studyNotes)
	}

	// From the store alone: the same tables and findings; hand-written
	// notes beside the report are linked and left as they are.
	againDir := filepath.Join(t.TempDir(), "again")
	notes := []byte("# Notes\n\nWritten by hand.\n")
	if err := os.MkdirAll(againDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(againDir, studyNotes), notes, 0o644); err != nil {
		t.Fatal(err)
	}
	again := study(t, againDir, "-skip-train")
	for _, h := range []string{studyResultsHeading, studyEqualTimeHeading, studyComparisonHeading, studyRunsHeading} {
		if a, b := section(first, h), section(again, h); a != b {
			t.Errorf("-skip-train wrote %s\n%s\nwant what the training run wrote:\n%s", h, b, a)
		}
	}
	if !strings.Contains(again, "]("+studyNotes+")") {
		t.Errorf("report beside %s does not link it:\n%s", studyNotes, again)
	}
	if got, err := os.ReadFile(filepath.Join(againDir, studyNotes)); err != nil || !bytes.Equal(got, notes) {
		t.Errorf("%s after the report = %q, %v; want it untouched", studyNotes, got, err)
	}

	// Resumed up to 2 epochs: one more epoch per variant, in a second run
	// that the report joins to the first.
	resumed := study(t, filepath.Join(t.TempDir(), "resumed"), "-epochs", "2", "-patience", "0", "-from-scratch=false")
	rows = studyRowRE.FindAllStringSubmatch(section(resumed, studyResultsHeading), -1)
	if len(rows) != len(variants) {
		t.Fatalf("resumed results table has %d rows; want %d:\n%s", len(rows), len(variants), resumed)
	}
	twoRuns := regexp.MustCompile(`(?m)^\| model\d \| [0-9a-f]+, [0-9a-f]+ \| completed \|.*\| version 2 \|$`)
	for i, m := range rows {
		if !strings.HasPrefix(m[0], "| "+variants[i]+" | ") || !strings.Contains(m[0], " | 2 | ") {
			t.Errorf("resumed row %q; want %s with 2 epochs", m[0], variants[i])
		}
	}
	if n := len(twoRuns.FindAllString(section(resumed, studyRunsHeading), -1)); n != len(variants) {
		t.Errorf("resumed runs table\n%s\nwant %d variants of two runs each, tested at version 2", section(resumed, studyRunsHeading), len(variants))
	}

	// A variant already training makes the study fail, and the jobs it
	// started before that are cancelled, not left running unwatched.
	c, err := clients.Dial(t.Context(), servicetest.Target, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := map[string]string{} // each variant's newest job before the study
	for _, v := range variants[:2] {
		jobs, err := c.Jobs(t.Context(), v)
		if err != nil || len(jobs) == 0 {
			t.Fatalf("Jobs(%s) = %d jobs, %v; want the resumed study's", v, len(jobs), err)
		}
		before[v] = jobs[0].GetId()
	}
	busy, err := c.Train(t.Context(), &flowerdpb.TrainRequest{Variant: variants[2], Epochs: 1000, BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Cancel(t.Context(), busy[0].GetId())
	var stdout, stderr bytes.Buffer
	a := &app{stdout: &stdout, stderr: &stderr, client: opts, getenv: func(string) string { return "" }}
	args := []string{"-addr", servicetest.Target, "study", "-epochs", "50", "-batch-size", "8", "-out", filepath.Join(t.TempDir(), "busy")}
	if code := a.main(t.Context(), args); code == 0 {
		t.Fatalf("flowerctl %q exited 0 while %s was training; want a failure", args, variants[2])
	}
	if !strings.Contains(stderr.String(), busy[0].GetId()) {
		t.Errorf("stderr %q; want it to name the running job %s", stderr.String(), busy[0].GetId())
	}
	for _, v := range variants[:2] {
		jobs, err := c.Jobs(t.Context(), v)
		if err != nil {
			t.Fatal(err)
		}
		if jobs[0].GetId() == before[v] {
			t.Errorf("%s has no new job; want the study to have started one before it met the busy %s", v, variants[2])
		} else if st := jobs[0].GetState(); st != flowerdpb.JobState_JOB_STATE_CANCELLED {
			t.Errorf("%s's newest job %s is %v after the study failed; want it cancelled", v, jobs[0].GetId(), st)
		}
	}
}

// TestStudyFindings checks the verdicts on made-up numbers where the study
// holds, where it does not, and where the data cannot separate the variants.
func TestStudyFindings(t *testing.T) {
	// Test splits of 1000 images keep the made-up intervals narrow (about
	// +-0.03), so an accuracy difference of 0.06 separates two variants.
	row := func(name string, secs float64, top1 float64, vals ...float64) *studyRow {
		r := &studyRow{variant: name, model: &flowerdpb.Model{Name: name},
			eval: &flowerdpb.Evaluation{Variant: name, Examples: 1000, Top1: top1, Top5: min(1, top1+0.05)}}
		for i, v := range vals {
			// The loss falls 0.1 per epoch and mirrors the accuracy, so
			// an accuracy drop of more than 0.1 shows as a rise of the loss.
			r.epochs = append(r.epochs, &flowerdpb.EpochMetrics{Epoch: int32(i + 1), Loss: 3 - 0.1*float64(i) - v,
				ValAccuracy: v, EpochSeconds: secs})
		}
		return r
	}
	smooth, jagged, wobbly := []float64{0.2, 0.4, 0.6, 0.8}, []float64{0.2, 0.7, 0.3, 0.8}, []float64{0.2, 0.5, 0.35, 0.8}
	study := []*studyRow{
		row("model1", 60, 0.91, smooth...), row("model2", 20, 0.79, wobbly...),
		row("model3", 40, 0.70, jagged...), row("model4", 45, 0.72, jagged...), row("model5", 40, 0.76, jagged...),
	}
	opposite := []*studyRow{
		row("model1", 20, 0.60, jagged...), row("model2", 60, 0.88, smooth...),
		row("model3", 40, 0.70, smooth...), row("model4", 45, 0.72, smooth...), row("model5", 40, 0.60, jagged...),
	}
	// Every curve only rises, the accuracies overlap and the times are
	// within 5%: nothing can be told apart.
	flat := []*studyRow{
		row("model1", 60, 0.75, smooth...), row("model2", 59, 0.74, smooth...),
		row("model3", 61, 0.73, smooth...), row("model4", 60, 0.74, smooth...), row("model5", 60, 0.74, smooth...),
	}
	tests := []struct {
		name string
		rows []*studyRow
		want []string // the start of each verdict, in order
	}{
		{"as the study found", study, []string{"Holds: model1's moves the least", "Holds: model1 has the highest test top-1",
			"Fastest holds", "Holds: both drop more", "Holds: test top-1 model5"}},
		{"the other way", opposite, []string{"Does not hold: model2, model3, model4 move clearly less", "Does not hold: model2 0.880",
			"Fastest does not hold: model1", "Does not hold", "Does not hold: test top-1 model5"}},
		{"nothing separated", flat, []string{"Not separated: no variant's training loss", "Not separated: model1 has",
			"Fastest not separated: model2 takes 59.0 s per epoch and model1 60.0 s", "Not separated: no validation accuracy",
			"Not separated: test top-1 model5"}},
		{"only model2", study[1:2], []string{"Cannot tell", "Cannot tell", "Cannot tell which is fastest", "Cannot tell", "Cannot tell"}},
	}
	for _, tc := range tests {
		fs := studyFindings(tc.rows)
		if len(fs) != len(tc.want) {
			t.Fatalf("studyFindings(%s) = %d findings; want %d", tc.name, len(fs), len(tc.want))
		}
		for i, f := range fs {
			if !strings.HasPrefix(f.verdict, tc.want[i]) {
				t.Errorf("studyFindings(%s)[%d] (%s) = %q; want it to start %q", tc.name, i, f.claim, f.verdict, tc.want[i])
			}
		}
	}
	if v := studyFindings(study)[1].verdict; !strings.Contains(v, "0.91 is inside") {
		t.Errorf("model1 at 0.91: %q; want 0.91 inside its interval", v)
	}
	if v := studyFindings(study)[2].verdict; !strings.Contains(v, "About 0.79 holds") {
		t.Errorf("model2 at 0.79: %q; want about 0.79 to hold", v)
	}
	// Scores within a quarter of each other are not ranked: model1 rises
	// 0.1 in three steps, model2 0.11.
	near := slices.Clone(study)
	near[0] = row("model1", 60, 0.91, 0.2, 0.5, 0.3, 0.8)    // loss 2.8, 2.4, 2.5, 1.9
	near[1] = row("model2", 20, 0.79, 0.2, 0.5, 0.29, 0.8)   // loss 2.8, 2.4, 2.51, 1.9
	near[2] = row("model3", 40, 0.70, 0.2, 0.5, 0.295, 0.8)  // 0.105, likewise close
	near[3] = row("model4", 45, 0.72, 0.2, 0.5, 0.285, 0.8)  // 0.115
	near[4] = row("model5", 40, 0.76, 0.2, 0.5, 0.2975, 0.8) // 0.1025
	if v := studyFindings(near)[0].verdict; !strings.HasPrefix(v, "Not separated: model2, model3, model4, model5 are within 25% of model1's") {
		t.Errorf("loss rises within 25%% of each other: %q; want not separated", v)
	}
	if v := studyFindings(near)[3].verdict; !strings.HasPrefix(v, "Not separated: models 3 and 4 together") {
		t.Errorf("validation drops within 25%% of each other: %q; want not separated", v)
	}
	if v := smoothest(study[0], study[:1], (*studyRow).lossCurve, false, "training loss"); !strings.HasPrefix(v, "Cannot tell: no variant but model1") {
		t.Errorf("smoothest with nothing to compare: %q; want cannot tell", v)
	}
	// A variant that trained longer is judged on the epochs all have: a
	// drop after the common window does not count against it.
	longer := slices.Clone(study)
	longer[0] = row("model1", 60, 0.91, 0.2, 0.4, 0.6, 0.8, 0.1)
	if v := studyFindings(longer)[0].verdict; !strings.HasPrefix(v, "Holds") || !strings.Contains(v, "first 4 epochs") {
		t.Errorf("model1 with a fifth, worse epoch: %q; want it to hold over the first 4 epochs", v)
	}
}

// TestEqualTime checks the equal-training-time table on made-up epochs:
// every variant gets the least trained variant's total time.
func TestEqualTime(t *testing.T) {
	row := func(name string, secs float64, vals ...float64) *studyRow {
		r := &studyRow{variant: name}
		for i, v := range vals {
			r.epochs = append(r.epochs, &flowerdpb.EpochMetrics{Epoch: int32(i + 1), ValAccuracy: v, EpochSeconds: secs})
		}
		return r
	}
	rows := []*studyRow{
		row("model1", 100, 0.2, 0.5, 0.4, 0.7),                                 // 400 s; 3 epochs within 300 s, best 0.5 at 2
		row("model2", 30, 0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.6), // 300 s: the budget
		row("model3", 400, 0.9),                                                // its one epoch takes longer than the budget
		row("model4", 0),                                                       // untrained: left out
	}
	if acc, at, n := rows[0].bestWithin(300); acc != 0.5 || at != 2 || n != 3 {
		t.Errorf("model1 bestWithin(300) = %v, %d, %d; want 0.5, 2, 3", acc, at, n)
	}
	if acc, at, n := rows[1].bestWithin(300); acc != 0.6 || at != 9 || n != 10 {
		t.Errorf("model2 bestWithin(300) = %v, %d, %d; want 0.6 at the first of its best epochs (9), all 10", acc, at, n)
	}
	var b strings.Builder
	writeEqualTime(&b, rows)
	got := b.String()
	for _, want := range []string{
		studyEqualTimeHeading, "5m0s of training, what model2",
		"| model1 | 100.0 | 3 | 0.400 | 0.500 (2) | 0.700 (4) |",
		"| model2 | 30.0 | 10 | 0.600 | 0.600 (9) | 0.600 (9) |",
		"| model3 | 400.0 | 0 | - | - (its first epoch took longer) | 0.900 (1) |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("equal-time section\n%s\nwant it to contain %q", got, want)
		}
	}
	if strings.Contains(got, "model4") {
		t.Errorf("equal-time section lists the untrained model4:\n%s", got)
	}
	b.Reset()
	writeEqualTime(&b, rows[1:2])
	if b.Len() != 0 {
		t.Errorf("equal-time section of one variant = %q; want none", b.String())
	}
}
