package clients_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowerd/flowerd/clients"
	"github.com/flowerd/flowerd/model/dataset/datasettest"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
	"github.com/flowerd/flowerd/service/servicetest"
)

// startServer runs the real flowerd service over bufconn: model2 only, at
// 67x67 pixels, a one-image-per-class split, so that it loads and trains in
// seconds. It returns a client dialled through clients.Dial.
func startServer(t *testing.T) *clients.Client {
	t.Helper()
	if raceEnabled {
		t.Skip("runs GoMLX graphs in-process, too slow under -race; the fake-server tests cover the client's concurrency")
	}
	srv := servicetest.Start(t, servicetest.SmallOptions())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := clients.Dial(ctx, servicetest.Target, clients.Options{
		// The variant loads in the background: Unavailable until then,
		// which the client's retries ride out.
		Retry:       clients.Retry{MaxAttempts: 100, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
		DialOptions: []grpc.DialOption{srv.DialOption()},
	})
	if err != nil {
		t.Fatalf("Dial = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func flowerJPEG(t testing.TB, class string) (path string, data []byte) {
	t.Helper()
	dir := filepath.Join(datasettest.Dir(t), class)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, entries[0].Name())
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s = %v; want %v", what, err, want)
	}
}

// TestAgainstServer calls every method of the client against the real
// service, in the order a user would: classify the untrained model, train
// it, watch, evaluate, pin and unpin, and checks the codes of its errors.
func TestAgainstServer(t *testing.T) {
	if testing.Short() {
		t.Skip("loads and trains a (small) network: skipped under -short")
	}
	c := startServer(t)
	ctx := context.Background()
	sunflowerPath, sunflower := flowerJPEG(t, "sunflower")

	// Classify retries while model2 loads, then answers from version 0.
	resp, err := c.ClassifyTopK(ctx, "model2", 3, clients.Image{Name: "a", Data: sunflower})
	if err != nil {
		t.Fatalf("ClassifyTopK = %v", err)
	}
	p := resp.GetResults()[0].GetPredictions()
	if resp.GetResults()[0].GetName() != "a" || len(p) != 1 || p[0].GetVariant() != "model2" || len(p[0].GetTop()) != 3 || p[0].GetVersion() != 0 {
		t.Errorf("ClassifyTopK = %v; want one model2 prediction of version 0 with 3 classes", resp)
	}
	for name, classify := range map[string]func() (*flowerdpb.ClassifyResponse, error){
		"ClassifyBytes": func() (*flowerdpb.ClassifyResponse, error) { return c.ClassifyBytes(ctx, "", sunflower) },
		"ClassifyReader": func() (*flowerdpb.ClassifyResponse, error) {
			return c.ClassifyReader(ctx, "all", bytes.NewReader(sunflower))
		},
		"ClassifyFile": func() (*flowerdpb.ClassifyResponse, error) {
			return c.ClassifyFile(ctx, "model2", sunflowerPath, sunflowerPath)
		},
	} {
		resp, err := classify()
		if err != nil || len(resp.GetResults()) == 0 || len(resp.GetResults()[0].GetPredictions()[0].GetTop()) != 5 {
			t.Errorf("%s = %v, %v; want the top 5", name, resp, err)
		}
	}
	_, err = c.Classify(ctx, "model9", clients.Image{Data: sunflower})
	wantCode(t, "Classify(model9)", err, codes.NotFound)
	_, err = c.ClassifyBytes(ctx, "model2", []byte("not an image"))
	wantCode(t, "ClassifyBytes(garbage)", err, codes.InvalidArgument)
	_, err = c.Classify(ctx, "model2")
	wantCode(t, "Classify(no images)", err, codes.InvalidArgument)
	_, err = c.ClassifyFile(ctx, "model2", filepath.Join(t.TempDir(), "missing.jpg"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ClassifyFile(missing) = %v; want os.ErrNotExist", err)
	}

	models, err := c.Models(ctx)
	if err != nil || len(models.GetModels()) != 1 || models.GetBackend() != "go" || models.GetModels()[0].GetTrained() {
		t.Errorf("Models = %v, %v; want untrained model2 on go", models, err)
	}
	_, err = c.Model(ctx, "model1")
	wantCode(t, "Model(model1)", err, codes.NotFound)

	fb, err := c.SubmitFeedback(ctx, sunflower, "sunflower")
	if err != nil || fb.GetStored() != 1 {
		t.Errorf("SubmitFeedback = %v, %v; want 1 stored", fb, err)
	}
	_, err = c.SubmitFeedback(ctx, sunflower, "cactus")
	wantCode(t, "SubmitFeedback(cactus)", err, codes.InvalidArgument)

	_, err = c.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2"})
	wantCode(t, "Train(0 epochs)", err, codes.InvalidArgument)
	jobs, err := c.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 2, BatchSize: 8, Seed: 1, UseFeedback: true})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("Train = %v, %v; want one job", jobs, err)
	}
	id := jobs[0].GetId()
	_, err = c.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 1})
	wantCode(t, "Train while training", err, codes.FailedPrecondition)
	_, err = c.SetServingVersion(ctx, "model2", 1)
	wantCode(t, "SetServingVersion while training", err, codes.FailedPrecondition)

	var epochs []int32
	job, err := c.Wait(ctx, id, func(ev *flowerdpb.WatchJobResponse) {
		if e := ev.GetEpoch(); e != nil && !clients.Ended(ev.GetJob().GetState()) {
			epochs = append(epochs, e.GetEpoch())
		}
	})
	if err != nil || job.GetState() != flowerdpb.JobState_JOB_STATE_COMPLETED || job.GetEpochsDone() != 2 {
		t.Fatalf("Wait = %v, %v; want COMPLETED after 2 epochs", job, err)
	}
	if len(epochs) == 0 || epochs[len(epochs)-1] != 2 {
		t.Errorf("Wait saw epochs %v; want them to end with 2", epochs)
	}
	// Watching an ended job yields its record once.
	n := 0
	for ev, err := range c.Watch(ctx, id) {
		if err != nil || !clients.Ended(ev.GetJob().GetState()) {
			t.Errorf("Watch(ended job) yielded %v, %v", ev, err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("Watch(ended job) yielded %d events; want 1", n)
	}
	_, err = c.Wait(ctx, "no-such-job", nil)
	wantCode(t, "Wait(no-such-job)", err, codes.NotFound)

	if got, err := c.Job(ctx, id); err != nil || got.GetState() != flowerdpb.JobState_JOB_STATE_COMPLETED {
		t.Errorf("Job = %v, %v; want COMPLETED", got, err)
	}
	_, err = c.Job(ctx, "no-such-job")
	wantCode(t, "Job(no-such-job)", err, codes.NotFound)
	if list, err := c.Jobs(ctx, ""); err != nil || len(list) != 1 || list[0].GetId() != id {
		t.Errorf("Jobs = %v, %v; want the one job", list, err)
	}
	_, err = c.Cancel(ctx, id)
	wantCode(t, "Cancel(ended job)", err, codes.FailedPrecondition)

	runs, err := c.History(ctx, &flowerdpb.GetHistoryRequest{Variant: "model2"})
	if err != nil || len(runs) != 1 || len(runs[0].GetEpochs()) != 2 {
		t.Errorf("History = %v, %v; want one run of 2 epochs", runs, err)
	}
	_, err = c.History(ctx, &flowerdpb.GetHistoryRequest{})
	wantCode(t, "History(no variant)", err, codes.InvalidArgument)

	evals, err := c.Evaluate(ctx, &flowerdpb.EvaluateRequest{Variant: "model2", Split: flowerdpb.Split_SPLIT_TEST})
	if err != nil || len(evals) != 1 || evals[0].GetVersion() != 2 || evals[0].GetExamples() != 17 {
		t.Errorf("Evaluate = %v, %v; want version 2 on 17 test images", evals, err)
	}
	_, err = c.Evaluate(ctx, &flowerdpb.EvaluateRequest{Variant: "model2", Version: 99})
	wantCode(t, "Evaluate(version 99)", err, codes.NotFound)

	rows, err := c.Compare(ctx)
	if err != nil || len(rows) != 1 || rows[0].GetEpochs() != 2 || !rows[0].GetHasTest() || rows[0].GetClassifySamples() == 0 {
		t.Errorf("Compare = %v, %v; want model2 with 2 epochs, a test accuracy and classify latencies", rows, err)
	}

	m, err := c.SetServingVersion(ctx, "model2", 1)
	if err != nil || m.GetServedVersion() != 1 || !m.GetPinned() {
		t.Errorf("SetServingVersion(1) = %v, %v; want version 1 pinned", m, err)
	}
	_, err = c.SetServingVersion(ctx, "model2", 99)
	wantCode(t, "SetServingVersion(99)", err, codes.NotFound)
	if m, err = c.Unpin(ctx, "model2"); err != nil || m.GetServedVersion() != 2 || m.GetPinned() {
		t.Errorf("Unpin = %v, %v; want version 2 unpinned", m, err)
	}

	// Cancel a running job.
	jobs, err = c.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 50, BatchSize: 8})
	if err != nil {
		t.Fatalf("Train(50 epochs) = %v", err)
	}
	for ev, err := range c.Watch(ctx, jobs[0].GetId()) {
		if err != nil {
			t.Fatalf("Watch = %v", err)
		}
		if ev.GetEpoch() != nil || ev.GetJob().GetState() == flowerdpb.JobState_JOB_STATE_RUNNING {
			break
		}
	}
	if job, err := c.Cancel(ctx, jobs[0].GetId()); err != nil || job.GetState() != flowerdpb.JobState_JOB_STATE_CANCELLED {
		t.Errorf("Cancel = %v, %v; want CANCELLED", job, err)
	}
}
