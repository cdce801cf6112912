package clients_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowerd/flowerd/clients"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// fastRetry keeps retry tests quick.
var fastRetry = clients.Retry{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}

// calls is every client method, the RPC it makes and whether the client may
// retry it.
var calls = []struct {
	method     string
	rpc        string
	idempotent bool
	call       func(context.Context, *clients.Client) error
}{
	{"Classify", "Classify", true, func(ctx context.Context, c *clients.Client) error {
		_, err := c.ClassifyBytes(ctx, "model2", []byte("jpeg"))
		return err
	}},
	{"Evaluate", "Evaluate", true, func(ctx context.Context, c *clients.Client) error {
		_, err := c.Evaluate(ctx, &flowerdpb.EvaluateRequest{Variant: "model2"})
		return err
	}},
	{"Models", "ListModels", true, func(ctx context.Context, c *clients.Client) error {
		_, err := c.Models(ctx)
		return err
	}},
	{"Model", "GetModel", true, func(ctx context.Context, c *clients.Client) error {
		_, err := c.Model(ctx, "model2")
		return err
	}},
	{"Job", "GetJob", true, func(ctx context.Context, c *clients.Client) error {
		_, err := c.Job(ctx, "job-1")
		return err
	}},
	{"Jobs", "ListJobs", true, func(ctx context.Context, c *clients.Client) error {
		_, err := c.Jobs(ctx, "")
		return err
	}},
	{"History", "GetHistory", true, func(ctx context.Context, c *clients.Client) error {
		_, err := c.History(ctx, &flowerdpb.GetHistoryRequest{Variant: "model2"})
		return err
	}},
	{"Compare", "CompareVariants", true, func(ctx context.Context, c *clients.Client) error {
		_, err := c.Compare(ctx)
		return err
	}},
	{"Train", "Train", false, func(ctx context.Context, c *clients.Client) error {
		_, err := c.Train(ctx, &flowerdpb.TrainRequest{Variant: "model2", Epochs: 1})
		return err
	}},
	{"Cancel", "CancelJob", false, func(ctx context.Context, c *clients.Client) error {
		_, err := c.Cancel(ctx, "job-1")
		return err
	}},
	{"SetServingVersion", "SetServingVersion", false, func(ctx context.Context, c *clients.Client) error {
		_, err := c.SetServingVersion(ctx, "model2", 2)
		return err
	}},
	{"Unpin", "SetServingVersion", false, func(ctx context.Context, c *clients.Client) error {
		_, err := c.Unpin(ctx, "model2")
		return err
	}},
	{"SubmitFeedback", "SubmitFeedback", false, func(ctx context.Context, c *clients.Client) error {
		_, err := c.SubmitFeedback(ctx, []byte("jpeg"), "tulip")
		return err
	}},
}

// TestRetryOnUnavailable: idempotent calls are retried through two
// Unavailable answers and succeed; the others fail at once, tried once.
func TestRetryOnUnavailable(t *testing.T) {
	for _, tc := range calls {
		t.Run(tc.method, func(t *testing.T) {
			f := &fake{failFirst: 2, failCode: codes.Unavailable}
			c := startFake(t, f, clients.Options{Retry: fastRetry})
			err := tc.call(context.Background(), c)
			wantTries := 3
			if !tc.idempotent {
				wantTries = 1
				if got := status.Code(err); got != codes.Unavailable {
					t.Errorf("%s = %v; want Unavailable, not retried", tc.method, err)
				}
			} else if err != nil {
				t.Errorf("%s = %v; want success after two retries", tc.method, err)
			}
			if got := f.count(tc.rpc); got != wantTries {
				t.Errorf("%s tried %s %d times; want %d", tc.method, tc.rpc, got, wantTries)
			}
		})
	}
}

