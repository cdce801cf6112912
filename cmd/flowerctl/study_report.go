package main

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// The files study writes into -out.
const (
	studyReportFile = "README.md"
	studyFigure     = "figure2.png"
	// studyNotes is a hand-written companion of the report in the same
	// folder (what the numbers mean, caveats); the report links it when it
	// exists and never writes it, so regenerating keeps it.
	studyNotes = "NOTES.md"
)

// The report's section headings; the test compares the sections that come
// from the store between a run and its -skip-train regeneration.
const (
	studyResultsHeading    = "## Results"
	studyEqualTimeHeading  = "## At equal training time"
	studyComparisonHeading = "## Against the study's conclusions"
	studyServingHeading    = "## Serving cost (measured now)"
	studyRunsHeading       = "## Runs"
	studySetupHeading      = "## Hardware, versions, command"
)

// z95 is the standard normal quantile of a two-sided 95% interval.
const z95 = 1.959963984540054

// wilson is the 95% Wilson score interval of a proportion p measured on n
// trials (p is rounded to a whole number of successes). n = 0 knows
// nothing: [0, 1].
func wilson(p float64, n int) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	k := math.Round(p * float64(n))
	ph, nf, z2 := k/float64(n), float64(n), z95*z95
	den := 1 + z2/nf
	centre := (ph + z2/(2*nf)) / den
	half := z95 / den * math.Sqrt(ph*(1-ph)/nf+z2/(4*nf*nf))
	return max(0, centre-half), min(1, centre+half)
}

// diffStd is the sample standard deviation of the epoch-to-epoch changes of
// xs: how jagged a curve is around its trend. It needs three points (two
// changes); ok is false with fewer.
func diffStd(xs []float64) (std float64, ok bool) {
	if len(xs) < 3 {
		return 0, false
	}
	d := make([]float64, len(xs)-1)
	var mean float64
	for i := range d {
		d[i] = xs[i+1] - xs[i]
		mean += d[i]
	}
	mean /= float64(len(d))
	var ss float64
	for _, x := range d {
		ss += (x - mean) * (x - mean)
	}
	return math.Sqrt(ss / float64(len(d)-1)), true
}

func (r *studyRow) trainSeconds() float64 {
	var s float64
	for _, e := range r.epochs {
		s += e.GetEpochSeconds()
	}
	return s
}

func (r *studyRow) epochSeconds() float64 {
	if len(r.epochs) == 0 {
		return 0
	}
	return r.trainSeconds() / float64(len(r.epochs))
}

// imagesPerSec is the training throughput over all epochs, each weighted
// by its time.
func (r *studyRow) imagesPerSec() float64 {
	var imgs, secs float64
	for _, e := range r.epochs {
		imgs += e.GetImagesPerSec() * e.GetEpochSeconds()
		secs += e.GetEpochSeconds()
	}
	if secs == 0 {
		return 0
	}
	return imgs / secs
}

// best is the best validation accuracy and its 1-based position; 0 without
// epochs.
func (r *studyRow) best() (acc float64, epoch int) {
	b := bestIndex(valAccuracies(r.epochs))
	if b < 0 {
		return 0, 0
	}
	return r.epochs[b].GetValAccuracy(), b + 1
}

// bestWithin looks at the epochs r finished within secs seconds of training
// (their times added up): n of them, the best validation accuracy among them
// and the epoch it came at (0 when even the first epoch took longer).
func (r *studyRow) bestWithin(secs float64) (acc float64, epoch, n int) {
	var t float64
	for i, e := range r.epochs {
		t += e.GetEpochSeconds()
		if t > secs*(1+1e-9) { // the budget's own sum may round differently
			break
		}
		n++
		if epoch == 0 || e.GetValAccuracy() > acc {
			acc, epoch = e.GetValAccuracy(), i+1
		}
	}
	return acc, epoch, n
}

func (r *studyRow) valNoise() (float64, bool) { return diffStd(valAccuracies(r.epochs)) }

func (r *studyRow) lossNoise() (float64, bool) {
	l := make([]float64, len(r.epochs))
	for i, e := range r.epochs {
		l[i] = e.GetLoss()
	}
	return diffStd(l)
}

func (r *studyRow) top1CI() (p, lo, hi float64) {
	p = r.eval.GetTop1()
	lo, hi = wilson(p, int(r.eval.GetExamples()))
	return p, lo, hi
}

func (r *studyRow) top5CI() (p, lo, hi float64) {
	p = r.eval.GetTop5()
	lo, hi = wilson(p, int(r.eval.GetExamples()))
	return p, lo, hi
}

