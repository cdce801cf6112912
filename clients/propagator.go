package clients

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// w3c is the propagator used while the program sets no global one.
var w3c = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// propagator injects trace context with the global propagator when the
// program has set one, else with W3C trace context and baggage, so that a
// client's trace continues into flowerd even in a program that only set a
// tracer provider. It decides per call, so a global propagator set after
// Dial is honoured.
type propagator struct{}

func (propagator) current() propagation.TextMapPropagator {
	if g := otel.GetTextMapPropagator(); len(g.Fields()) > 0 {
		return g
	}
	return w3c
}

func (p propagator) Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	p.current().Inject(ctx, carrier)
}

func (p propagator) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	return p.current().Extract(ctx, carrier)
}

func (p propagator) Fields() []string { return p.current().Fields() }
