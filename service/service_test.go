package service

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/flowerd/flowerd/checkpoints"
	"github.com/flowerd/flowerd/model"
	"github.com/flowerd/flowerd/model/dataset"
	"github.com/flowerd/flowerd/model/dataset/datasettest"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// dataDir is Oxford 17 Flowers: $FLOWERD_DATA, else the shared copy beside
// the checkout.
func dataDir(t testing.TB) string { return datasettest.Dir(t) }

// harness is a real server over bufconn with the real generated client.
type harness struct {
	srv    *Server
	store  *checkpoints.Store
	client flowerdpb.FlowerdServiceClient
	health healthpb.HealthClient
	gs     *grpc.Server
	conn   *grpc.ClientConn
}

var (
	backendOnce sync.Once
	backend     *model.Backend
)

func testBackend(t testing.TB) *model.Backend {
	backendOnce.Do(func() {
		var err error
		if backend, err = model.NewBackend("go"); err != nil {
			t.Fatalf("NewBackend = %v", err)
		}
	})
	return backend
}

// startServer serves variants from the store in dir (opened here), with a
// small split of the real data (one image per class per split) so that
// training in tests is quick while the served networks are full size.
func startServer(t *testing.T, dir string, variants []string, opts Options) *harness {
	t.Helper()
	store, err := checkpoints.Open(dir, checkpoints.Options{})
	if err != nil {
		t.Fatalf("checkpoints.Open = %v", err)
	}
	opts.Backend, opts.Store, opts.Variants = testBackend(t), store, variants
	opts.DatasetDir = dataDir(t)
	opts.Dataset = dataset.Options{TrainPerClass: 2, ValPerClass: 1, TestPerClass: 1, Seed: 3}
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	srv.Register(gs)
	go gs.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{srv: srv, store: store, client: flowerdpb.NewFlowerdServiceClient(conn), health: healthpb.NewHealthClient(conn), gs: gs, conn: conn}
	srv.Start()
	h.waitServing(t, "")
	return h
}

// stop shuts down like the binary does: jobs, then calls, then the store.
func (h *harness) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := h.srv.Close(ctx); err != nil {
		t.Errorf("Close = %v", err)
	}
	h.conn.Close()
	h.gs.GracefulStop()
	if err := h.store.Close(); err != nil {
		t.Errorf("store.Close = %v", err)
	}
}

