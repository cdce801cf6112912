package service

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/flowerd/flowerd/checkpoints"
)

// instrumentationName names flowerd's tracer and meter.
const instrumentationName = "github.com/flowerd/flowerd/service"

// Span and metric attributes, namespaced under flowerd.* (listed in the
// README).
const (
	AttrVariant      = attribute.Key("flowerd.variant")
	AttrVersion      = attribute.Key("flowerd.checkpoint.version")
	AttrBatchSize    = attribute.Key("flowerd.batch_size")
	AttrBackend      = attribute.Key("flowerd.backend")
	AttrImages       = attribute.Key("flowerd.images")
	AttrJobID        = attribute.Key("flowerd.job.id")
	AttrRunID        = attribute.Key("flowerd.run.id")
	AttrEpoch        = attribute.Key("flowerd.epoch")
	AttrLoss         = attribute.Key("flowerd.loss")
	AttrAccuracy     = attribute.Key("flowerd.accuracy")
	AttrValLoss      = attribute.Key("flowerd.val_loss")
	AttrValAccuracy  = attribute.Key("flowerd.val_accuracy")
	AttrImagesPerSec = attribute.Key("flowerd.images_per_second")
	AttrBytes        = attribute.Key("flowerd.checkpoint.bytes")
	AttrChunks       = attribute.Key("flowerd.checkpoint.chunks")
	AttrSplit        = attribute.Key("flowerd.split")
	AttrJobState     = attribute.Key("flowerd.job.state")
)

// telemetry holds the server's tracer and instruments.
type telemetry struct {
	tracer          trace.Tracer
	classifyLatency metric.Float64Histogram
	trainSpeed      metric.Float64Gauge
	checkpointTime  metric.Float64Histogram
	registration    metric.Registration
}

func newTelemetry(s *Server, tp trace.TracerProvider, mp metric.MeterProvider) (*telemetry, error) {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter(instrumentationName)
	t := &telemetry{tracer: tp.Tracer(instrumentationName)}
	var err error
	if t.classifyLatency, err = meter.Float64Histogram("flowerd.classify.duration", metric.WithUnit("ms"),
		metric.WithDescription("Forward-pass time of a Classify request, per variant"),
		metric.WithExplicitBucketBoundaries(5, 10, 25, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000)); err != nil {
		return nil, err
	}
	if t.trainSpeed, err = meter.Float64Gauge("flowerd.train.images_per_second", metric.WithUnit("{image}/s"),
		metric.WithDescription("Training throughput of the last epoch, per variant")); err != nil {
		return nil, err
	}
	if t.checkpointTime, err = meter.Float64Histogram("flowerd.checkpoint.write.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to write one checkpoint version to the store")); err != nil {
		return nil, err
	}
	jobs, err := meter.Int64ObservableGauge("flowerd.jobs", metric.WithDescription("Jobs by state"))
	if err != nil {
		return nil, err
	}
	storeBytes, err := meter.Int64ObservableGauge("flowerd.store.checkpoint_bytes", metric.WithUnit("By"),
		metric.WithDescription("Bytes of checkpoint versions kept in the store"))
	if err != nil {
		return nil, err
	}
	t.registration, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		recs, err := s.store.Jobs()
		if err != nil {
			return err
		}
		counts := map[checkpoints.JobState]int64{}
		for _, j := range recs {
			counts[j.State]++
		}
		for _, st := range []checkpoints.JobState{checkpoints.JobQueued, checkpoints.JobRunning, checkpoints.JobCompleted,
			checkpoints.JobCancelled, checkpoints.JobFailed, checkpoints.JobInterrupted} {
			o.ObserveInt64(jobs, counts[st], metric.WithAttributes(AttrJobState.String(string(st))))
		}
		var total int64
		for _, name := range s.order {
			versions, err := s.store.Versions(name)
			if err != nil {
				continue
			}
			for _, v := range versions {
				total += v.Size
			}
		}
		o.ObserveInt64(storeBytes, total)
		return nil
	}, jobs, storeBytes)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// recordClassify records one variant's forward-pass time: the OTel histogram
// and the window behind CompareVariants' percentiles get the same value.
func (s *Server) recordClassify(ctx context.Context, v *variant, d time.Duration) {
	v.latency.add(d)
	s.tel.classifyLatency.Record(ctx, float64(d)/float64(time.Millisecond), metric.WithAttributes(AttrVariant.String(v.cfg.Name)))
}

// endSpan records err on span and ends it.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
