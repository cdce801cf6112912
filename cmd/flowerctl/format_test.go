package main

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"

	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// lines trims a golden text's leading newline and each line's trailing
// spaces (tabwriter pads the last cell only when it is not empty).
func lines(s string) string {
	var out []string
	for l := range strings.SplitSeq(strings.TrimPrefix(s, "\n"), "\n") {
		out = append(out, strings.TrimRight(l, " "))
	}
	return strings.Join(out, "\n")
}

func epoch(n int32, version int64) *flowerdpb.EpochMetrics {
	return &flowerdpb.EpochMetrics{Epoch: n, Loss: 2.5 / float64(n), Accuracy: 0.2 * float64(n), ValLoss: 2.6 / float64(n),
		ValAccuracy: 0.15 * float64(n), EpochSeconds: 61.25, ImagesPerSec: 16.65, Version: version}
}

func TestWriteTables(t *testing.T) {
	train := &flowerdpb.TrainRequest{Epochs: 10}
	tests := []struct {
		name  string
		write func(*bytes.Buffer) error
		want  string
	}{
		{"classify", func(b *bytes.Buffer) error {
			return writeClassify(b, &flowerdpb.ClassifyResponse{Results: []*flowerdpb.ImageResult{
				{Name: "sunflower.jpg", Predictions: []*flowerdpb.Prediction{
					{Variant: "model1", Version: 12, LatencyMs: 41.26, Top: []*flowerdpb.ClassScore{{Label: "sunflower", Probability: 0.9123}, {Label: "daffodil", Probability: 0.05}}},
					{Variant: "model2", Version: 0, LatencyMs: 9, Top: []*flowerdpb.ClassScore{{Label: "tulip", Probability: 0.07}}},
				}},
				{Predictions: []*flowerdpb.Prediction{{Variant: "model1", Version: 12, Top: []*flowerdpb.ClassScore{{Label: "iris", Probability: 1}}}}},
			}})
		}, `
IMAGE          VARIANT  VERSION  LATENCY  TOP CLASSES
sunflower.jpg  model1   12       41.3ms   sunflower 0.912, daffodil 0.050
sunflower.jpg  model2   0        9.0ms    tulip 0.070
#1             model1   12       0.0ms    iris 1.000
`},
		{"jobs", func(b *bytes.Buffer) error {
			return writeJobs(b, []*flowerdpb.Job{
				{Id: "0002", Variant: "model2", State: flowerdpb.JobState_JOB_STATE_RUNNING, Config: train, EpochsDone: 3, LastEpoch: epoch(3, 7)},
				{Id: "0001", Variant: "model1", State: flowerdpb.JobState_JOB_STATE_FAILED, Config: train, Error: "load dataset: no such dir"},
			})
		}, `
ID    VARIANT  STATE    EPOCHS  VAL ACC  UPDATED  ERROR
0002  model2   RUNNING  3/10    45.0%    -
0001  model1   FAILED   0/10    -        -        load dataset: no such dir
`},
		{"evaluate", func(b *bytes.Buffer) error {
			return writeEvaluations(b, []*flowerdpb.Evaluation{{Variant: "model3", Version: 4, Split: flowerdpb.Split_SPLIT_TEST,
				Examples: 170, Loss: 1.23456, Top1: 0.6118, Top5: 0.9, ImagesPerSec: 123.45,
				PerClass: []*flowerdpb.ClassAccuracy{{Label: "bluebell", Examples: 10, Accuracy: 0.7}}}}, true)
		}, `
VARIANT  VERSION  SPLIT  EXAMPLES  LOSS   TOP-1  TOP-5  IMAGES/S
model3   4        test   170       1.235  61.2%  90.0%  123.5

model3 version 4, per class:
CLASS     EXAMPLES  ACCURACY
bluebell  10        70.0%
`},
		{"history", func(b *bytes.Buffer) error {
			return writeHistory(b, []*flowerdpb.Run{{RunId: "r2", Variant: "model2", Outcome: "cancelled", Reason: "cancelled by CancelJob",
				TotalSeconds: 130.4, Epochs: []*flowerdpb.EpochMetrics{epoch(1, 1), epoch(2, 0)}}})
		}, `
run r2 of model2: cancelled, started -, 2m10s (cancelled by CancelJob)
EPOCH  LOSS   ACCURACY  VAL LOSS  VAL ACCURACY  SECONDS  IMAGES/S
1      2.500  20.0%     2.600     15.0%         61.2     16.6
2      1.250  40.0%     1.300     30.0%         61.2     16.6
`},
		{"history empty", func(b *bytes.Buffer) error { return writeHistory(b, nil) }, "no runs\n"},
		{"compare", func(b *bytes.Buffer) error {
			return writeCompare(b, []*flowerdpb.VariantComparison{
				{Variant: "model1", PoolStrides: []int32{1, 1, 2}, Regularization: "dropout", Parameters: 87_711_121, GflopPerImage: 2.2345,
					Epochs: 40, TotalTrainSeconds: 3661, MeanEpochSeconds: 91.5, BestValAccuracy: 0.61, LastValAccuracy: 0.6,
					HasTest: true, TestAccuracy: 0.58, ClassifySamples: 10, ClassifyP50Ms: 40, ClassifyP95Ms: 55.55, ClassifyP99Ms: 60},
				{Variant: "model5", PoolStrides: []int32{2, 2, 2}, Regularization: "dropconnect", Parameters: 37_379_473, GflopPerImage: 1.1},
			})
		}, `
VARIANT  STRIDES  REG          PARAMS  GFLOP/IMG  EPOCHS  TRAIN TIME  S/EPOCH  BEST VAL  LAST VAL  TEST   P50     P95     P99
model1   1,1,2    dropout      87.7M   2.235      40      1h1m1s      91.5     61.0%     60.0%     58.0%  40.0ms  55.5ms  60.0ms
model5   2,2,2    dropconnect  37.4M   1.100      0       0s          0.0      0.0%      0.0%      -      -       -       -
`},
		{"models", func(b *bytes.Buffer) error {
			return writeModels(b, &flowerdpb.ListModelsResponse{Backend: "go", Models: []*flowerdpb.Model{
				{Name: "model2", Status: flowerdpb.ModelStatus_MODEL_STATUS_TRAINING, ServedVersion: 3, Pinned: true, Parameters: 30_039_441,
					PoolStrides: []int32{2, 2, 2}, Regularization: "dropout", JobId: "0002", StatusMessage: "serving checkpoint version 3",
					Versions: []*flowerdpb.Version{{Version: 2}, {Version: 3}, {Version: 4}}},
				{Name: "model3", Status: flowerdpb.ModelStatus_MODEL_STATUS_LOADING, StatusMessage: "building the network"},
			}})
		}, `
VARIANT  STATUS    SERVED  PINNED  VERSIONS  PARAMS  STRIDES  REG      JOB   MESSAGE
model2   TRAINING  3       yes     3 (2-4)   30.0M   2,2,2    dropout  0002  serving checkpoint version 3
model3   LOADING   0       no      -         -                         -     building the network
backend: go
`},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		if err := tc.write(&b); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if got, want := lines(b.String()), lines(tc.want); got != want {
			t.Errorf("%s printed\n%s\nwant\n%s", tc.name, got, want)
		}
	}
}