func (h *harness) waitServing(t *testing.T, service string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for {
		resp, err := h.health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("health %q never SERVING: %v %v", service, resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func flowerJPEG(t testing.TB, class string) []byte {
	t.Helper()
	dir := filepath.Join(dataDir(t), class)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, entries[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// hugePNG is a valid PNG header that declares a 100000x100000 image.
func hugePNG() []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], 100000)
	binary.BigEndian.PutUint32(ihdr[4:], 100000)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: code %v (%v); want %v", what, got, err, want)
		return
	}
	if want != codes.OK && strings.TrimSpace(status.Convert(err).Message()) == "" {
		t.Errorf("%s: %v with an empty message", what, want)
	}
}

// TestService drives every RPC of a server holding the five full-size
// variants.
func TestService(t *testing.T) {
	if testing.Short() {
		t.Skip("loads and trains full-size networks: skipped under -short")
	}
	h := startServer(t, t.TempDir(), nil, Options{MaxRequestBytes: 4 << 20})
	defer h.stop(t)
	ctx := context.Background()
	sunflower := flowerJPEG(t, "sunflower")

	t.Run("ListModels", func(t *testing.T) {
		resp, err := h.client.ListModels(ctx, &flowerdpb.ListModelsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int64{"model1": 87_711_121, "model2": 30_039_441, "model3": 37_379_473, "model4": 46_816_657, "model5": 37_379_473}
		if len(resp.GetModels()) != 5 || resp.GetBackend() != "go" {
			t.Fatalf("ListModels = %d models on %q; want 5 on go", len(resp.GetModels()), resp.GetBackend())
		}
		for _, m := range resp.GetModels() {
			if m.GetParameters() != want[m.GetName()] || m.GetStatus() != flowerdpb.ModelStatus_MODEL_STATUS_READY || m.GetTrained() {
				t.Errorf("model %s: %d parameters, status %v, trained %v; want %d, READY, untrained",
					m.GetName(), m.GetParameters(), m.GetStatus(), m.GetTrained(), want[m.GetName()])
			}
			if !strings.Contains(m.GetStatusMessage(), "untrained") {
				t.Errorf("model %s status message %q does not say it is untrained", m.GetName(), m.GetStatusMessage())
			}
		}
		for _, v := range model.VariantNames() {
			h.waitServing(t, v)
		}
	})

	t.Run("Classify", func(t *testing.T) {
		resp, err := h.client.Classify(ctx, &flowerdpb.ClassifyRequest{Images: []*flowerdpb.Image{
			{Data: sunflower, Name: "sun.jpg"}, {Data: flowerJPEG(t, "tulip")}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResults()) != 2 || resp.GetResults()[0].GetName() != "sun.jpg" {
			t.Fatalf("Classify results = %v", resp.GetResults())
		}
		for _, r := range resp.GetResults() {
			if len(r.GetPredictions()) != 5 {
				t.Fatalf("image %q: %d predictions; want one per variant", r.GetName(), len(r.GetPredictions()))
			}
			for _, p := range r.GetPredictions() {
				top := p.GetTop()
				if len(top) != DefaultTopK || p.GetVersion() != 0 || p.GetLatencyMs() <= 0 {
					t.Errorf("%s: %d classes, version %d, latency %v; want %d, 0, > 0", p.GetVariant(), len(top), p.GetVersion(), p.GetLatencyMs(), DefaultTopK)
				}
				for i := 1; i < len(top); i++ {
					if top[i].GetProbability() > top[i-1].GetProbability() {
						t.Errorf("%s: top classes not sorted: %v", p.GetVariant(), top)
					}
				}
			}
		}
		one, err := h.client.Classify(ctx, &flowerdpb.ClassifyRequest{Images: []*flowerdpb.Image{{Data: sunflower}}, Variant: "model3", TopK: 17})
		if err != nil {
			t.Fatal(err)
		}
		if p := one.GetResults()[0].GetPredictions(); len(p) != 1 || p[0].GetVariant() != "model3" || len(p[0].GetTop()) != 17 {
			t.Errorf("Classify(model3, k=17) = %v", p)
		}
	})

	t.Run("ClassifyBadInput", func(t *testing.T) {
		img := func(b []byte) []*flowerdpb.Image { return []*flowerdpb.Image{{Data: b}} }
		tests := []struct {
			name string
			req  *flowerdpb.ClassifyRequest
			want codes.Code
		}{
			{"not an image", &flowerdpb.ClassifyRequest{Images: img([]byte("this is not an image"))}, codes.InvalidArgument},
			{"truncated jpeg", &flowerdpb.ClassifyRequest{Images: img(sunflower[:len(sunflower)/3])}, codes.InvalidArgument},
			{"unsupported format", &flowerdpb.ClassifyRequest{Images: img([]byte("BM\x36\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00"))}, codes.InvalidArgument},
			{"huge declared size", &flowerdpb.ClassifyRequest{Images: img(hugePNG())}, codes.InvalidArgument},
			{"empty image", &flowerdpb.ClassifyRequest{Images: img(nil)}, codes.InvalidArgument},
			{"no images", &flowerdpb.ClassifyRequest{}, codes.InvalidArgument},
			{"unknown variant", &flowerdpb.ClassifyRequest{Images: img(sunflower), Variant: "model9"}, codes.NotFound},
			{"k too large", &flowerdpb.ClassifyRequest{Images: img(sunflower), TopK: 18}, codes.InvalidArgument},
			{"k negative", &flowerdpb.ClassifyRequest{Images: img(sunflower), TopK: -1}, codes.InvalidArgument},
			{"oversized", &flowerdpb.ClassifyRequest{Images: img(make([]byte, 5<<20))}, codes.ResourceExhausted},
		}
		for _, tc := range tests {
			_, err := h.client.Classify(ctx, tc.req)
			wantCode(t, "Classify("+tc.name+")", err, tc.want)
		}
	})

	var firstJob string
	t.Run("TrainWhileClassifying", func(t *testing.T) {
		resp, err := h.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 3, BatchSize: 8})
		if err != nil {
			t.Fatal(err)
		}
		job := resp.GetJobs()[0]
		firstJob = job.GetId()
		if job.GetConfig().GetLearningRate() != model.DefaultLearningRate || job.GetConfig().GetMomentum() != model.DefaultMomentum {
			t.Errorf("job config %v; want the study's defaults filled in", job.GetConfig())
		}
		watch, err := h.client.WatchJob(ctx, &flowerdpb.WatchJobRequest{JobId: job.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		// Classify the training variant until the job ends: every call must
		// succeed, and the served version must move.
		stop := make(chan struct{})
		versions := map[int64]bool{}
		var calls int
		var classifyErr error
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := h.client.Classify(ctx, &flowerdpb.ClassifyRequest{Images: []*flowerdpb.Image{{Data: sunflower}}, Variant: "model2"})
				if err != nil {
					classifyErr = err
					return
				}
				calls++
				versions[r.GetResults()[0].GetPredictions()[0].GetVersion()] = true
				time.Sleep(20 * time.Millisecond) // leave the trainer some of the 2 cores
			}
		})
		var epochs []int32
		var last *flowerdpb.Job
		for {
			ev, err := watch.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("WatchJob.Recv = %v", err)
			}
			last = ev.GetJob()
			if e := ev.GetEpoch(); e != nil && (len(epochs) == 0 || epochs[len(epochs)-1] != e.GetEpoch()) {
				epochs = append(epochs, e.GetEpoch())
			}
		}
		close(stop)
		wg.Wait()
		if classifyErr != nil {
			t.Errorf("Classify during training failed after %d calls: %v", calls, classifyErr)
		}
		if last.GetState() != flowerdpb.JobState_JOB_STATE_COMPLETED || len(epochs) != 3 || epochs[2] != 3 {
			t.Fatalf("job ended %v (%s) after epochs %v; want COMPLETED after 1, 2, 3", last.GetState(), last.GetError(), epochs)
		}
		if len(versions) < 2 || !versions[0] {
			t.Errorf("Classify saw versions %v over %d calls; want the initial 0 and at least one published", versions, calls)
		}
		m, err := h.client.GetModel(ctx, &flowerdpb.GetModelRequest{Variant: "model2"})
		if err != nil {
			t.Fatal(err)
		}
		if info := m.GetModel(); info.GetServedVersion() != 3 || !info.GetTrained() || len(info.GetVersions()) != 3 {
			t.Errorf("model2 after training: served %d, trained %v, %d versions; want 3, true, 3", info.GetServedVersion(), info.GetTrained(), len(info.GetVersions()))
		}
		hist, err := h.client.GetHistory(ctx, &flowerdpb.GetHistoryRequest{Variant: "model2"})
		if err != nil {
			t.Fatal(err)
		}
		if runs := hist.GetRuns(); len(runs) != 1 || len(runs[0].GetEpochs()) != 3 || runs[0].GetOutcome() != "completed" {
			t.Errorf("GetHistory = %v; want one completed run of 3 epochs", runs)
		}
		got, err := h.client.GetJob(ctx, &flowerdpb.GetJobRequest{JobId: job.GetId()})
		if err != nil || got.GetJob().GetState() != flowerdpb.JobState_JOB_STATE_COMPLETED || got.GetJob().GetEpochsDone() != 3 {
			t.Errorf("GetJob = %v, %v; want COMPLETED with 3 epochs", got, err)
		}
	})

	t.Run("SecondJobRefusedAndCancel", func(t *testing.T) {
		resp, err := h.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 500, BatchSize: 4})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.GetJobs()[0].GetId()
		_, err = h.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 1})
		wantCode(t, "second Train(model2)", err, codes.FailedPrecondition)
		if !strings.Contains(status.Convert(err).Message(), id) {
			t.Errorf("second Train message %q does not name the running job %s", status.Convert(err).Message(), id)
		}
		_, err = h.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "all", Epochs: 1})
		wantCode(t, "Train(all) while model2 trains", err, codes.FailedPrecondition)
		c, err := h.client.CancelJob(ctx, &flowerdpb.CancelJobRequest{JobId: id})
		if err != nil {
			t.Fatal(err)
		}
		if c.GetJob().GetState() != flowerdpb.JobState_JOB_STATE_CANCELLED {
			t.Errorf("CancelJob state = %v; want CANCELLED", c.GetJob().GetState())
		}
		_, err = h.client.CancelJob(ctx, &flowerdpb.CancelJobRequest{JobId: id})
		wantCode(t, "CancelJob(ended job)", err, codes.FailedPrecondition)
		list, err := h.client.ListJobs(ctx, &flowerdpb.ListJobsRequest{Variant: "model2"})
		if err != nil || len(list.GetJobs()) != 2 || list.GetJobs()[0].GetId() != id || list.GetJobs()[1].GetId() != firstJob {
			t.Errorf("ListJobs(model2) = %v, %v; want the cancelled job then the first", list, err)
		}
	})

	t.Run("BadRequests", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			call func() error
			want codes.Code
		}{
			{"Train epochs 0", func() error { _, err := h.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2"}); return err }, codes.InvalidArgument},
			{"Train batch -1", func() error {
				_, err := h.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 1, BatchSize: -1})
				return err
			}, codes.InvalidArgument},
			{"Train momentum 1.5", func() error {
				_, err := h.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 1, Momentum: 1.5})
				return err
			}, codes.InvalidArgument},
			{"Train lr -1", func() error {
				_, err := h.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 1, LearningRate: -1})
				return err
			}, codes.InvalidArgument},
			{"Train unknown variant", func() error {
				_, err := h.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "alexnet", Epochs: 1})
				return err
			}, codes.NotFound},
			{"Train missing dataset", func() error {
				_, err := h.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 1, DatasetDir: "/no/such/dir"})
				return err
			}, codes.InvalidArgument},
			{"GetJob unknown", func() error { _, err := h.client.GetJob(ctx, &flowerdpb.GetJobRequest{JobId: "nope"}); return err }, codes.NotFound},
			{"CancelJob unknown", func() error {
				_, err := h.client.CancelJob(ctx, &flowerdpb.CancelJobRequest{JobId: "nope"})
				return err
			}, codes.NotFound},
			{"WatchJob unknown", func() error {
				s, err := h.client.WatchJob(ctx, &flowerdpb.WatchJobRequest{JobId: "nope"})
				if err != nil {
					return err
				}
				_, err = s.Recv()
				return err
			}, codes.NotFound},
			{"GetModel all", func() error { _, err := h.client.GetModel(ctx, &flowerdpb.GetModelRequest{}); return err }, codes.InvalidArgument},
			{"SetServingVersion missing", func() error {
				_, err := h.client.SetServingVersion(ctx, &flowerdpb.SetServingVersionRequest{Variant: "model2", Version: 99})
				return err
			}, codes.NotFound},
			{"Evaluate missing dataset", func() error {
				_, err := h.client.Evaluate(ctx, &flowerdpb.EvaluateRequest{Variant: "model2", DatasetDir: "/no/such/dir"})
				return err
			}, codes.InvalidArgument},
			{"Evaluate unknown version", func() error {
				_, err := h.client.Evaluate(ctx, &flowerdpb.EvaluateRequest{Variant: "model2", Version: 99})
				return err
			}, codes.NotFound},
			{"Feedback bad label", func() error {
				_, err := h.client.SubmitFeedback(ctx, &flowerdpb.SubmitFeedbackRequest{Image: &flowerdpb.Image{Data: sunflower}, Label: "rose"})
				return err
			}, codes.InvalidArgument},
			{"Feedback not an image", func() error {
				_, err := h.client.SubmitFeedback(ctx, &flowerdpb.SubmitFeedbackRequest{Image: &flowerdpb.Image{Data: []byte("x")}, Label: "tulip"})
				return err
			}, codes.InvalidArgument},
			{"History unknown run", func() error {
				_, err := h.client.GetHistory(ctx, &flowerdpb.GetHistoryRequest{Variant: "model2", RunId: "nope"})
				return err
			}, codes.NotFound},
		} {
			wantCode(t, tc.name, tc.call(), tc.want)
		}
	})

	t.Run("Evaluate", func(t *testing.T) {
		resp, err := h.client.Evaluate(ctx, &flowerdpb.EvaluateRequest{Variant: "model2", Split: flowerdpb.Split_SPLIT_TEST})
		if err != nil {
			t.Fatal(err)
		}
		ev := resp.GetEvaluations()[0]
		if ev.GetExamples() != 17 || len(ev.GetPerClass()) != 17 || len(ev.GetConfusion()) != 17 || ev.GetVersion() != 3 || ev.GetTop5() < ev.GetTop1() {
			t.Errorf("Evaluate(model2, test) = %d examples, %d classes, %d rows, version %d, top1 %v top5 %v",
				ev.GetExamples(), len(ev.GetPerClass()), len(ev.GetConfusion()), ev.GetVersion(), ev.GetTop1(), ev.GetTop5())
		}
		old, err := h.client.Evaluate(ctx, &flowerdpb.EvaluateRequest{Variant: "model2", Version: 1})
		if err != nil || old.GetEvaluations()[0].GetVersion() != 1 {
			t.Errorf("Evaluate(model2, version 1) = %v, %v", old, err)
		}
	})

	t.Run("ServingVersion", func(t *testing.T) {
		resp, err := h.client.SetServingVersion(ctx, &flowerdpb.SetServingVersionRequest{Variant: "model2", Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		if m := resp.GetModel(); m.GetServedVersion() != 1 || !m.GetPinned() || m.GetStatus() != flowerdpb.ModelStatus_MODEL_STATUS_READY || m.GetJobId() != "" {
			t.Errorf("after pinning 1: served %d, pinned %v, status %v, job %q; want 1, true, READY, none",
				m.GetServedVersion(), m.GetPinned(), m.GetStatus(), m.GetJobId())
		}
		c, err := h.client.Classify(ctx, &flowerdpb.ClassifyRequest{Images: []*flowerdpb.Image{{Data: sunflower}}, Variant: "model2"})
		if err != nil || c.GetResults()[0].GetPredictions()[0].GetVersion() != 1 {
			t.Errorf("Classify after pinning 1 = %v, %v; want version 1", c, err)
		}
		resp, err = h.client.SetServingVersion(ctx, &flowerdpb.SetServingVersionRequest{Variant: "model2", Unpin: true})
		if err != nil || resp.GetModel().GetServedVersion() != 3 || resp.GetModel().GetPinned() {
			t.Errorf("unpin = %v, %v; want served 3, not pinned", resp, err)
		}
	})

	t.Run("FeedbackFineTune", func(t *testing.T) {
		for _, class := range []string{"tulip", "sunflower"} {
			r, err := h.client.SubmitFeedback(ctx, &flowerdpb.SubmitFeedbackRequest{Image: &flowerdpb.Image{Data: flowerJPEG(t, class)}, Label: class})
			if err != nil {
				t.Fatal(err)
			}
			if r.GetId() == "" {
				t.Error("SubmitFeedback returned no id")
			}
		}
		before, err := h.client.GetModel(ctx, &flowerdpb.GetModelRequest{Variant: "model2"})
		if err != nil {
			t.Fatal(err)
		}
		var servedEpoch int32
		var newest int64
		for _, v := range before.GetModel().GetVersions() {
			newest = max(newest, v.GetVersion())
			if v.GetVersion() == before.GetModel().GetServedVersion() {
				servedEpoch = v.GetEpoch()
			}
		}
		resp, err := h.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 1, BatchSize: 8, UseFeedback: true,
			Publish: flowerdpb.PublishPolicy_PUBLISH_POLICY_AT_END})
		if err != nil {
			t.Fatal(err)
		}
		job := waitJob(t, h, resp.GetJobs()[0].GetId())
		if job.GetState() != flowerdpb.JobState_JOB_STATE_COMPLETED || job.GetLastEpoch().GetEpoch() != servedEpoch+1 || job.GetLastEpoch().GetVersion() != newest+1 {
			t.Errorf("fine-tune job = %v; want COMPLETED at epoch %d, version %d", job, servedEpoch+1, newest+1)
		}
	})

	t.Run("CompareVariants", func(t *testing.T) {
		// Test accuracy is reported for the served version only.
		if _, err := h.client.Evaluate(ctx, &flowerdpb.EvaluateRequest{Variant: "model2", Split: flowerdpb.Split_SPLIT_TEST}); err != nil {
			t.Fatal(err)
		}
		resp, err := h.client.CompareVariants(ctx, &flowerdpb.CompareVariantsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetRows()) != 5 {
			t.Fatalf("CompareVariants gave %d rows", len(resp.GetRows()))
		}
		for _, r := range resp.GetRows() {
			if r.GetClassifySamples() == 0 || r.GetClassifyP50Ms() <= 0 || r.GetClassifyP99Ms() < r.GetClassifyP50Ms() || r.GetGflopPerImage() <= 0 {
				t.Errorf("%s: latency %d samples p50 %v p99 %v, %v GFLOP", r.GetVariant(), r.GetClassifySamples(), r.GetClassifyP50Ms(), r.GetClassifyP99Ms(), r.GetGflopPerImage())
			}
			if r.GetVariant() == "model2" && (r.GetEpochs() < 4 || r.GetTotalTrainSeconds() <= 0 || r.GetLastValAccuracy() < 0) {
				t.Errorf("model2 row: %d epochs, %v s; want at least 4 epochs of training", r.GetEpochs(), r.GetTotalTrainSeconds())
			}
			if r.GetVariant() == "model2" && !r.GetHasTest() {
				t.Errorf("model2 row has no test accuracy; it was evaluated on the test split")
			}
		}
	})
}

