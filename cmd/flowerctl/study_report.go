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

// againstTrend is how much a curve moves the wrong way between epochs: the
// mean, over the steps among its first n points, of each step's move
// against the curve's direction (a rise of a loss, which should fall; a
// drop of an accuracy, which should rise). A curve that only moves one way
// scores 0 however sharply it bends, so a fast start that levels off is not
// mistaken for noise. It needs two points; ok is false with fewer.
func againstTrend(xs []float64, n int, rising bool) (float64, bool) {
	n = min(n, len(xs))
	if n < 2 {
		return 0, false
	}
	var sum float64
	for i := 1; i < n; i++ {
		d := xs[i] - xs[i-1]
		if rising {
			d = -d
		}
		sum += max(0, d)
	}
	return sum / float64(n-1), true
}

// timingTolerance is how far apart two variants' seconds per epoch must be
// before the report calls one faster: epoch times of one variant vary by
// about this much between runs on a shared machine.
const timingTolerance = 0.05

// sameScore is how close two againstTrend scores are to count as a tie.
const sameScore = 1e-9

// smoothTolerance is how much larger one againstTrend score must be than
// another before the report calls that curve the noisier: the measure has
// no noise model of its own, so differences under a quarter are left
// unranked.
const smoothTolerance = 0.25

// clearlyAbove says whether score a exceeds b by more than smoothTolerance.
func clearlyAbove(a, b float64) bool { return a > b*(1+smoothTolerance)+sameScore }

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

func (r *studyRow) valAccuracyCurve() []float64 { return valAccuracies(r.epochs) }

