package service

import (
	"context"
	"testing"
	"time"

	"github.com/flowerd/flowerd/model"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// TestCompareServedLineage checks that CompareVariants counts the training
// behind the served weights only: the run that wrote the served version up
// to it and the runs it resumed from, not an abandoned run, and that
// GetHistory names each run's origin and each epoch's version.
func TestCompareServedLineage(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a network: skipped under -short")
	}
	ctx := context.Background()
	h := startServer(t, t.TempDir(), []string{"model2"}, Options{Model: model.Options{ImageSize: 67}})
	defer h.stop(t)
	train := func(epochs int32, fromScratch bool) {
		t.Helper()
		resp, err := h.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: epochs, BatchSize: 8, FromScratch: fromScratch})
		if err != nil {
			t.Fatal(err)
		}
		waitCompleted(t, h, resp.GetJobs()[0].GetId())
	}
	train(2, true)  // run A: versions 1, 2 (abandoned; retention drops 1)
	train(1, true)  // run B: version 3
	train(2, false) // run C, resumed from B: versions 4, 5

	compare := func() *flowerdpb.VariantComparison {
		t.Helper()
		resp, err := h.client.CompareVariants(ctx, &flowerdpb.CompareVariantsRequest{})
		if err != nil || len(resp.GetRows()) != 1 {
			t.Fatalf("CompareVariants = %v, %v", resp, err)
		}
		return resp.GetRows()[0]
	}
	hist, err := h.client.GetHistory(ctx, &flowerdpb.GetHistoryRequest{Variant: "model2"})
	if err != nil || len(hist.GetRuns()) != 3 {
		t.Fatalf("GetHistory = %d runs, %v; want 3", len(hist.GetRuns()), err)
	}
	runC, runB := hist.GetRuns()[0], hist.GetRuns()[1]
	if runC.GetFromRun() != runB.GetRunId() || runC.GetFromVersion() != 3 || runB.GetFromRun() != "" || runB.GetFromVersion() != 0 {
		t.Errorf("runs' origins: C from %q version %d, B from %q version %d; want C from B (%s) version 3, B fresh",
			runC.GetFromRun(), runC.GetFromVersion(), runB.GetFromRun(), runB.GetFromVersion(), runB.GetRunId())
	}
	var versions []int64
	for _, e := range runC.GetEpochs() {
		versions = append(versions, e.GetVersion())
	}
	if len(versions) != 2 || versions[0] != 4 || versions[1] != 5 {
		t.Errorf("run C's epochs name versions %v; want [4 5]", versions)
	}

	// Served: version 5, whose weights took B's epoch 1 and C's epochs 2, 3.
	row := compare()
	want := runB.GetEpochs()[0].GetEpochSeconds() + runC.GetEpochs()[0].GetEpochSeconds() + runC.GetEpochs()[1].GetEpochSeconds()
	if row.GetEpochs() != 3 || row.GetTotalTrainSeconds() != want || row.GetLastValAccuracy() != runC.GetEpochs()[1].GetValAccuracy() {
		t.Errorf("served version 5: %d epochs, %v s, last val %v; want 3 epochs (B's and C's), %v s, %v",
			row.GetEpochs(), row.GetTotalTrainSeconds(), row.GetLastValAccuracy(), want, runC.GetEpochs()[1].GetValAccuracy())
	}

	// Pinned to version 3: run B's one epoch, although run C continued it.
	if _, err := h.client.SetServingVersion(ctx, &flowerdpb.SetServingVersionRequest{Variant: "model2", Version: 3}); err != nil {
		t.Fatal(err)
	}
	if row := compare(); row.GetEpochs() != 1 || row.GetTotalTrainSeconds() != runB.GetEpochs()[0].GetEpochSeconds() {
		t.Errorf("pinned version 3: %d epochs, %v s; want run B's epoch, %v s",
			row.GetEpochs(), row.GetTotalTrainSeconds(), runB.GetEpochs()[0].GetEpochSeconds())
	}
}

// TestRunTimeExcludesQueue checks that a run's total time starts when it
// starts training, not when its job was queued behind another.
func TestRunTimeExcludesQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("trains two networks: skipped under -short")
	}
	ctx := context.Background()
	h := startServer(t, t.TempDir(), []string{"model2", "model3"}, Options{Model: model.Options{ImageSize: 67}, MaxConcurrentJobs: 1})
	defer h.stop(t)
	resp, err := h.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "all", Epochs: 2, BatchSize: 8})
	if err != nil || len(resp.GetJobs()) != 2 {
		t.Fatalf("Train(all) = %v, %v; want two jobs", resp, err)
	}
	for _, j := range resp.GetJobs() {
		waitCompleted(t, h, j.GetId())
	}
	for _, v := range []string{"model2", "model3"} {
		hist, err := h.client.GetHistory(ctx, &flowerdpb.GetHistoryRequest{Variant: v})
		if err != nil || len(hist.GetRuns()) != 1 {
			t.Fatalf("GetHistory(%s) = %v, %v", v, hist, err)
		}
		r := hist.GetRuns()[0]
		// Not a timing bound: the run cannot have lasted longer than the
		// time since it started, which a queued job's wait would exceed.
		if since := time.Since(r.GetStartedAt().AsTime()).Seconds(); r.GetTotalSeconds() > since {
			t.Errorf("%s's run took %.1f s by its record, but started only %.1f s ago: the queue was counted", v, r.GetTotalSeconds(), since)
		}
	}
}
