package service

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
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
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// TestShutdownDrainsClassify shuts down as the binary does (BeginShutdown,
// GracefulStop, Close) while a training job runs and Classify calls wait in
// the batcher: every call is answered, and the job is recorded interrupted.
func TestShutdownDrainsClassify(t *testing.T) {
	if testing.Short() {
		t.Skip("loads and trains a network: skipped under -short")
	}
	store, err := checkpoints.Open(t.TempDir(), checkpoints.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	srv, err := New(Options{Backend: testBackend(t), Store: store, Variants: []string{"model2"},
		DatasetDir: dataDir(t), Model: model.Options{ImageSize: 67},
		Dataset: dataset.Options{TrainPerClass: 1, ValPerClass: 1, TestPerClass: 1, Seed: 3},
		// Calls wait for each other before a pass: they are queued when
		// the shutdown begins.
		MaxBatch: 64, MaxWait: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var inClassify atomic.Int32
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if strings.HasSuffix(info.FullMethod, "/Classify") {
			inClassify.Add(1)
		}
		return h(ctx, req)
	}))
	srv.Register(gs)
	go gs.Serve(lis)
	defer gs.Stop()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := flowerdpb.NewFlowerdServiceClient(conn)
	srv.Start()
	waitLoaded(t, srv, "model2")

	ctx := context.Background()
	train, err := client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 1000, BatchSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	jobID := train.GetJobs()[0].GetId()
	for {
		j, err := client.GetJob(ctx, &flowerdpb.GetJobRequest{JobId: jobID})
		if err != nil {
			t.Fatal(err)
		}
		if j.GetJob().GetState() == flowerdpb.JobState_JOB_STATE_RUNNING {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	const calls = 4
	sunflower := flowerJPEG(t, "sunflower")
	errs := make([]error, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			_, errs[i] = client.Classify(ctx, &flowerdpb.ClassifyRequest{Images: []*flowerdpb.Image{{Data: sunflower}}, Variant: "model2"})
		})
	}
	for inClassify.Load() < calls {
		time.Sleep(time.Millisecond)
	}

	srv.BeginShutdown()
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health after BeginShutdown = %v, %v; want NOT_SERVING", hc, err)
	}
	_, err = client.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 1})
	wantCode(t, "Train after BeginShutdown", err, codes.Unavailable)
	gs.GracefulStop()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Classify %d, in flight when the shutdown began = %v; want an answer", i, err)
		}
	}
	closeCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := srv.Close(closeCtx); err != nil {
		t.Fatalf("Close = %v", err)
	}
	rec, err := store.Job(jobID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != checkpoints.JobInterrupted {
		t.Errorf("job after shutdown = %s (%s); want interrupted", rec.State, rec.Reason)
	}
	// After Close, Classify is refused as the server shutting down.
	_, err = srv.Classify(ctx, &flowerdpb.ClassifyRequest{Images: []*flowerdpb.Image{{Data: sunflower}}, Variant: "model2"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Classify after Close = %v; want Unavailable", err)
	}
}