// ci writes a proportion and its interval: "0.912 [0.860, 0.946]".
func ci(p, lo, hi float64) string { return fmt.Sprintf("%s [%s, %s]", f3(p), f3(lo), f3(hi)) }

// regularisation is the variant's dense regularisation with its keep
// probabilities: "dropout keep 0.5,0.5".
func regularisation(m *flowerdpb.Model) string {
	ks := make([]string, len(m.GetKeepProbabilities()))
	for i, k := range m.GetKeepProbabilities() {
		ks[i] = strconv.FormatFloat(k, 'g', -1, 64)
	}
	if len(ks) == 0 {
		return m.GetRegularization()
	}
	return m.GetRegularization() + " keep " + strings.Join(ks, ",")
}

// studyReport is what writeStudyReport writes.
type studyReport struct {
	rows     []*studyRow
	backend  string
	command  string
	patience int
	host     host
	notes    bool // studyNotes exists beside the report
}

// host is the machine flowerctl runs on.
type host struct {
	goVersion, goos, goarch, cpu, module string
	cpus                                 int
}

// hostInfo describes this machine: Go, OS, architecture, CPU model (from
// /proc/cpuinfo where there is one) and flowerctl's build.
func hostInfo() host {
	h := host{goVersion: runtime.Version(), goos: runtime.GOOS, goarch: runtime.GOARCH, cpus: runtime.NumCPU(), cpu: "unknown"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				h.cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		h.module = bi.Main.Path + " " + bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" || s.Key == "vcs.modified" || s.Key == "GOEXPERIMENT" {
				h.module += fmt.Sprintf(", %s=%s", s.Key, s.Value)
			}
		}
	}
	return h
}

