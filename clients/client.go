package clients

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// Defaults of Options.
const (
	DefaultClassifyTimeout = 30 * time.Second
	DefaultEvaluateTimeout = 10 * time.Minute
	DefaultControlTimeout  = 2 * time.Minute
	DefaultInfoTimeout     = 10 * time.Second
	DefaultConnectTimeout  = 10 * time.Second
	DefaultMaxAttempts     = 4
	DefaultInitialBackoff  = 200 * time.Millisecond
	DefaultMaxBackoff      = 5 * time.Second
	// DefaultMaxMessageBytes caps a response (an Evaluate of all variants
	// with confusion matrices is the largest) and a request (images).
	DefaultMaxMessageBytes = 64 << 20
)

// Timeouts are the deadlines the client gives each call kind, on top of
// the caller's context (the earlier deadline wins). Zero means the default;
// a negative value means no deadline of the client's own. Watch has none:
// it lasts as long as the job.
type Timeouts struct {
	// Classify bounds Classify and SubmitFeedback (image uploads). Default
	// 30s.
	Classify time.Duration
	// Evaluate bounds Evaluate, which runs a split through the network.
	// Default 10m.
	Evaluate time.Duration
	// Control bounds Train, Cancel, SetServingVersion and Unpin: calls that
	// may wait for a training step to stop or a checkpoint to load.
	// Default 2m.
	Control time.Duration
	// Info bounds the read-only calls Models, Model, Job, Jobs, History and
	// Compare. Default 10s.
	Info time.Duration
}

// Retry is how idempotent calls (Classify, Evaluate, Models, Model, Job,
// Jobs, History, Compare) are retried. They are retried only on
// codes.Unavailable (the server is starting, a variant is still loading,
// the connection dropped), with exponential backoff and jitter, within the
// call's deadline. Train, Cancel, SetServingVersion, Unpin and
// SubmitFeedback are never retried.
type Retry struct {
	// MaxAttempts counts the first try. Default 4; 1 disables retries.
	MaxAttempts int
	// InitialBackoff is the wait before the first retry; each next wait
	// doubles up to MaxBackoff. Defaults 200ms and 5s.
	InitialBackoff, MaxBackoff time.Duration
}

// Options configure a Client. Every zero value means its documented default.
type Options struct {
	// TLS configures transport security; nil means plaintext.
	TLS *tls.Config
	// Timeouts per call kind.
	Timeouts Timeouts
	// Retry of idempotent calls.
	Retry Retry
	// ConnectTimeout is how long Dial waits for the connection to be ready.
	// Default 10s; negative: Dial does not wait and the first call
	// connects.
	ConnectTimeout time.Duration
	// OTel options of the otelgrpc client handler (tracer and meter
	// providers, filters). By default the handler uses the global
	// providers and the global propagator, or W3C trace context and baggage
	// while no global propagator is set.
	OTel []otelgrpc.Option
	// DialOptions are added after the client's own (credentials, stats
	// handler, message size), so they can override them.
	DialOptions []grpc.DialOption
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.Timeouts.Classify, DefaultClassifyTimeout)
	def(&o.Timeouts.Evaluate, DefaultEvaluateTimeout)
	def(&o.Timeouts.Control, DefaultControlTimeout)
	def(&o.Timeouts.Info, DefaultInfoTimeout)
	def(&o.ConnectTimeout, DefaultConnectTimeout)
	if o.Retry.MaxAttempts <= 0 {
		o.Retry.MaxAttempts = DefaultMaxAttempts
	}
	if o.Retry.InitialBackoff <= 0 {
		o.Retry.InitialBackoff = DefaultInitialBackoff
	}
	if o.Retry.MaxBackoff <= 0 {
		o.Retry.MaxBackoff = DefaultMaxBackoff
	}
	o.Retry.MaxBackoff = max(o.Retry.MaxBackoff, o.Retry.InitialBackoff)
	return o
}