// TestRetryGivesUp: after MaxAttempts the last Unavailable comes back.
func TestRetryGivesUp(t *testing.T) {
	f := &fake{failFirst: 100, failCode: codes.Unavailable}
	c := startFake(t, f, clients.Options{Retry: fastRetry})
	_, err := c.Models(context.Background())
	if got := status.Code(err); got != codes.Unavailable {
		t.Fatalf("Models = %v; want Unavailable", err)
	}
	if got := f.count("ListModels"); got != fastRetry.MaxAttempts {
		t.Errorf("ListModels tried %d times; want %d", got, fastRetry.MaxAttempts)
	}
}

// TestNoRetryOnOtherCodes: only Unavailable is retried, and every error
// keeps its code through the client's wrapping.
func TestNoRetryOnOtherCodes(t *testing.T) {
	for _, code := range []codes.Code{codes.NotFound, codes.InvalidArgument, codes.FailedPrecondition,
		codes.ResourceExhausted, codes.Internal, codes.DataLoss} {
		t.Run(code.String(), func(t *testing.T) {
			f := &fake{failFirst: 1, failCode: code}
			c := startFake(t, f, clients.Options{Retry: fastRetry})
			_, err := c.Model(context.Background(), "model2")
			if got := status.Code(err); got != code {
				t.Errorf("Model = %v; want %v", err, code)
			}
			if !strings.HasPrefix(err.Error(), "get model model2: ") {
				t.Errorf("Model error %q does not say what was being done", err)
			}
			if got := f.count("GetModel"); got != 1 {
				t.Errorf("GetModel tried %d times; want 1", got)
			}
		})
	}
}

// TestTimeouts: each call kind gets its deadline; a shorter caller deadline
// wins; a negative timeout leaves only the caller's.
func TestTimeouts(t *testing.T) {
	f := &fake{block: true}
	c := startFake(t, f, clients.Options{Retry: fastRetry, Timeouts: clients.Timeouts{
		Info: 20 * time.Millisecond, Classify: 20 * time.Millisecond, Evaluate: -1, Control: 20 * time.Millisecond}})
	ctx := context.Background()
	for _, tc := range calls {
		if tc.method == "Evaluate" {
			continue
		}
		start := time.Now()
		err := tc.call(ctx, c)
		if got := status.Code(err); got != codes.DeadlineExceeded {
			t.Errorf("%s against a server that never answers = %v; want DeadlineExceeded", tc.method, err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("%s took %v to time out", tc.method, took)
		}
	}
	// Evaluate has no client deadline: the caller's applies.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := c.Evaluate(cctx, &flowerdpb.EvaluateRequest{}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("Evaluate with the caller's deadline = %v; want DeadlineExceeded", err)
	}
	// Watch has no deadline of its own: cancelling the context ends it.
	wctx, wcancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, wcancel)
	var werr error
	for _, err := range c.Watch(wctx, "job-1") {
		werr = err
	}
	if got := status.Code(werr); got != codes.Canceled {
		t.Errorf("Watch after cancel = %v; want Canceled", werr)
	}
}