// writeStudyReport writes the markdown report. Write errors are the
// caller's buffer's, which has none.
func writeStudyReport(w io.Writer, rep studyReport) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("# The stride/dropout study, reproduced with flowerd\n\n")
	p("Generated %s by `%s`. Every number below comes from the server: the store's\n", time.Now().UTC().Format(time.RFC3339), rep.command)
	p("training histories and the test-split evaluation of each variant's last checkpoint;\n")
	p("`flowerctl study -skip-train` regenerates it from the store (only the serving table is measured anew).\n\n")
	if rep.notes {
		p("What these numbers do and do not show, written by hand: [%s](%s).\n\n", studyNotes, studyNotes)
	}

	p("%s\n\n", studyResultsHeading)
	p("Test top-1 and top-5 are of the weights after each variant's last epoch, on the held-out test split,\n")
	p("with their 95%% Wilson score intervals over its examples. Training time is the sum of the epochs' times;\n")
	p("images/s is the training throughput, each epoch weighted by its time.\n\n")
	p("| variant | pool strides | regularisation | parameters | epochs | training time | s/epoch | train images/s | best val acc (epoch) | test examples | test top-1 [95%% CI] | test top-5 [95%% CI] |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rep.rows {
		if len(r.epochs) == 0 {
			p("| %s | %s | %s | %s | 0 | - | - | - | - | - | - | - |\n", r.variant, strides(r.model.GetPoolStrides()),
				regularisation(r.model), params(r.model.GetParameters()))
			continue
		}
		acc, at := r.best()
		p("| %s | %s | %s | %s | %d | %s | %s | %s | %s (%d) | %d | %s | %s |\n", r.variant, strides(r.model.GetPoolStrides()),
			regularisation(r.model), params(r.model.GetParameters()), len(r.epochs), seconds(r.trainSeconds()), f1(r.epochSeconds()),
			f1(r.imagesPerSec()), f3(acc), at, r.eval.GetExamples(), ci(r.top1CI()), ci(r.top5CI()))
	}
	p("\n![Figure 2: loss, accuracy, validation loss and validation accuracy against epoch, one line per variant](%s)\n\n", studyFigure)
	for _, r := range rep.rows {
		if len(r.epochs) == 0 {
			p("- %s has no training run in the store.\n", r.variant)
			continue
		}
		if _, at := r.best(); rep.patience > 0 && len(r.epochs)-at < rep.patience {
			p("- %s had not plateaued: its best validation accuracy came at epoch %d of %d, within the last %d; more epochs could change its numbers.\n",
				r.variant, at, len(r.epochs), rep.patience)
		}
	}
	p("\n")

	writeEqualTime(w, rep.rows)

	p("%s\n\n", studyComparisonHeading)
	p("Jaggedness of a curve is the standard deviation of its epoch-to-epoch changes (it needs three epochs).\n")
	p("Intervals are 95%% Wilson score intervals; where two overlap, the test split cannot tell the variants apart.\n\n")
	for _, f := range studyFindings(rep.rows) {
		p("- **%s** %s\n", f.claim, f.verdict)
	}
	p("\n")

	p("%s\n\n", studyServingHeading)
	p("Classify latency percentiles are the server's live window (its last Classify calls per variant, the study's\n")
	p("probes among them); evaluate images/s is the test-split evaluation just run. These vary from run to run.\n\n")
	p("| variant | classify samples | p50 | p99 | evaluate images/s |\n|---|---|---|---|---|\n")
	for _, r := range rep.rows {
		p50, p99 := "-", "-"
		if r.compare.GetClassifySamples() > 0 {
			p50, p99 = f1(r.compare.GetClassifyP50Ms())+" ms", f1(r.compare.GetClassifyP99Ms())+" ms"
		}
		evalRate := "-"
		if r.eval != nil {
			evalRate = f1(r.eval.GetImagesPerSec())
		}
		p("| %s | %d | %s | %s | %s |\n", r.variant, r.compare.GetClassifySamples(), p50, p99, evalRate)
	}
	p("\n")

	p("%s\n\n", studyRunsHeading)
	p("| variant | runs (oldest first) | outcome | batch | learning rate | momentum | seed | backend | dataset | test checkpoint |\n")
	p("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rep.rows {
		if len(r.runs) == 0 {
			p("| %s | - | - | - | - | - | - | - | - | - |\n", r.variant)
			continue
		}
		ids := make([]string, len(r.runs))
		for i, run := range r.runs {
			ids[i] = run.GetRunId()
		}
		last := r.runs[len(r.runs)-1]
		outcome := last.GetOutcome()
		if last.GetReason() != "" {
			outcome += " (" + last.GetReason() + ")"
		}
		first := r.runs[0].GetConfig()
		p("| %s | %s | %s | %d | %g | %g | %d | %s | %s | version %d |\n", r.variant, strings.Join(ids, ", "), outcome,
			first.GetBatchSize(), first.GetLearningRate(), first.GetMomentum(), first.GetSeed(), last.GetBackend(),
			last.GetDatasetFingerprint(), r.eval.GetVersion())
	}
	p("\n")

	h := rep.host
	p("%s\n\n", studySetupHeading)
	p("- Server backend (ListModels): %s\n", rep.backend)
	p("- flowerctl's machine (the server's too when both run on one, as under `make study`): %s/%s, %d CPUs, %s\n", h.goos, h.goarch, h.cpus, h.cpu)
	p("- flowerctl: %s, %s\n", h.goVersion, h.module)
	p("- Command: `%s`\n", rep.command)
	p("- Budget: up to -epochs per variant; with -patience %d a variant stops once its best validation accuracy has not improved for that many epochs (0: no early stop).\n", rep.patience)
}

// writeEqualTime writes what each variant's validation accuracy was after
// as much training time as the variant that trained least: the comparison
// per epoch favours a variant whose epochs cost more.
func writeEqualTime(w io.Writer, rows []*studyRow) {
	var trained []*studyRow
	for _, r := range rows {
		if len(r.epochs) > 0 {
			trained = append(trained, r)
		}
	}
	if len(trained) < 2 {
		return
	}
	least := slices.MinFunc(trained, func(a, b *studyRow) int { return cmp.Compare(a.trainSeconds(), b.trainSeconds()) })
	budget := least.trainSeconds()
	fmt.Fprintf(w, "%s\n\n", studyEqualTimeHeading)
	fmt.Fprintf(w, "An epoch of one variant costs more than one of another, so the study's per-epoch comparison is not\n")
	fmt.Fprintf(w, "one at equal cost. Here every variant gets %s of training, what %s (the least trained in total)\n", seconds(budget), least.variant)
	fmt.Fprintf(w, "had: its best validation accuracy within that time, and the epoch it came at.\n\n")
	fmt.Fprintf(w, "| variant | s/epoch | epochs within %s | best val acc within (epoch) | best val acc overall (epoch) |\n|---|---|---|---|---|\n", seconds(budget))
	for _, r := range trained {
		acc, at, n := r.bestWithin(budget)
		within := "- (its first epoch took longer)"
		if at > 0 {
			within = fmt.Sprintf("%s (%d)", f3(acc), at)
		}
		bacc, bat := r.best()
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s (%d) |\n", r.variant, f1(r.epochSeconds()), n, within, f3(bacc), bat)
	}
	fmt.Fprintf(w, "\n")
}