// Client calls one flowerd server. It is safe for concurrent use. Create it
// with Dial and release it with Close.
type Client struct {
	conn *grpc.ClientConn
	api  flowerdpb.FlowerdServiceClient
	opts Options
}

// Dial connects to the flowerd server at addr (host:port, or any gRPC
// target) and waits until the connection is ready, at most until ctx is
// done or Options.ConnectTimeout has passed; a server that cannot be reached
// is codes.Unavailable. ctx is used only while Dial waits.
func Dial(ctx context.Context, addr string, opts Options) (*Client, error) {
	opts = opts.withDefaults()
	creds := insecure.NewCredentials()
	if opts.TLS != nil {
		creds = credentials.NewTLS(opts.TLS)
	}
	handler := otelgrpc.NewClientHandler(append([]otelgrpc.Option{otelgrpc.WithPropagators(propagator{})}, opts.OTel...)...)
	dopts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithStatsHandler(handler),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(DefaultMaxMessageBytes), grpc.MaxCallSendMsgSize(DefaultMaxMessageBytes)),
	}, opts.DialOptions...)
	conn, err := grpc.NewClient(addr, dopts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, status.Error(codes.InvalidArgument, err.Error()))
	}
	c := &Client{conn: conn, api: flowerdpb.NewFlowerdServiceClient(conn), opts: opts}
	if opts.ConnectTimeout > 0 {
		if err := c.waitReady(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
	}
	return c, nil
}

// waitReady waits for the connection to be ready.
func (c *Client) waitReady(parent context.Context) error {
	ctx, cancel := context.WithTimeout(parent, c.opts.ConnectTimeout)
	defer cancel()
	c.conn.Connect()
	for {
		st := c.conn.GetState()
		switch st {
		case connectivity.Ready:
			return nil
		case connectivity.Shutdown:
			return status.Error(codes.Canceled, "the connection was closed")
		}
		if !c.conn.WaitForStateChange(ctx, st) {
			if err := parent.Err(); err != nil {
				return status.FromContextError(err).Err()
			}
			return status.Errorf(codes.Unavailable, "not connected after %v (connection %s)", c.opts.ConnectTimeout, st)
		}
	}
}

// Close closes the connection; calls in flight fail with codes.Canceled.
func (c *Client) Close() error {
	return c.conn.Close()
}

// callKind picks a call's deadline and whether it may be retried.
type callKind struct {
	timeout    func(Timeouts) time.Duration
	idempotent bool
}

var (
	kindClassify = callKind{func(t Timeouts) time.Duration { return t.Classify }, true}
	kindUpload   = callKind{func(t Timeouts) time.Duration { return t.Classify }, false}
	kindEvaluate = callKind{func(t Timeouts) time.Duration { return t.Evaluate }, true}
	kindControl  = callKind{func(t Timeouts) time.Duration { return t.Control }, false}
	kindInfo     = callKind{func(t Timeouts) time.Duration { return t.Info }, true}
)

// invoke runs f under the kind's deadline, retrying idempotent calls on
// Unavailable, and wraps a failure with op. The wrapped error keeps its
// gRPC status: status.Code sees through %w.
func invoke[T any](ctx context.Context, c *Client, op string, kind callKind, f func(context.Context) (T, error)) (T, error) {
	if d := kind.timeout(c.opts.Timeouts); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	attempts := 1
	if kind.idempotent {
		attempts = c.opts.Retry.MaxAttempts
	}
	backoff := c.opts.Retry.InitialBackoff
	for try := 1; ; try++ {
		resp, err := f(ctx)
		if err == nil {
			return resp, nil
		}
		if try >= attempts || status.Code(err) != codes.Unavailable {
			return resp, fmt.Errorf("%s: %w", op, err)
		}
		// Full jitter in [backoff/2, backoff).
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return resp, fmt.Errorf("%s: %w (gave up after %d tries: %v)", op, err, try, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, c.opts.Retry.MaxBackoff)
	}
}