func TestWriteHistoryCSV(t *testing.T) {
	var b bytes.Buffer
	runs := []*flowerdpb.Run{
		{RunId: "r2", Variant: "model2", Epochs: []*flowerdpb.EpochMetrics{epoch(3, 3)}},
		{RunId: "r1", Variant: "model2", Epochs: []*flowerdpb.EpochMetrics{epoch(1, 1), epoch(2, 2)}},
	}
	if err := writeHistoryCSV(&b, runs); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatalf("history CSV does not parse: %v", err)
	}
	if len(recs) != 4 || strings.Join(recs[0], ",") != "variant,run_id,epoch,loss,accuracy,val_loss,val_accuracy,epoch_seconds,images_per_sec,time" {
		t.Fatalf("history CSV = %q; want a header and 3 rows", recs)
	}
	if got := strings.Join(recs[1], ","); got != "model2,r2,3,0.8333333333333334,0.6000000000000001,0.8666666666666667,0.44999999999999996,61.25,16.65," {
		t.Errorf("first row = %q", got)
	}
	if recs[3][1] != "r1" || recs[3][2] != "2" {
		t.Errorf("last row = %q; want r1 epoch 2", recs[3])
	}
}

func TestProgressLine(t *testing.T) {
	cfg := &flowerdpb.TrainRequest{Epochs: 4}
	tests := []struct {
		ev   *flowerdpb.WatchJobResponse
		bar  bool
		want string
	}{
		{&flowerdpb.WatchJobResponse{Job: &flowerdpb.Job{Variant: "model2", State: flowerdpb.JobState_JOB_STATE_QUEUED, Config: cfg}}, true,
			"model2  QUEUED    [....................] epoch 0/4"},
		{&flowerdpb.WatchJobResponse{Job: &flowerdpb.Job{Variant: "model2", State: flowerdpb.JobState_JOB_STATE_RUNNING, Config: cfg,
			EpochsDone: 1, LastEpoch: epoch(1, 5)}, Epoch: epoch(1, 5), EtaSeconds: 183.7}, true,
			"model2  RUNNING   [#####...............] epoch 1/4  loss 2.500 acc 20.0%  val loss 2.600 acc 15.0%  16.6 img/s  v5  ETA 3m4s"},
		{&flowerdpb.WatchJobResponse{Job: &flowerdpb.Job{Variant: "model2", State: flowerdpb.JobState_JOB_STATE_RUNNING, Config: cfg,
			EpochsDone: 1, LastEpoch: epoch(1, 0)}, Epoch: epoch(1, 0), EtaSeconds: 183.7}, false,
			"model2  RUNNING   epoch 1/4  loss 2.500 acc 20.0%  val loss 2.600 acc 15.0%  16.6 img/s  ETA 3m4s"},
		{&flowerdpb.WatchJobResponse{Job: &flowerdpb.Job{Variant: "model1", State: flowerdpb.JobState_JOB_STATE_FAILED, Config: cfg,
			Error: "out of memory"}}, false,
			"model1  FAILED    epoch 0/4  (out of memory)"},
		{&flowerdpb.WatchJobResponse{Job: &flowerdpb.Job{Variant: "model1", State: flowerdpb.JobState_JOB_STATE_COMPLETED, Config: cfg,
			EpochsDone: 4, LastEpoch: epoch(4, 8)}}, true,
			"model1  COMPLETED [####################] epoch 4/4  loss 0.625 acc 80.0%  val loss 0.650 acc 60.0%  16.6 img/s  v8"},
	}
	for _, tc := range tests {
		if got := progressLine(tc.ev, tc.bar); got != tc.want {
			t.Errorf("progressLine(%v, %v) =\n%q; want\n%q", tc.ev, tc.bar, got, tc.want)
		}
	}
}

// TestProgressDraw: on a terminal, the lines are redrawn in place.
func TestProgressDraw(t *testing.T) {
	var b bytes.Buffer
	p := &progress{w: &b, tty: true, lines: []string{"a0", "b0"}}
	p.draw()
	p.lines[1] = "b1"
	p.draw()
	p.finish()
	if got, want := b.String(), "\ra0\x1b[K\n\rb0\x1b[K\x1b[1A\ra0\x1b[K\n\rb1\x1b[K\n"; got != want {
		t.Errorf("two draws wrote %q; want %q", got, want)
	}
	b.Reset()
	p = &progress{w: &b, tty: true, lines: []string{"a0"}}
	p.draw()
	p.lines[0] = "a1"
	p.draw()
	p.finish()
	if got, want := b.String(), "\ra0\x1b[K\ra1\x1b[K\n"; got != want {
		t.Errorf("one job's draws wrote %q; want %q", got, want)
	}
}
