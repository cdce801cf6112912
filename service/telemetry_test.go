package service

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/flowerd/flowerd/checkpoints"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

func attrOf(s sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// TestTracing checks that a client's trace continues into the server, that
// Classify's RPC span has our decode, preprocess and forward spans under it,
// that a training job records epoch and checkpoint spans, and that the
// Classify latency reaches the metrics.
func TestTracing(t *testing.T) {
	if testing.Short() {
		t.Skip("loads and trains a full-size network: skipped under -short")
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	prop := propagation.TraceContext{}

	store, err := checkpoints.Open(t.TempDir(), checkpoints.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	opts := Options{Backend: testBackend(t), Store: store, Variants: []string{"model2"}, DatasetDir: dataDir(t),
		TracerProvider: tp, MeterProvider: mp, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	opts.Dataset.TrainPerClass, opts.Dataset.ValPerClass, opts.Dataset.TestPerClass = 1, 1, 0
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop))))
	srv.Register(gs)
	go gs.Serve(lis)
	defer gs.Stop()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := flowerdpb.NewFlowerdServiceClient(conn)
	srv.Start()
	h := &harness{srv: srv, client: client}
	waitLoaded(t, srv, "model2")

	ctx, parent := tp.Tracer("test").Start(context.Background(), "client operation")
	_, err = client.Classify(ctx, &flowerdpb.ClassifyRequest{Images: []*flowerdpb.Image{{Data: flowerJPEG(t, "daisy")}}, Variant: "model2"})
	parent.End()
	if err != nil {
		t.Fatal(err)
	}
	traceID := parent.SpanContext().TraceID()
	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() == traceID && s.SpanKind() != trace.SpanKindClient {
			spans[s.Name()] = s
		}
	}
	rpc, ok := spans["flowerd.v1.FlowerdService/Classify"]
	if !ok || rpc.SpanKind().String() != "server" {
		names := []string{}
		for n := range spans {
			names = append(names, n)
		}
		t.Fatalf("no server span of Classify in the client's trace; spans in it: %q", names)
	}
	for _, name := range []string{"decode", "preprocess", "forward"} {
		s, ok := spans[name]
		if !ok || s.Parent().SpanID() != rpc.SpanContext().SpanID() {
			t.Errorf("span %q missing or not a child of the Classify RPC span", name)
		}
	}
	fwd := spans["forward"]
	for key, want := range map[attribute.Key]attribute.Value{
		AttrVariant: attribute.StringValue("model2"), AttrVersion: attribute.Int64Value(0),
		AttrBatchSize: attribute.IntValue(1), AttrBackend: attribute.StringValue("go"),
	} {
		if got, ok := attrOf(fwd, key); !ok || got != want {
			t.Errorf("forward span %s = %v; want %v", key, got.Emit(), want.Emit())
		}
	}

	resp, err := client.Train(context.Background(), &flowerdpb.TrainRequest{Variant: "model2", Epochs: 2, BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	job := waitJob(t, h, resp.GetJobs()[0].GetId())
	if job.GetState() != flowerdpb.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("job = %v", job)
	}
	var epochs, checkpointsWritten int
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "epoch":
			epochs++
			for _, key := range []attribute.Key{AttrEpoch, AttrLoss, AttrAccuracy, AttrValAccuracy, AttrImagesPerSec} {
				if _, ok := attrOf(s, key); !ok {
					t.Errorf("epoch span lacks %s", key)
				}
			}
		case "checkpoint write":
			checkpointsWritten++
			if b, ok := attrOf(s, AttrBytes); !ok || b.AsInt64() <= 0 {
				t.Errorf("checkpoint span bytes = %v", b.Emit())
			}
		}
	}
	if epochs != 2 || checkpointsWritten != 2 {
		t.Errorf("training made %d epoch spans and %d checkpoint spans; want 2 and 2", epochs, checkpointsWritten)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			found[m.Name] = true
		}
	}
	for _, name := range []string{"flowerd.classify.duration", "flowerd.train.images_per_second", "flowerd.checkpoint.write.duration", "flowerd.jobs", "flowerd.store.checkpoint_bytes"} {
		if !found[name] {
			t.Errorf("metric %s not reported; got %v", name, found)
		}
	}
}

// waitLoaded waits for a variant to finish loading.
func waitLoaded(t *testing.T, srv *Server, name string) {
	t.Helper()
	for {
		m, st, msg, _ := srv.variants[name].snapshot()
		if m != nil {
			return
		}
		if st == flowerdpb.ModelStatus_MODEL_STATUS_FAILED {
			t.Fatalf("%s failed to load: %s", name, msg)
		}
		select {
		case <-srv.ctx.Done():
			t.Fatal("server closed")
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
}
