package checkpoints

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"
)

func TestRunsNewestFirst(t *testing.T) {
	s := openT(t, t.TempDir(), testOptions(t))
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cfg := RunConfig{Epochs: 30, BatchSize: 64, LearningRate: 0.01, Momentum: 0.9, Seed: 42, DatasetFingerprint: "sha256:abc", Backend: "xla:cpu",
		FromVersion: 7, FromRun: "r0"}
	for _, r := range []Run{
		{ID: "r1", Variant: "a", StartedAt: t0, Config: cfg},
		{ID: "r2", Variant: "b", StartedAt: t0.Add(time.Second), Config: cfg},
		{ID: "r3", Variant: "a", StartedAt: t0.Add(2 * time.Second), Config: cfg},
		{ID: "r4", Variant: "a", StartedAt: t0.Add(-time.Hour), Config: cfg}, // created last, started first
		{ID: "r5", Variant: "ab", StartedAt: t0.Add(time.Hour), Config: cfg},
	} {
		if _, err := s.CreateRun(r); err != nil {
			t.Fatalf("CreateRun(%s) = %v", r.ID, err)
		}
	}
	tests := []struct {
		variant string
		limit   int
		want    []string
	}{
		{"a", 0, []string{"r3", "r1", "r4"}},
		{"a", 2, []string{"r3", "r1"}},
		{"b", 0, []string{"r2"}},
		{"ab", 0, []string{"r5"}},
		{"c", 0, nil},
		{"", 0, []string{"r5", "r3", "r2", "r1", "r4"}},
		{"", 1, []string{"r5"}},
	}
	for _, tc := range tests {
		runs, err := s.Runs(tc.variant, tc.limit)
		if err != nil {
			t.Fatalf("Runs(%q, %d) = %v", tc.variant, tc.limit, err)
		}
		var ids []string
		for _, r := range runs {
			ids = append(ids, r.ID)
			if r.Config != cfg {
				t.Errorf("run %s config = %+v; want %+v", r.ID, r.Config, cfg)
			}
		}
		if !slices.Equal(ids, tc.want) {
			t.Errorf("Runs(%q, %d) = %v; want %v", tc.variant, tc.limit, ids, tc.want)
		}
	}
	if _, err := s.CreateRun(Run{ID: "r1", Variant: "a"}); !errors.Is(err, ErrExists) {
		t.Errorf("CreateRun(duplicate) = %v; want ErrExists", err)
	}
	r, err := s.CreateRun(Run{Variant: "a"})
	if err != nil || r.ID == "" || r.StartedAt.IsZero() {
		t.Errorf("CreateRun(no id) = %+v, %v; want a generated ID and start time", r, err)
	}
}

func TestFinishRun(t *testing.T) {
	s := openT(t, t.TempDir(), testOptions(t))
	start := time.Now().Add(-time.Minute)
	if _, err := s.CreateRun(Run{ID: "r", Variant: "a", StartedAt: start}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id      string
		outcome Outcome
		reason  string
		total   time.Duration
		wantErr error
	}{
		{"r", "weird", "", 0, ErrInvalid},
		{"nope", OutcomeCompleted, "", 0, ErrNotFound},
		{"r", OutcomeFailed, "out of memory", 0, nil},
		{"r", OutcomeCancelled, "by user", 5 * time.Second, nil},
	}
	for _, tc := range tests {
		r, err := s.FinishRun(tc.id, tc.outcome, tc.reason, tc.total)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("FinishRun(%s, %s) = %v; want %v", tc.id, tc.outcome, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		got, err := s.Run(tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Outcome != tc.outcome || got.Reason != tc.reason || got.FinishedAt.IsZero() || got.TotalTime != r.TotalTime {
			t.Errorf("Run(%s) = %+v; want outcome %s, reason %q", tc.id, got, tc.outcome, tc.reason)
		}
		if tc.total != 0 && got.TotalTime != tc.total {
			t.Errorf("TotalTime = %v; want %v", got.TotalTime, tc.total)
		}
		if tc.total == 0 && got.TotalTime < time.Minute {
			t.Errorf("TotalTime = %v; want at least the minute since start", got.TotalTime)
		}
	}
}

func TestHistory(t *testing.T) {
	s := openT(t, t.TempDir(), testOptions(t))
	if _, err := s.CreateRun(Run{ID: "r", Variant: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRun(Run{ID: "r2", Variant: "a"}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ep := func(n int, loss float64) Epoch {
		return Epoch{Epoch: n, Loss: loss, Accuracy: 0.1 * float64(n), ValLoss: loss + 1, ValAccuracy: 0.05 * float64(n),
			WallTime: time.Duration(n) * time.Second, ImagesPerSec: 100 + float64(n), Time: t0.Add(time.Duration(n) * time.Minute),
			Version: uint64(n % 3)} // 0 for some: an epoch without a checkpoint
	}
	// Out of order, epoch 256 (big-endian order differs from string
	// order), a diverged epoch, and one recorded twice.
	for _, e := range []Epoch{ep(3, 0.3), ep(1, 9), ep(256, 0.1), ep(2, math.NaN()), ep(1, 1), ep(4, math.Inf(1))} {
		if err := s.AddEpoch("r", e); err != nil {
			t.Fatalf("AddEpoch(%d) = %v", e.Epoch, err)
		}
	}
	if err := s.AddEpoch("r2", ep(1, 5)); err != nil {
		t.Fatal(err)
	}
	got, err := s.History("r")
	if err != nil {
		t.Fatal(err)
	}
	want := []Epoch{ep(1, 1), ep(2, math.NaN()), ep(3, 0.3), ep(4, math.Inf(1)), ep(256, 0.1)}
	if len(got) != len(want) {
		t.Fatalf("History = %d epochs; want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		sameLoss := g.Loss == w.Loss || (math.IsNaN(g.Loss) && math.IsNaN(w.Loss))
		if g.Epoch != w.Epoch || !sameLoss || g.Accuracy != w.Accuracy || g.ValAccuracy != w.ValAccuracy ||
			g.WallTime != w.WallTime || g.ImagesPerSec != w.ImagesPerSec || !g.Time.Equal(w.Time) || g.Version != w.Version ||
			(g.ValLoss != w.ValLoss && !math.IsNaN(w.ValLoss)) {
			t.Errorf("History[%d] = %+v; want %+v", i, g, w)
		}
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"AddEpoch(unknown run)", s.AddEpoch("nope", ep(1, 1)), ErrNotFound},
		{"AddEpoch(negative)", s.AddEpoch("r", ep(-1, 1)), ErrInvalid},
		{"History(unknown run)", func() error { _, err := s.History("nope"); return err }(), ErrNotFound},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s = %v; want %v", tc.name, tc.err, tc.want)
		}
	}
	if h, err := s.History("r2"); err != nil || len(h) != 1 {
		t.Errorf("History(r2) = %v, %v; want its one epoch", h, err)
	}
}
