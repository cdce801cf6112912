package clients_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/flowerd/flowerd/clients"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// fake is a scripted flowerd for the client's own behaviour (retries,
// deadlines, streams, metadata) that a real server cannot be made to show
// on cue. Its answers are canned and deterministic.
type fake struct {
	flowerdpb.UnimplementedFlowerdServiceServer

	mu        sync.Mutex
	calls     map[string]int
	failFirst int        // the first failFirst calls of each method fail...
	failCode  codes.Code // ...with this code
	block     bool       // every call waits for its context to end
	cutWatch  bool       // WatchJob ends while the job runs
	md        metadata.MD
}

func (f *fake) enter(ctx context.Context, method string) error {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[method]++
	n := f.calls[method]
	f.md, _ = metadata.FromIncomingContext(ctx)
	block, failFirst, code := f.block, f.failFirst, f.failCode
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	if n <= failFirst {
		return status.Errorf(code, "%s: scripted failure %d", method, n)
	}
	return nil
}

func (f *fake) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fake) metadata() metadata.MD {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.md
}

var fakeLabels = []string{"sunflower", "daffodil", "buttercup", "dandelion", "tulip"}

func (f *fake) Classify(ctx context.Context, req *flowerdpb.ClassifyRequest) (*flowerdpb.ClassifyResponse, error) {
	if err := f.enter(ctx, "Classify"); err != nil {
		return nil, err
	}
	if len(req.GetImages()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no images: send at least one JPEG or PNG in images")
	}
	variants := []string{req.GetVariant()}
	if v := req.GetVariant(); v == "" || v == "all" {
		variants = []string{"model1", "model2"}
	} else if v != "model1" && v != "model2" {
		return nil, status.Errorf(codes.NotFound, "not found: variant %q: this server serves model1, model2 (or \"all\")", v)
	}
	k := int(req.GetTopK())
	if k == 0 {
		k = 5
	}
	resp := &flowerdpb.ClassifyResponse{}
	for _, img := range req.GetImages() {
		r := &flowerdpb.ImageResult{Name: img.GetName()}
		for vi, v := range variants {
			p := &flowerdpb.Prediction{Variant: v, Version: int64(3 + vi), LatencyMs: 12.5}
			left := float32(1)
			for i := range min(k, len(fakeLabels)) {
				pr := left * 0.75
				left -= pr
				p.Top = append(p.Top, &flowerdpb.ClassScore{Label: fakeLabels[i], ClassIndex: int32(i), Probability: pr})
			}
			r.Predictions = append(r.Predictions, p)
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func fakeJob(state flowerdpb.JobState, done int32) *flowerdpb.Job {
	return &flowerdpb.Job{Id: "job-1", Variant: "model2", State: state, EpochsDone: done,
		Config: &flowerdpb.TrainRequest{Variant: "model2", Epochs: 3, BatchSize: 64, LearningRate: 0.001, Momentum: 0.9}}
}

func fakeEpoch(n int32) *flowerdpb.EpochMetrics {
	return &flowerdpb.EpochMetrics{Epoch: n, Loss: 2.8 - 0.3*float64(n), Accuracy: 0.1 * float64(n),
		ValLoss: 2.9 - 0.25*float64(n), ValAccuracy: 0.08 * float64(n), EpochSeconds: 10, ImagesPerSec: 100, Version: int64(n)}
}

func (f *fake) Train(ctx context.Context, req *flowerdpb.TrainRequest) (*flowerdpb.TrainResponse, error) {
	if err := f.enter(ctx, "Train"); err != nil {
		return nil, err
	}
	if req.GetEpochs() < 1 {
		return nil, status.Errorf(codes.InvalidArgument, "invalid argument: epochs %d: want 1 to 10000", req.GetEpochs())
	}
	return &flowerdpb.TrainResponse{Jobs: []*flowerdpb.Job{fakeJob(flowerdpb.JobState_JOB_STATE_QUEUED, 0)}}, nil
}

// WatchJob streams job-1: running, three epochs, completed.
func (f *fake) WatchJob(req *flowerdpb.WatchJobRequest, stream flowerdpb.FlowerdService_WatchJobServer) error {
	if err := f.enter(stream.Context(), "WatchJob"); err != nil {
		return err
	}
	if req.GetJobId() != "job-1" {
		return status.Errorf(codes.NotFound, "not found: job %q (ListJobs lists them)", req.GetJobId())
	}
	if err := stream.Send(&flowerdpb.WatchJobResponse{Job: fakeJob(flowerdpb.JobState_JOB_STATE_RUNNING, 0)}); err != nil {
		return err
	}
	for n := int32(1); n <= 3; n++ {
		if f.cutWatch && n == 2 {
			return nil
		}
		j := fakeJob(flowerdpb.JobState_JOB_STATE_RUNNING, n)
		j.LastEpoch = fakeEpoch(n)
		if err := stream.Send(&flowerdpb.WatchJobResponse{Job: j, Epoch: fakeEpoch(n), EtaSeconds: float64(10 * (3 - n))}); err != nil {
			return err
		}
	}
	j := fakeJob(flowerdpb.JobState_JOB_STATE_COMPLETED, 3)
	j.LastEpoch = fakeEpoch(3)
	return stream.Send(&flowerdpb.WatchJobResponse{Job: j})
}

func (f *fake) GetJob(ctx context.Context, req *flowerdpb.GetJobRequest) (*flowerdpb.GetJobResponse, error) {
	if err := f.enter(ctx, "GetJob"); err != nil {
		return nil, err
	}
	return &flowerdpb.GetJobResponse{Job: fakeJob(flowerdpb.JobState_JOB_STATE_COMPLETED, 3)}, nil
}

func (f *fake) ListJobs(ctx context.Context, req *flowerdpb.ListJobsRequest) (*flowerdpb.ListJobsResponse, error) {
	if err := f.enter(ctx, "ListJobs"); err != nil {
		return nil, err
	}
	return &flowerdpb.ListJobsResponse{Jobs: []*flowerdpb.Job{fakeJob(flowerdpb.JobState_JOB_STATE_COMPLETED, 3)}}, nil
}

func (f *fake) CancelJob(ctx context.Context, req *flowerdpb.CancelJobRequest) (*flowerdpb.CancelJobResponse, error) {
	if err := f.enter(ctx, "CancelJob"); err != nil {
		return nil, err
	}
	return &flowerdpb.CancelJobResponse{Job: fakeJob(flowerdpb.JobState_JOB_STATE_CANCELLED, 1)}, nil
}

func (f *fake) SubmitFeedback(ctx context.Context, req *flowerdpb.SubmitFeedbackRequest) (*flowerdpb.SubmitFeedbackResponse, error) {
	if err := f.enter(ctx, "SubmitFeedback"); err != nil {
		return nil, err
	}
	return &flowerdpb.SubmitFeedbackResponse{Id: "1", Stored: 1}, nil
}

func (f *fake) Evaluate(ctx context.Context, req *flowerdpb.EvaluateRequest) (*flowerdpb.EvaluateResponse, error) {
	if err := f.enter(ctx, "Evaluate"); err != nil {
		return nil, err
	}
	return &flowerdpb.EvaluateResponse{Evaluations: []*flowerdpb.Evaluation{{Variant: "model2", Version: 3,
		Split: flowerdpb.Split_SPLIT_VAL, Examples: 170, Loss: 1.2, Top1: 0.61, Top5: 0.9, ImagesPerSec: 250}}}, nil
}

func fakeModel() *flowerdpb.Model {
	return &flowerdpb.Model{Name: "model2", Description: "pool strides 2,2,2, dropout", PoolStrides: []int32{2, 2, 2},
		Regularization: "dropout", KeepProbabilities: []float64{0.5, 0.5}, Parameters: 30_039_441,
		Status: flowerdpb.ModelStatus_MODEL_STATUS_READY, ServedVersion: 3, Trained: true,
		Versions: []*flowerdpb.Version{{Version: 1}, {Version: 2}, {Version: 3}}}
}

func (f *fake) ListModels(ctx context.Context, req *flowerdpb.ListModelsRequest) (*flowerdpb.ListModelsResponse, error) {
	if err := f.enter(ctx, "ListModels"); err != nil {
		return nil, err
	}
	return &flowerdpb.ListModelsResponse{Backend: "go", Models: []*flowerdpb.Model{fakeModel()}}, nil
}

func (f *fake) GetModel(ctx context.Context, req *flowerdpb.GetModelRequest) (*flowerdpb.GetModelResponse, error) {
	if err := f.enter(ctx, "GetModel"); err != nil {
		return nil, err
	}
	if req.GetVariant() != "model2" {
		return nil, status.Errorf(codes.NotFound, "not found: variant %q", req.GetVariant())
	}
	return &flowerdpb.GetModelResponse{Model: fakeModel()}, nil
}

func (f *fake) SetServingVersion(ctx context.Context, req *flowerdpb.SetServingVersionRequest) (*flowerdpb.SetServingVersionResponse, error) {
	if err := f.enter(ctx, "SetServingVersion"); err != nil {
		return nil, err
	}
	m := fakeModel()
	m.Pinned = !req.GetUnpin()
	if m.Pinned {
		m.ServedVersion = req.GetVersion()
	}
	return &flowerdpb.SetServingVersionResponse{Model: m}, nil
}

func (f *fake) GetHistory(ctx context.Context, req *flowerdpb.GetHistoryRequest) (*flowerdpb.GetHistoryResponse, error) {
	if err := f.enter(ctx, "GetHistory"); err != nil {
		return nil, err
	}
	return &flowerdpb.GetHistoryResponse{Runs: []*flowerdpb.Run{{RunId: "run-1", Variant: "model2", Outcome: "completed",
		Epochs: []*flowerdpb.EpochMetrics{fakeEpoch(1), fakeEpoch(2), fakeEpoch(3)}}}}, nil
}

func (f *fake) CompareVariants(ctx context.Context, req *flowerdpb.CompareVariantsRequest) (*flowerdpb.CompareVariantsResponse, error) {
	if err := f.enter(ctx, "CompareVariants"); err != nil {
		return nil, err
	}
	return &flowerdpb.CompareVariantsResponse{Rows: []*flowerdpb.VariantComparison{{Variant: "model2",
		PoolStrides: []int32{2, 2, 2}, Regularization: "dropout", Parameters: 30_039_441, Epochs: 3,
		BestValAccuracy: 0.24, LastValAccuracy: 0.24, GflopPerImage: 1.1}}}, nil
}

// startFake serves f over bufconn and dials it with opts plus the bufconn
// dialer; both stop when the test ends.
func startFake(t testing.TB, f *fake, opts clients.Options) *clients.Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	flowerdpb.RegisterFlowerdServiceServer(gs, f)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	opts.DialOptions = append(opts.DialOptions, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return lis.DialContext(ctx)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := clients.Dial(ctx, "passthrough:///bufnet", opts)
	if err != nil {
		t.Fatalf("Dial = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serveFakeTCP serves a fake on a loopback port for the examples, which
// dial a plain address; it returns the address and a stop function.
func serveFakeTCP(f *fake) (addr string, stop func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("listen: %v", err))
	}
	gs := grpc.NewServer()
	flowerdpb.RegisterFlowerdServiceServer(gs, f)
	go gs.Serve(lis)
	return lis.Addr().String(), gs.Stop
}