// finding is one of the study's conclusions and what our data say of it.
type finding struct{ claim, verdict string }

// studyFindings checks the study's conclusions against rows.
func studyFindings(rows []*studyRow) []finding {
	byName := map[string]*studyRow{}
	var evaluated, trained []*studyRow
	for _, r := range rows {
		byName[r.variant] = r
		if r.eval != nil && r.eval.GetExamples() > 0 {
			evaluated = append(evaluated, r)
		}
		if len(r.epochs) > 0 {
			trained = append(trained, r)
		}
	}
	// need returns the named variants, evaluated, or why it cannot tell.
	need := func(names ...string) ([]*studyRow, string) {
		var rs []*studyRow
		for _, n := range names {
			r := byName[n]
			if r == nil || r.eval == nil || r.eval.GetExamples() == 0 {
				return nil, fmt.Sprintf("Cannot tell: %s has no evaluated training run.", n)
			}
			rs = append(rs, r)
		}
		return rs, ""
	}
	top1 := func(r *studyRow) string { return r.variant + " " + ci(r.top1CI()) }
	overlap := func(a, b *studyRow) bool {
		_, alo, ahi := a.top1CI()
		_, blo, bhi := b.top1CI()
		return alo <= bhi && blo <= ahi
	}
	var fs []finding

	// 1. model1 smoothest loss.
	claim := "model1 has the smoothest loss."
	if rs, why := need("model1"); why != "" {
		fs = append(fs, finding{claim, why})
	} else {
		fs = append(fs, finding{claim, smoothest(rs[0], trained, (*studyRow).lossNoise, "training-loss")})
	}

	// 2. model1 highest accuracy, 0.91.
	claim = "model1 has the highest accuracy (0.91 reported)."
	if rs, why := need("model1"); why != "" {
		fs = append(fs, finding{claim, why})
	} else {
		m1 := rs[0]
		sorted := slices.Clone(evaluated)
		slices.SortStableFunc(sorted, func(a, b *studyRow) int { return cmp.Compare(b.eval.GetTop1(), a.eval.GetTop1()) })
		top := sorted[0]
		var v string
		switch {
		case top.eval.GetTop1() == m1.eval.GetTop1() && len(sorted) > 1 && sorted[1].eval.GetTop1() == m1.eval.GetTop1():
			v = fmt.Sprintf("Holds only as a tie: model1's test top-1 %s equals the best.", ci(m1.top1CI()))
		case top.eval.GetTop1() == m1.eval.GetTop1():
			v = fmt.Sprintf("Holds: model1 has the highest test top-1, %s", ci(m1.top1CI()))
			if len(sorted) > 1 {
				v += fmt.Sprintf("; next is %s", top1(sorted[1]))
				if overlap(m1, sorted[1]) {
					v += ", whose interval overlaps model1's, so the lead is within the noise of the test split"
				}
			}
			v += "."
		default:
			v = fmt.Sprintf("Does not hold: the highest test top-1 is %s; model1's is %s", top1(top), ci(m1.top1CI()))
			if overlap(m1, top) {
				v += " (the intervals overlap)"
			}
			v += "."
		}
		_, lo, hi := m1.top1CI()
		if 0.91 >= lo && 0.91 <= hi {
			v += " The reported 0.91 is inside model1's interval."
		} else {
			v += fmt.Sprintf(" The reported 0.91 is outside model1's interval [%s, %s].", f3(lo), f3(hi))
		}
		fs = append(fs, finding{claim, v})
	}

	// 3. model2 fastest, ~0.79.
	claim = "model2 trains fastest but reaches only about 0.79."
	if rs, why := need("model2"); why != "" {
		fs = append(fs, finding{claim, why})
	} else {
		m2 := rs[0]
		fastest := trained[0]
		for _, r := range trained {
			if r.epochSeconds() < fastest.epochSeconds() {
				fastest = r
			}
		}
		var v string
		if fastest == m2 {
			v = fmt.Sprintf("Fastest holds: model2 takes %s s per epoch, the least", f1(m2.epochSeconds()))
		} else {
			v = fmt.Sprintf("Fastest does not hold: %s takes %s s per epoch, model2 %s s", fastest.variant, f1(fastest.epochSeconds()), f1(m2.epochSeconds()))
		}
		var others []string
		for _, r := range trained {
			if r != m2 && r != fastest {
				others = append(others, r.variant+" "+f1(r.epochSeconds()))
			}
		}
		if len(others) > 0 {
			v += " (" + strings.Join(others, ", ") + ")"
		}
		_, lo, hi := m2.top1CI()
		if 0.79 >= lo && 0.79 <= hi {
			v += fmt.Sprintf(". About 0.79 holds: model2's test top-1 is %s, and 0.79 is inside it.", ci(m2.top1CI()))
		} else {
			v += fmt.Sprintf(". About 0.79 does not hold: model2's test top-1 is %s, and 0.79 is outside it.", ci(m2.top1CI()))
		}
		fs = append(fs, finding{claim, v})
	}

	// 4. models 3 and 4 noisier validation curves.
	claim = "models 3 and 4 have noisier validation curves."
	noise := map[string]float64{}
	var missing []string
	for _, n := range []string{"model1", "model2", "model3", "model4"} {
		r := byName[n]
		if r == nil {
			missing = append(missing, n+" (not served)")
			continue
		}
		s, ok := r.valNoise()
		if !ok {
			missing = append(missing, fmt.Sprintf("%s (%s)", n, nEpochs(len(r.epochs))))
			continue
		}
		noise[n] = s
	}
	if len(missing) > 0 {
		fs = append(fs, finding{claim, "Cannot tell: the validation jaggedness needs three epochs of models 1 to 4; missing " + strings.Join(missing, ", ") + "."})
	} else {
		lo34, hi12 := min(noise["model3"], noise["model4"]), max(noise["model1"], noise["model2"])
		detail := fmt.Sprintf("validation-accuracy jaggedness model1 %s, model2 %s, model3 %s, model4 %s",
			f3(noise["model1"]), f3(noise["model2"]), f3(noise["model3"]), f3(noise["model4"]))
		if r := byName["model5"]; r != nil {
			if s, ok := r.valNoise(); ok {
				detail += ", model5 " + f3(s)
			}
		}
		var v string
		switch {
		case lo34 > hi12:
			v = "Holds: both are more jagged than models 1 and 2; " + detail + "."
		case (noise["model3"]+noise["model4"])/2 > (noise["model1"]+noise["model2"])/2:
			v = "Holds only on average: models 3 and 4 together are more jagged than models 1 and 2, but not each of them; " + detail + "."
		default:
			v = "Does not hold: " + detail + "."
		}
		fs = append(fs, finding{claim, v})
	}

	// 5. model5 slightly better than model3.
	claim = "model5 (DropConnect) is slightly better than model3."
	if rs, why := need("model5", "model3"); why != "" {
		fs = append(fs, finding{claim, why})
	} else {
		m5, m3 := rs[0], rs[1]
		d := m5.eval.GetTop1() - m3.eval.GetTop1()
		var v string
		switch {
		case d > 0:
			v = fmt.Sprintf("Holds: test top-1 %s vs %s, %s points better", top1(m5), top1(m3), f1(100*d))
		case d == 0:
			v = fmt.Sprintf("Does not hold: they tie, test top-1 %s vs %s", top1(m5), top1(m3))
		default:
			v = fmt.Sprintf("Does not hold: test top-1 %s vs %s, %s points worse", top1(m5), top1(m3), f1(-100*d))
		}
		if d != 0 && overlap(m5, m3) {
			v += "; the intervals overlap, so the test split does not separate them"
		}
		fs = append(fs, finding{claim, v + "."})
	}
	return fs
}

// smoothest says whether r's curve (by jag) is the least jagged of rows.
func smoothest(r *studyRow, rows []*studyRow, jag func(*studyRow) (float64, bool), what string) string {
	own, ok := jag(r)
	if !ok {
		return fmt.Sprintf("Cannot tell: %s has %s; the %s jaggedness needs three.", r.variant, nEpochs(len(r.epochs)), what)
	}
	var parts []string
	least := r
	leastV := own
	for _, o := range rows {
		s, ok := jag(o)
		if !ok {
			continue
		}
		parts = append(parts, o.variant+" "+f3(s))
		if s < leastV {
			least, leastV = o, s
		}
	}
	detail := fmt.Sprintf("%s jaggedness %s", what, strings.Join(parts, ", "))
	if least == r {
		return fmt.Sprintf("Holds: %s's is the least; %s.", r.variant, detail)
	}
	return fmt.Sprintf("Does not hold: %s's is the least; %s.", least.variant, detail)
}

// nEpochs is "1 epoch", "3 epochs".
func nEpochs(n int) string {
	if n == 1 {
		return "1 epoch"
	}
	return strconv.Itoa(n) + " epochs"
}
