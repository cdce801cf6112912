package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"

	"github.com/flowerd/flowerd/clients"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// twoJobs is a scripted server whose Train starts model1 and model2: model1
// completes after two epochs, model2 fails after one. It runs no network,
// so it also covers watchJobs under -race.
type twoJobs struct {
	flowerdpb.UnimplementedFlowerdServiceServer
}

func (twoJobs) Train(ctx context.Context, req *flowerdpb.TrainRequest) (*flowerdpb.TrainResponse, error) {
	cfg := &flowerdpb.TrainRequest{Epochs: 2}
	return &flowerdpb.TrainResponse{Jobs: []*flowerdpb.Job{
		{Id: "j1", Variant: "model1", State: flowerdpb.JobState_JOB_STATE_QUEUED, Config: cfg},
		{Id: "j2", Variant: "model2", State: flowerdpb.JobState_JOB_STATE_QUEUED, Config: cfg},
	}}, nil
}

func (twoJobs) WatchJob(req *flowerdpb.WatchJobRequest, stream flowerdpb.FlowerdService_WatchJobServer) error {
	cfg := &flowerdpb.TrainRequest{Epochs: 2}
	variant, epochs, end, reason := "model1", int32(2), flowerdpb.JobState_JOB_STATE_COMPLETED, ""
	if req.GetJobId() == "j2" {
		variant, epochs, end, reason = "model2", 1, flowerdpb.JobState_JOB_STATE_FAILED, "disk full"
	}
	for n := int32(1); n <= epochs; n++ {
		e := &flowerdpb.EpochMetrics{Epoch: n, Loss: 1, ValAccuracy: 0.5}
		j := &flowerdpb.Job{Id: req.GetJobId(), Variant: variant, State: flowerdpb.JobState_JOB_STATE_RUNNING, Config: cfg, EpochsDone: n, LastEpoch: e}
		if err := stream.Send(&flowerdpb.WatchJobResponse{Job: j, Epoch: e}); err != nil {
			return err
		}
	}
	return stream.Send(&flowerdpb.WatchJobResponse{Job: &flowerdpb.Job{Id: req.GetJobId(), Variant: variant, State: end,
		Config: cfg, EpochsDone: epochs, Error: reason}})
}

func TestTrainWatchesEveryJob(t *testing.T) {
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	flowerdpb.RegisterFlowerdServiceServer(gs, twoJobs{})
	go gs.Serve(lis)
	defer gs.Stop()
	opts := clients.Options{DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return lis.DialContext(ctx)
	})}}
	for _, tty := range []bool{false, true} {
		t.Run(fmt.Sprint("tty=", tty), func(t *testing.T) {
			var out, errb bytes.Buffer
			a := &app{stdout: &out, stderr: &errb, tty: tty, client: opts, getenv: func(string) string { return "" }}
			code := a.main(t.Context(), []string{"-addr", "passthrough:///fake", "train", "-epochs", "2"})
			if code != 1 || !strings.Contains(errb.String(), "job j2 of model2 ended FAILED: disk full") {
				t.Errorf("train with a failing job exited %d with %q; want 1 naming the failed job", code, errb.String())
			}
			got := out.String()
			for _, want := range []string{"started job j1: model1", "started job j2: model2", "model1  COMPLETED", "model2  FAILED", "(disk full)"} {
				if !strings.Contains(got, want) {
					t.Errorf("train printed %q; want it to contain %q", got, want)
				}
			}
			if tty && !strings.Contains(got, "\x1b[1A\r") {
				t.Errorf("train on a terminal printed %q; want two lines redrawn in place", got)
			}
			if !tty && strings.Count(got, "\n") != 2+3+2 {
				t.Errorf("train to a pipe printed %q; want 2 start lines, 3 epoch lines and 2 end lines", got)
			}
		})
	}
}
