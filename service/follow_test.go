package service

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/flowerd/flowerd/checkpoints"
	"github.com/flowerd/flowerd/model"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// TestFollower trains on a server that exports its served versions and
// checks that a read-only replica following the export directory serves
// each new version, keeps answering while it swaps, and refuses what only
// the trainer may do.
func TestFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a network: skipped under -short")
	}
	ctx := context.Background()
	export := t.TempDir()
	// A state file left by an earlier store under the same version number
	// (the store was recreated, the export volume kept): it must be
	// replaced, not served.
	if err := os.MkdirAll(filepath.Join(export, "model2"), 0o755); err != nil {
		t.Fatal(err)
	}
	stale := []byte("the state of an earlier store's version 1")
	if err := os.WriteFile(filepath.Join(export, "model2", "1"+stateSuffix), stale, 0o644); err != nil {
		t.Fatal(err)
	}
	small := model.Options{ImageSize: 67}
	trainer := startServer(t, t.TempDir(), []string{"model2"}, Options{ExportDir: export, Model: small})
	defer trainer.stop(t)
	follower := startServer(t, t.TempDir(), []string{"model2"}, Options{FollowDir: export, FollowInterval: 50 * time.Millisecond, Model: small})
	defer follower.stop(t)

	m, err := follower.client.GetModel(ctx, &flowerdpb.GetModelRequest{Variant: "model2"})
	if err != nil || !strings.Contains(m.GetModel().GetStatusMessage(), "nothing exported yet") {
		t.Errorf("follower before any export: %v, %v", m, err)
	}
	img := flowerJPEG(t, "sunflower")
	for _, step := range []struct {
		epochs int32
		want   int64
	}{{1, 1}, {2, 3}} {
		resp, err := trainer.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: step.epochs, BatchSize: 8})
		if err != nil {
			t.Fatal(err)
		}
		waitCompleted(t, trainer, resp.GetJobs()[0].GetId())
		deadline := time.Now().Add(time.Minute)
		for {
			r, err := follower.client.Classify(ctx, &flowerdpb.ClassifyRequest{Images: []*flowerdpb.Image{{Data: img}}, Variant: "model2"})
			if err != nil {
				t.Fatalf("follower Classify while following: %v", err)
			}
			if got := r.GetResults()[0].GetPredictions()[0].GetVersion(); got == step.want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("follower never served version %d", step.want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The trainer keeps the served state and one older one.
	states, _ := filepath.Glob(filepath.Join(export, "model2", "*.state"))
	if len(states) != keepExported {
		t.Errorf("exported states = %v; want %d", states, keepExported)
	}
	if raw, err := os.ReadFile(filepath.Join(export, "model2", servingFile)); err != nil || strings.TrimSpace(string(raw)) != "3" {
		t.Errorf("SERVING = %q, %v; want 3", raw, err)
	}
	if lineages, _ := filepath.Glob(filepath.Join(export, "model2", "*"+lineageSuffix)); len(lineages) != keepExported {
		t.Errorf("exported lineages = %v; want one beside each of the %d states", lineages, keepExported)
	}
	// The replica reports the training cost of what it serves, as the
	// trainer does: three epochs in two runs.
	var rows [2]*flowerdpb.VariantComparison
	for i, srv := range []*harness{trainer, follower} {
		cmp, err := srv.client.CompareVariants(ctx, &flowerdpb.CompareVariantsRequest{})
		if err != nil || len(cmp.GetRows()) != 1 {
			t.Fatalf("CompareVariants = %v, %v", cmp, err)
		}
		rows[i] = cmp.GetRows()[0]
	}
	if tr, fo := rows[0], rows[1]; fo.GetEpochs() != 3 || fo.GetEpochs() != tr.GetEpochs() ||
		fo.GetTotalTrainSeconds() <= 0 || math.Abs(fo.GetTotalTrainSeconds()-tr.GetTotalTrainSeconds()) > 1e-6 ||
		fo.GetLastValAccuracy() != tr.GetLastValAccuracy() {
		t.Errorf("follower's comparison %v; want the trainer's %v (3 epochs)", fo, tr)
	}

	for name, call := range map[string]func() error{
		"Train": func() error {
			_, err := follower.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 1})
			return err
		},
		"SubmitFeedback": func() error {
			_, err := follower.client.SubmitFeedback(ctx, &flowerdpb.SubmitFeedbackRequest{Image: &flowerdpb.Image{Data: img}, Label: "sunflower"})
			return err
		},
		"SetServingVersion": func() error {
			_, err := follower.client.SetServingVersion(ctx, &flowerdpb.SetServingVersionRequest{Variant: "model2", Version: 1})
			return err
		},
		"CancelJob": func() error {
			_, err := follower.client.CancelJob(ctx, &flowerdpb.CancelJobRequest{JobId: "x"})
			return err
		},
	} {
		wantCode(t, "follower "+name, call(), codes.FailedPrecondition)
	}
	// A damaged export is refused; the replica keeps serving what it has.
	dir := filepath.Join(export, "model2")
	if err := os.WriteFile(filepath.Join(dir, "9"+stateSuffix), []byte("not a state"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, servingFile), []byte("9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	r, err := follower.client.Classify(ctx, &flowerdpb.ClassifyRequest{Images: []*flowerdpb.Image{{Data: img}}, Variant: "model2"})
	if err != nil || r.GetResults()[0].GetPredictions()[0].GetVersion() != 3 {
		t.Errorf("after a damaged export: %v, %v; want version 3 still served", r, err)
	}
}

// TestExportedLineage round-trips a lineage file with a diverged (NaN)
// epoch, which plain float64 fields cannot encode, and checks that a file
// describing other weights, or none, is refused.
func TestExportedLineage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "7"+lineageSuffix)
	when := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	lin := exportedLineage{Variant: "model2", Version: 7, Epochs: []checkpoints.Epoch{
		{Epoch: 1, Loss: 2.5, Accuracy: 0.2, ValLoss: 2.4, ValAccuracy: 0.25, WallTime: 80500 * time.Millisecond, ImagesPerSec: 13, Time: when, Version: 6},
		{Epoch: 2, Loss: math.NaN(), Accuracy: 0.05, ValLoss: math.Inf(1),
			ValAccuracy: 0.06, WallTime: 81 * time.Second, ImagesPerSec: 13, Time: when.Add(time.Minute), Version: 7},
	}}
	if err := writeFileAtomic(path, func(f *os.File) error { return json.NewEncoder(f).Encode(lin) }); err != nil {
		t.Fatalf("write a lineage with a NaN loss: %v", err)
	}
	got, err := readExportedLineage(path, "model2", 7)
	if err != nil || len(got) != 2 {
		t.Fatalf("readExportedLineage = %v, %v; want two epochs", got, err)
	}
	if e := got[0]; e.Epoch != 1 || e.Loss != 2.5 || e.WallTime != 80500*time.Millisecond || !e.Time.Equal(when) || e.Version != 6 {
		t.Errorf("first epoch = %+v; want what was written", e)
	}
	if e := got[1]; !math.IsNaN(e.Loss) || !math.IsInf(e.ValLoss, 1) || e.ValAccuracy != 0.06 {
		t.Errorf("diverged epoch = %+v; want NaN loss and +Inf validation loss kept", e)
	}
	for _, tc := range []struct {
		name    string
		variant string
		version int64
		path    string
	}{
		{"another version", "model2", 8, path},
		{"another variant", "model3", 7, path},
		{"no file", "model2", 7, filepath.Join(dir, "9"+lineageSuffix)},
	} {
		if got, err := readExportedLineage(tc.path, tc.variant, tc.version); err == nil {
			t.Errorf("readExportedLineage(%s) = %v, nil; want an error", tc.name, got)
		}
	}
}