// waitCompleted waits for a job to end and fails the test unless it completed.
func waitCompleted(t *testing.T, h *harness, id string) {
	t.Helper()
	if job := waitJob(t, h, id); job.GetState() != flowerdpb.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("job = %v; want COMPLETED", job)
	}
}

// waitJob watches a job to its end and returns its last state.
func waitJob(t *testing.T, h *harness, id string) *flowerdpb.Job {
	t.Helper()
	s, err := h.client.WatchJob(context.Background(), &flowerdpb.WatchJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	var last *flowerdpb.Job
	for {
		ev, err := s.Recv()
		if err == io.EOF {
			return last
		}
		if err != nil {
			t.Fatalf("WatchJob(%s) = %v", id, err)
		}
		last = ev.GetJob()
	}
}

// TestRestartWithInterruptedJob stops the server while a job trains, and
// checks that the next server shows the job interrupted, serves its last
// checkpoint and resumes from it.
func TestRestartWithInterruptedJob(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a full-size network: skipped under -short")
	}
	dir := t.TempDir()
	ctx := context.Background()
	h := startServer(t, dir, []string{"model2"}, Options{})
	resp, err := h.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 100, BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetJobs()[0].GetId()
	watch, err := h.client.WatchJob(ctx, &flowerdpb.WatchJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := watch.Recv()
		if err != nil {
			t.Fatalf("WatchJob = %v before the first epoch", err)
		}
		if ev.GetEpoch().GetVersion() > 0 {
			break
		}
	}
	h.stop(t)

	h = startServer(t, dir, []string{"model2"}, Options{})
	defer func() { h.stop(t) }()
	got, err := h.client.GetJob(ctx, &flowerdpb.GetJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetJob().GetState() != flowerdpb.JobState_JOB_STATE_INTERRUPTED || got.GetJob().GetEpochsDone() < 1 {
		t.Errorf("job after restart: %v with %d epochs; want INTERRUPTED after at least 1", got.GetJob().GetState(), got.GetJob().GetEpochsDone())
	}
	m, err := h.client.GetModel(ctx, &flowerdpb.GetModelRequest{Variant: "model2"})
	if err != nil {
		t.Fatal(err)
	}
	served := m.GetModel().GetServedVersion()
	if served < 1 || !m.GetModel().GetTrained() {
		t.Fatalf("model2 after restart serves version %d; want its checkpoint", served)
	}
	// A test-split evaluation of the served version is recorded in the
	// store: CompareVariants still reports it after the next restart.
	if _, err := h.client.Evaluate(ctx, &flowerdpb.EvaluateRequest{Variant: "model2", Split: flowerdpb.Split_SPLIT_TEST}); err != nil {
		t.Fatal(err)
	}
	h.stop(t)
	h = startServer(t, dir, []string{"model2"}, Options{})
	cmp, err := h.client.CompareVariants(ctx, &flowerdpb.CompareVariantsRequest{})
	if err != nil || !cmp.GetRows()[0].GetHasTest() {
		t.Errorf("CompareVariants after a restart = %v, %v; want the recorded test accuracy", cmp, err)
	}
	resp, err = h.client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 1, BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	job := waitJob(t, h, resp.GetJobs()[0].GetId())
	if job.GetState() != flowerdpb.JobState_JOB_STATE_COMPLETED || int64(job.GetLastEpoch().GetEpoch()) != served+1 {
		t.Errorf("resumed job = %v; want COMPLETED at epoch %d", job, served+1)
	}
}