func (r *studyRow) lossCurve() []float64 {
	l := make([]float64, len(r.epochs))
	for i, e := range r.epochs {
		l[i] = e.GetLoss()
	}
	return l
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
	p("with their 95%% Wilson score intervals over its examples. Training time is the sum of the epochs' wall times,\n")
	p("each with its validation pass; train images/s is the throughput of the training steps alone, each epoch weighted\n")
	p("by its time, so s/epoch x images/s is a little more than the training split.\n\n")
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
	p("How smooth a curve is: the mean of its epoch-to-epoch moves against its direction (rises of the loss, drops of\n")
	p("the validation accuracy), over the epochs every compared variant has; a curve that only falls (or rises) scores 0\n")
	p("however sharply it bends; scores within %.0f%% of each other are not ranked (\"not separated\"). Test intervals are\n", smoothTolerance*100)
	p("95%% Wilson score intervals: where two overlap, the test split cannot rank the variants; epoch times within %.0f%%\n", timingTolerance*100)
	p("of each other are not separated either.\n\n")
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
	fmt.Fprintf(w, "had: its validation accuracy after the last epoch it finished within that time, and the best one\n")
	fmt.Fprintf(w, "within it with the epoch it came at. The best is a maximum over more epochs for a faster variant,\n")
	fmt.Fprintf(w, "which flatters it on a noisy curve; the last is not.\n\n")
	fmt.Fprintf(w, "| variant | s/epoch | epochs within %s | val acc at the last of them | best val acc within (epoch) | best val acc overall (epoch) |\n|---|---|---|---|---|---|\n", seconds(budget))
	for _, r := range trained {
		acc, at, n := r.bestWithin(budget)
		last, within := "-", "- (its first epoch took longer)"
		if at > 0 {
			last, within = f3(r.epochs[n-1].GetValAccuracy()), fmt.Sprintf("%s (%d)", f3(acc), at)
		}
		bacc, bat := r.best()
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s (%d) |\n", r.variant, f1(r.epochSeconds()), n, last, within, f3(bacc), bat)
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
		fs = append(fs, finding{claim, smoothest(rs[0], trained, (*studyRow).lossCurve, false, "training loss")})
	}

	// 2. model1 highest accuracy, 0.91.
	claim = "model1 has the highest accuracy (0.91 reported)."
	if rs, why := need("model1"); why != "" {
		fs = append(fs, finding{claim, why})
	} else {
		m1 := rs[0]
		var best *studyRow // the most accurate other variant
		for _, r := range evaluated {
			if r != m1 && (best == nil || r.eval.GetTop1() > best.eval.GetTop1()) {
				best = r
			}
		}
		var v string
		switch {
		case best == nil:
			v = fmt.Sprintf("Cannot tell: model1, %s, is the only evaluated variant.", ci(m1.top1CI()))
		case overlap(m1, best):
			v = fmt.Sprintf("Not separated: model1 has %s and the best of the others is %s; the intervals overlap, so the test split cannot rank them.",
				ci(m1.top1CI()), top1(best))
		case m1.eval.GetTop1() > best.eval.GetTop1():
			v = fmt.Sprintf("Holds: model1 has the highest test top-1, %s; next is %s.", ci(m1.top1CI()), top1(best))
		default:
			v = fmt.Sprintf("Does not hold: %s is ahead of model1's %s, and the intervals do not overlap.", top1(best), ci(m1.top1CI()))
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
		var rival *studyRow // the fastest other variant
		var others []string
		for _, r := range trained {
			if r == m2 {
				continue
			}
			others = append(others, r.variant+" "+f1(r.epochSeconds()))
			if rival == nil || r.epochSeconds() < rival.epochSeconds() {
				rival = r
			}
		}
		a, b := m2.epochSeconds(), math.Inf(1)
		if rival != nil {
			b = rival.epochSeconds()
		}
		var v string
		switch {
		case rival == nil:
			v = fmt.Sprintf("Cannot tell which is fastest: model2, %s s per epoch, is the only trained variant", f1(a))
		case math.Abs(a-b) <= timingTolerance*min(a, b):
			v = fmt.Sprintf("Fastest not separated: model2 takes %s s per epoch and %s %s s, within %.0f%%, the spread the report allows for epoch times",
				f1(a), rival.variant, f1(b), timingTolerance*100)
		case a < b:
			v = fmt.Sprintf("Fastest holds: model2 takes %s s per epoch, the least", f1(a))
		default:
			v = fmt.Sprintf("Fastest does not hold: %s takes %s s per epoch, model2 %s s", rival.variant, f1(b), f1(a))
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
	var missing []string
	var compared []*studyRow
	for _, n := range []string{"model1", "model2", "model3", "model4"} {
		r := byName[n]
		switch {
		case r != nil && len(r.epochs) >= 2:
			compared = append(compared, r)
		case r == nil:
			missing = append(missing, n+" (not served)")
		default:
			missing = append(missing, fmt.Sprintf("%s (%s)", n, nEpochs(len(r.epochs))))
		}
	}
	if len(missing) > 0 {
		fs = append(fs, finding{claim, "Cannot tell: the comparison needs two epochs of each of models 1 to 4; missing " + strings.Join(missing, ", ") + "."})
	} else {
		// The window is that of models 1 to 4; model5 is shown over it too.
		window := commonEpochs(compared)
		if r := byName["model5"]; r != nil && len(r.epochs) >= window {
			compared = append(compared, r)
		}
		noise := map[string]float64{}
		var parts []string
		for _, r := range compared {
			noise[r.variant], _ = againstTrend(r.valAccuracyCurve(), window, true)
			parts = append(parts, r.variant+" "+f4(noise[r.variant]))
		}
		detail := fmt.Sprintf("mean validation-accuracy drop per epoch over the first %s: %s", nEpochs(window), strings.Join(parts, ", "))
		lo34, hi12 := min(noise["model3"], noise["model4"]), max(noise["model1"], noise["model2"])
		mean34, mean12 := (noise["model3"]+noise["model4"])/2, (noise["model1"]+noise["model2"])/2
		var v string
		switch {
		case max(noise["model1"], noise["model2"], noise["model3"], noise["model4"]) <= sameScore:
			v = "Not separated: no validation accuracy of models 1 to 4 ever drops from one epoch to the next; " + detail + "."
		case clearlyAbove(lo34, hi12):
			v = "Holds: both drop more than models 1 and 2; " + detail + "."
		case clearlyAbove(mean34, mean12):
			v = "Holds only on average: models 3 and 4 together drop more than models 1 and 2, but not each of them; " + detail + "."
		case clearlyAbove(mean12, mean34):
			v = "Does not hold: models 1 and 2 drop more; " + detail + "."
		default:
			v = fmt.Sprintf("Not separated: models 3 and 4 together and models 1 and 2 together are within %.0f%% of each other; %s.", smoothTolerance*100, detail)
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
		case overlap(m5, m3):
			v = fmt.Sprintf("Not separated: test top-1 %s vs %s; the intervals overlap, so the test split cannot rank them", top1(m5), top1(m3))
		case d > 0:
			v = fmt.Sprintf("Holds: test top-1 %s vs %s, %s points better", top1(m5), top1(m3), f1(100*d))
		default:
			v = fmt.Sprintf("Does not hold: test top-1 %s vs %s, %s points worse", top1(m5), top1(m3), f1(-100*d))
		}
		fs = append(fs, finding{claim, v + "."})
	}
	return fs
}

// commonEpochs is the number of epochs every row has: the window within
// which their curves are compared, so a variant that trained longer (and
// so spent longer on its flatter tail) is not judged on more of its curve.
func commonEpochs(rows []*studyRow) int {
	n := math.MaxInt
	for _, r := range rows {
		n = min(n, len(r.epochs))
	}
	if n == math.MaxInt {
		return 0
	}
	return n
}

// smoothest says whether r's curve moves against its direction clearly
// less than every other row's, over the epochs they all have.
func smoothest(r *studyRow, rows []*studyRow, curve func(*studyRow) []float64, rising bool, what string) string {
	if len(r.epochs) < 2 {
		return fmt.Sprintf("Cannot tell: %s has %s; comparing how its %s moves needs two.", r.variant, nEpochs(len(r.epochs)), what)
	}
	compared := []*studyRow{r}
	for _, o := range rows {
		if o != r && len(o.epochs) >= 2 {
			compared = append(compared, o)
		}
	}
	if len(compared) == 1 {
		return fmt.Sprintf("Cannot tell: no variant but %s has two epochs to compare its %s with.", r.variant, what)
	}
	window := commonEpochs(compared)
	scores := map[*studyRow]float64{}
	var parts []string
	highest := 0.0
	for _, o := range rows { // in the report's order
		if slices.Contains(compared, o) {
			scores[o], _ = againstTrend(curve(o), window, rising)
			parts = append(parts, o.variant+" "+f4(scores[o]))
			highest = max(highest, scores[o])
		}
	}
	move := "rise"
	if rising {
		move = "drop"
	}
	detail := fmt.Sprintf("mean %s %s per epoch over the first %s: %s", what, move, nEpochs(window), strings.Join(parts, ", "))
	var smoother, near []string
	for _, o := range compared[1:] {
		switch {
		case clearlyAbove(scores[r], scores[o]):
			smoother = append(smoother, o.variant)
		case !clearlyAbove(scores[o], scores[r]):
			near = append(near, o.variant)
		}
	}
	switch {
	case highest <= sameScore:
		return fmt.Sprintf("Not separated: no variant's %s ever %ss from one epoch to the next in the first %s, so at one point per epoch all are equally smooth; %s.",
			what, move, nEpochs(window), detail)
	case len(smoother) > 0:
		return fmt.Sprintf("Does not hold: %s %s clearly less; %s.", strings.Join(smoother, ", "), verb(len(smoother), "moves", "move"), detail)
	case len(near) > 0:
		return fmt.Sprintf("Not separated: %s %s within %.0f%% of %s's; %s.", strings.Join(near, ", "), verb(len(near), "is", "are"),
			smoothTolerance*100, r.variant, detail)
	default:
		return fmt.Sprintf("Holds: %s's moves the least against its direction, by more than %.0f%%; %s.", r.variant, smoothTolerance*100, detail)
	}
}

// verb picks the singular or plural form for n subjects.
func verb(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// nEpochs is "1 epoch", "3 epochs".
func nEpochs(n int) string {
	if n == 1 {
		return "1 epoch"
	}
	return strconv.Itoa(n) + " epochs"
}