func TestWatch(t *testing.T) {
	ctx := context.Background()
	t.Run("ends with the job", func(t *testing.T) {
		c := startFake(t, &fake{}, clients.Options{})
		var epochs []int32
		var last *flowerdpb.WatchJobResponse
		for ev, err := range c.Watch(ctx, "job-1") {
			if err != nil {
				t.Fatalf("Watch yielded %v", err)
			}
			if ev.GetEpoch() != nil {
				epochs = append(epochs, ev.GetEpoch().GetEpoch())
			}
			last = ev
		}
		if len(epochs) != 3 || !clients.Ended(last.GetJob().GetState()) {
			t.Errorf("Watch saw epochs %v and ended with %v; want 3 epochs and an ended job", epochs, last.GetJob().GetState())
		}
	})
	t.Run("Wait", func(t *testing.T) {
		c := startFake(t, &fake{}, clients.Options{})
		events := 0
		job, err := c.Wait(ctx, "job-1", func(*flowerdpb.WatchJobResponse) { events++ })
		if err != nil || job.GetState() != flowerdpb.JobState_JOB_STATE_COMPLETED || events != 5 {
			t.Errorf("Wait = %v, %v after %d events; want COMPLETED after 5", job.GetState(), err, events)
		}
	})
	t.Run("break closes the stream", func(t *testing.T) {
		c := startFake(t, &fake{}, clients.Options{})
		n := 0
		for range c.Watch(ctx, "job-1") {
			n++
			break
		}
		if n != 1 {
			t.Errorf("Watch yielded %d events before break; want 1", n)
		}
	})
	t.Run("stream cut before the job ends", func(t *testing.T) {
		c := startFake(t, &fake{cutWatch: true}, clients.Options{})
		job, err := c.Wait(ctx, "job-1", nil)
		if status.Code(err) != codes.Unavailable || job.GetState() != flowerdpb.JobState_JOB_STATE_RUNNING {
			t.Errorf("Wait on a cut stream = %v, %v; want the RUNNING job and Unavailable", job.GetState(), err)
		}
	})
	t.Run("unknown job", func(t *testing.T) {
		c := startFake(t, &fake{}, clients.Options{})
		_, err := c.Wait(ctx, "nope", nil)
		if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "watch job nope") {
			t.Errorf("Wait(nope) = %v; want NotFound naming the job", err)
		}
	})
}

// TestTracePropagation: a caller's span context reaches the server as a W3C
// traceparent header, with no global OpenTelemetry set-up.
func TestTracePropagation(t *testing.T) {
	f := &fake{}
	c := startFake(t, f, clients.Options{})
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), sc)
	if _, err := c.Models(ctx); err != nil {
		t.Fatal(err)
	}
	got := f.metadata().Get("traceparent")
	if len(got) != 1 || !strings.Contains(got[0], tid.String()) {
		t.Errorf("traceparent = %q; want one carrying trace id %s", got, tid)
	}
}

// TestDialUnreachable: a server that cannot be reached is Unavailable
// within ConnectTimeout.
func TestDialUnreachable(t *testing.T) {
	start := time.Now()
	_, err := clients.Dial(context.Background(), "127.0.0.1:1", clients.Options{ConnectTimeout: 200 * time.Millisecond})
	if got := status.Code(err); got != codes.Unavailable {
		t.Errorf("Dial(127.0.0.1:1) = %v; want Unavailable", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Dial took %v; want about the ConnectTimeout", took)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := clients.Dial(ctx, "127.0.0.1:1", clients.Options{}); status.Code(err) != codes.Canceled {
		t.Errorf("Dial with a cancelled context = %v; want Canceled", err)
	}
	// Lazy: no wait, the first call reports the failure.
	c, err := clients.Dial(context.Background(), "127.0.0.1:1", clients.Options{ConnectTimeout: -1, Retry: fastRetry})
	if err != nil {
		t.Fatalf("lazy Dial = %v", err)
	}
	defer c.Close()
	if _, err := c.Models(context.Background()); status.Code(err) != codes.Unavailable {
		t.Errorf("Models on an unreachable server = %v; want Unavailable", err)
	}
}

// TestErrorWrapping: what a method returns says what failed and keeps the
// server's status for status.Code and errors.As.
func TestErrorWrapping(t *testing.T) {
	c := startFake(t, &fake{}, clients.Options{})
	_, err := c.Classify(context.Background(), "model9", clients.Image{Data: []byte("x")})
	if status.Code(err) != codes.NotFound || !strings.HasPrefix(err.Error(), "classify: ") {
		t.Fatalf("Classify(model9) = %v; want NotFound prefixed with classify", err)
	}
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) || !strings.HasPrefix(se.GRPCStatus().Message(), "not found: variant") {
		t.Errorf("errors.As(%v) does not give the server's own status", err)
	}
}
