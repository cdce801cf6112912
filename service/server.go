package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"weak"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/flowerd/flowerd/checkpoints"
	"github.com/flowerd/flowerd/model"
	"github.com/flowerd/flowerd/model/dataset"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// Defaults of Options.
const (
	DefaultMaxRequestBytes   = 32 << 20
	DefaultMaxImages         = 64
	DefaultMaxRequestPixels  = 100_000_000
	DefaultMaxConcurrentJobs = 1
	DefaultLatencyWindow     = 1024
	DefaultTopK              = 5
	DefaultMaxBatch          = 16
)

// Options configure a Server. Backend and Store are required; every other
// zero value means its documented default.
type Options struct {
	// Backend runs the models.
	Backend *model.Backend
	// Store keeps checkpoints, histories, jobs and feedback. The server
	// does not close it.
	Store *checkpoints.Store
	// DatasetDir is the dataset Train and Evaluate use when the request
	// names none. Empty: such requests fail with FailedPrecondition.
	DatasetDir string
	// Dataset is the split of every dataset the server loads (per-class
	// counts, seed); its Dir is ignored. Default: 60/10/10, seed 0.
	Dataset dataset.Options
	// Variants to serve, default all five.
	Variants []string
	// Model options of every variant (image size, classes, seed). Default
	// the study's full-size network.
	Model model.Options
	// MaxRequestBytes caps the image bytes of one Classify or feedback
	// request. Default 32 MiB (set the gRPC server's MaxRecvMsgSize above it).
	MaxRequestBytes int
	// MaxImages caps the images of one Classify request. Default 64.
	MaxImages int
	// MaxRequestPixels caps the pixels that the images of one Classify or
	// feedback request declare in their headers, all together; a request
	// over it is refused before any image is decoded. Default 100
	// megapixels (a decoded image takes 4 bytes a pixel; the images are
	// decoded one at a time, so this bounds a request's work more than its
	// memory). Each image is also limited to dataset.MaxPixels.
	MaxRequestPixels int
	// MaxConcurrentJobs is how many training jobs run at once; others wait
	// queued. Default 1 (a CPU box has no cores to spare for more).
	MaxConcurrentJobs int
	// MaxBatch is the most images one forward pass takes when concurrent
	// Classify calls are merged (dynamic batching). Default 16; 1 turns
	// batching off.
	MaxBatch int
	// MaxWait is how long a forward pass waits for more calls to merge
	// before it starts. Default 0: it takes the calls already waiting and
	// goes, so a lone call never waits.
	MaxWait time.Duration
	// ExportDir, when set, receives a copy of every newly served version
	// (see follow.go), for serving replicas that follow this trainer.
	ExportDir string
	// FollowDir, when set, makes this server a read-only serving replica:
	// it serves the versions a trainer exports there, polling every
	// FollowInterval (default 5 s), and refuses Train, CancelJob,
	// SubmitFeedback and SetServingVersion.
	FollowDir      string
	FollowInterval time.Duration
	// LoadParallelism is how many variants load at once at start-up.
	// Default 2: building weights, reading checkpoints and warming up
	// overlap well on two cores; more only adds memory.
	LoadParallelism int
	// LatencyWindow is the number of recent Classify latencies per variant
	// behind CompareVariants' percentiles. Default 1024.
	LatencyWindow int
	// Logger, default slog.Default().
	Logger *slog.Logger
	// TracerProvider and MeterProvider receive the server's spans and
	// metrics; default the otel globals (no-ops unless the program sets them).
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
}

// Server implements flowerd.v1.FlowerdService. Create it with New, register
// it with Register, start loading the models with Start, stop it with Close.
type Server struct {
	flowerdpb.UnimplementedFlowerdServiceServer

	opts     Options
	log      *slog.Logger
	store    *checkpoints.Store
	backend  *model.Backend
	variants map[string]*variant
	order    []string
	health   *health.Server
	datasets datasetCache
	jobs     *jobs
	tel      *telemetry
	export   *exporter // nil unless ExportDir is set

	// decodeSlots bounds the images decoded at once, server-wide.
	decodeSlots chan struct{}

	// ctx is the server's own context: loading and training jobs run on it,
	// not on the RPC that started them. BeginShutdown cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	// serveCtx runs the batchers that answer Classify. Close cancels it,
	// after the calls in flight have drained, and waits for wg.
	serveCtx    context.Context
	stopServing context.CancelFunc
	wg          sync.WaitGroup
}

// variant is one served variant.
type variant struct {
	cfg     model.Variant
	latency *latencyWindow

	mu      sync.Mutex
	m       *model.Model // nil until loaded
	batcher *batcher     // set with m
	status  flowerdpb.ModelStatus
	message string
	job     *job // the live job, if any
	// followed is, on a follower, the training history of the served
	// version as the trainer exported it (its own store has none).
	followed followedLineage
}

func (v *variant) snapshot() (*model.Model, flowerdpb.ModelStatus, string, *job) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m, v.status, v.message, v.job
}

func (v *variant) setStatus(st flowerdpb.ModelStatus, msg string) {
	v.mu.Lock()
	v.status, v.message = st, msg
	v.mu.Unlock()
}

// New checks opts and builds a Server. It marks the jobs that a previous
// process left queued or running as interrupted. It loads no model: call
// Start.
func New(opts Options) (*Server, error) {
	if opts.Backend == nil || opts.Store == nil {
		return nil, errors.New("new server: Backend and Store are required")
	}
	if opts.Variants == nil {
		opts.Variants = model.VariantNames()
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.MaxImages <= 0 {
		opts.MaxImages = DefaultMaxImages
	}
	if opts.MaxRequestPixels <= 0 {
		opts.MaxRequestPixels = DefaultMaxRequestPixels
	}
	if opts.MaxConcurrentJobs <= 0 {
		opts.MaxConcurrentJobs = DefaultMaxConcurrentJobs
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MaxWait < 0 {
		opts.MaxWait = 0
	}
	if opts.ExportDir != "" && opts.FollowDir != "" {
		return nil, errors.New("new server: a server exports (trains) or follows, not both")
	}
	if opts.FollowInterval <= 0 {
		opts.FollowInterval = DefaultFollowInterval
	}
	if opts.LoadParallelism <= 0 {
		opts.LoadParallelism = 2
	}
	if opts.LatencyWindow <= 0 {
		opts.LatencyWindow = DefaultLatencyWindow
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		opts: opts, log: opts.Logger, store: opts.Store, backend: opts.Backend,
		variants: map[string]*variant{}, health: health.NewServer(),
		// Decoding is CPU-bound: more at once than there are cores gains
		// nothing and multiplies the memory of decoded images.
		decodeSlots: make(chan struct{}, runtime.GOMAXPROCS(0)),
	}
	for _, name := range opts.Variants {
		cfg, err := model.LookupVariant(name)
		if err != nil {
			return nil, fmt.Errorf("new server: %w", err)
		}
		if _, dup := s.variants[name]; dup {
			return nil, fmt.Errorf("new server: variant %s listed twice", name)
		}
		s.variants[name] = &variant{cfg: cfg, latency: newLatencyWindow(opts.LatencyWindow),
			status: flowerdpb.ModelStatus_MODEL_STATUS_LOADING, message: "waiting to load"}
		s.order = append(s.order, name)
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(flowerdpb.FlowerdService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.serveCtx, s.stopServing = context.WithCancel(context.Background())
	s.jobs = newJobs(s)
	tel, err := newTelemetry(s, opts.TracerProvider, opts.MeterProvider)
	if err != nil {
		return nil, fmt.Errorf("new server: telemetry: %w", err)
	}
	s.tel = tel
	interrupted, err := s.store.InterruptJobs("the server stopped while the job was live")
	if err != nil {
		return nil, fmt.Errorf("new server: mark interrupted jobs: %w", err)
	}
	for _, j := range interrupted {
		s.log.Warn("job interrupted by the last shutdown", "job", j.ID, "variant", j.Variant)
		if j.RunID != "" {
			if _, err := s.store.FinishRun(j.RunID, checkpoints.OutcomeCancelled, "interrupted: the server stopped", 0); err != nil &&
				!errors.Is(err, checkpoints.ErrJobFinished) && !errors.Is(err, checkpoints.ErrNotFound) {
				s.log.Warn("finish interrupted run", "run", j.RunID, "err", err)
			}
		}
	}
	return s, nil
}

// Register registers the flowerd service and the standard health service
// on gs.
func (s *Server) Register(gs *grpc.Server) {
	flowerdpb.RegisterFlowerdServiceServer(gs, s)
	healthpb.RegisterHealthServer(gs, s.health)
}

// Start loads the variants in the background, LoadParallelism at a time:
// each gets its seeded initial weights, then its served checkpoint if the
// store has one, and a warm-up pass. Health turns SERVING per variant as each is
// ready, and overall once all are.
func (s *Server) Start() {
	s.startExporter()
	names := make(chan string, len(s.order))
	for _, name := range s.order {
		names <- name
	}
	close(names)
	var loaders sync.WaitGroup
	begin := time.Now()
	for range min(s.opts.LoadParallelism, len(s.order)) {
		loaders.Add(1)
		go func() {
			defer loaders.Done()
			for name := range names {
				if s.ctx.Err() != nil {
					return
				}
				v := s.variants[name]
				start := time.Now()
				if err := s.load(s.ctx, v); err != nil {
					if s.ctx.Err() != nil {
						v.setStatus(flowerdpb.ModelStatus_MODEL_STATUS_LOADING, "not loaded: the server is shutting down")
						return
					}
					s.log.Error("load variant", "variant", name, "err", err)
					v.setStatus(flowerdpb.ModelStatus_MODEL_STATUS_FAILED, err.Error())
					continue
				}
				s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
				s.log.Info("variant ready", "variant", name, "took", time.Since(start).Round(time.Millisecond))
			}
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		loaders.Wait()
		if s.ctx.Err() != nil {
			return
		}
		// Overall health turns SERVING even if a variant failed: the others
		// answer, and a restart would not mend a corrupt store (see
		// deploy/k8s/README.md). The failed variant's own health stays
		// NOT_SERVING and its calls are FailedPrecondition saying why.
		s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		s.health.SetServingStatus(flowerdpb.FlowerdService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
		var failed []string
		for _, name := range s.order {
			if _, st, _, _ := s.variants[name].snapshot(); st == flowerdpb.ModelStatus_MODEL_STATUS_FAILED {
				failed = append(failed, name)
			}
		}
		took := time.Since(begin).Round(time.Millisecond)
		if len(failed) > 0 {
			s.log.Error("variants failed to load; serving the others", "failed", strings.Join(failed, ","),
				"loaded", len(s.order)-len(failed), "took", took)
			return
		}
		s.log.Info("all variants loaded", "variants", len(s.order), "took", took)
	}()
}

// load builds v's model, restores its served checkpoint and warms it up.
func (s *Server) load(ctx context.Context, v *variant) error {
	v.setStatus(flowerdpb.ModelStatus_MODEL_STATUS_LOADING, "building the network")
	m, err := model.New(s.backend, v.cfg, s.opts.Model)
	if err != nil {
		return err
	}
	msg := ""
	if s.opts.FollowDir != "" {
		version, err := s.followOnce(v, m)
		switch {
		case err != nil:
			s.log.Warn("follow trainer", "variant", v.cfg.Name, "err", err)
			msg = fmt.Sprintf("following %s: serving the seeded initial weights until a version loads (%v)", s.opts.FollowDir, err)
		case version == 0:
			msg = fmt.Sprintf("following %s: nothing exported yet; serving the seeded initial weights", s.opts.FollowDir)
		default:
			msg = fmt.Sprintf("following %s: serving version %d", s.opts.FollowDir, version)
		}
	} else {
		man, err := s.restore(ctx, v.cfg.Name, m)
		switch {
		case errors.Is(err, checkpoints.ErrNotFound):
			msg = "untrained: serving the seeded initial weights; train it to improve"
		case err != nil:
			return err
		default:
			msg = fmt.Sprintf("serving checkpoint version %d (epoch %d)", man.Version, man.Epoch)
			s.exported(v.cfg.Name, int64(man.Version))
		}
	}
	// Warm-up: the first execution of a graph is the slow one.
	size := m.Options().ImageSize
	if _, err := m.Predict(ctx, make([]float32, size*size*3), 1); err != nil {
		return fmt.Errorf("warm up: %w", err)
	}
	b := newBatcher(m, s.opts.MaxBatch, s.opts.MaxWait)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		b.run(s.serveCtx)
	}()
	v.mu.Lock()
	v.m, v.batcher, v.status, v.message = m, b, flowerdpb.ModelStatus_MODEL_STATUS_READY, msg
	v.mu.Unlock()
	if s.opts.FollowDir != "" {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.follow(s.ctx, v)
		}()
	}
	return nil
}

// restore loads the served checkpoint of variant (falling back to older
// versions if it is corrupt) into m's training state and publishes it.
// It returns checkpoints.ErrNotFound when there is none.
func (s *Server) restore(ctx context.Context, name string, m *model.Model) (checkpoints.Manifest, error) {
	man, err := s.store.Load(ctx, name, func(_ checkpoints.Manifest, r io.Reader) error {
		return m.ReadState(r)
	})
	if err != nil {
		return man, err
	}
	if err := m.Publish(int64(man.Version)); err != nil {
		return man, err
	}
	return man, nil
}

// loadVersion loads one given checkpoint version into m and publishes it.
func (s *Server) loadVersion(name string, version uint64, m *model.Model) error {
	r, err := s.store.OpenVersion(name, version)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := m.ReadState(r); err != nil {
		return fmt.Errorf("load %s version %d: %w", name, version, err)
	}
	return m.Publish(int64(version))
}

// BeginShutdown starts stopping the server and returns at once: health
// turns NOT_SERVING, Train is refused, running and queued jobs are cancelled
// (their finished epochs stay checkpointed; they are recorded as
// interrupted), and loading, following and exporting stop. Classify keeps
// answering, the calls already queued for a forward pass included, so that
// the gRPC server's GracefulStop can drain them. On shutdown call
// BeginShutdown, then GracefulStop, then Close: jobs take longest to stop,
// so they stop while the calls drain.
func (s *Server) BeginShutdown() {
	s.health.Shutdown()
	s.jobs.shutdown()
	s.datasets.mu.Lock()
	s.datasets.closed = true // no load starts after this: Close can wait for wg
	s.datasets.mu.Unlock()
	s.cancel()
}

// Close stops the server's work: it begins the shutdown if BeginShutdown has
// not, stops answering Classify (a call still waiting is Unavailable), and
// waits for jobs, loading and the forward passes to stop, at most until ctx
// is done. It does not close the store.
func (s *Server) Close(ctx context.Context) error {
	defer s.tel.registration.Unregister()
	s.BeginShutdown()
	s.stopServing()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close server: jobs still stopping: %w", ctx.Err())
	}
}

// allVariants in a request's variant field names every served variant, as "" does.
const allVariants = "all"

// lookup resolves a request's variant field: one name, or all for "" and "all".
func (s *Server) lookup(name string) ([]*variant, error) {
	if name == "" || name == allVariants {
		vs := make([]*variant, len(s.order))
		for i, n := range s.order {
			vs[i] = s.variants[n]
		}
		return vs, nil
	}
	v, ok := s.variants[name]
	if !ok {
		return nil, fmt.Errorf("%w: variant %q: this server serves %s (or \"all\")", errNotFound, name, strings.Join(s.order, ", "))
	}
	return []*variant{v}, nil
}

// ready returns v's model: Unavailable while it loads, FailedPrecondition
// if it failed to load (retrying does not help until the cause is fixed and
// the server restarted).
func (s *Server) ready(v *variant) (*model.Model, error) {
	m, st, msg, _ := v.snapshot()
	switch {
	case m != nil:
		return m, nil
	case s.ctx.Err() != nil:
		return nil, fmt.Errorf("%w: %s was not loaded", errShuttingDown, v.cfg.Name)
	case st == flowerdpb.ModelStatus_MODEL_STATUS_FAILED:
		return nil, fmt.Errorf("%w: %s: %s; this server will not serve it: fix the cause (the server log has the details) and restart the server",
			errLoadFailed, v.cfg.Name, msg)
	}
	return nil, fmt.Errorf("%w: %s is still loading (%s); retry shortly", errNotReady, v.cfg.Name, msg)
}

// ListModels describes every variant.
func (s *Server) ListModels(ctx context.Context, _ *flowerdpb.ListModelsRequest) (*flowerdpb.ListModelsResponse, error) {
	resp := &flowerdpb.ListModelsResponse{Backend: s.backend.Name()}
	for _, name := range s.order {
		info, err := s.describe(s.variants[name])
		if err != nil {
			return nil, s.toStatus(ctx, "ListModels", err)
		}
		resp.Models = append(resp.Models, info)
	}
	return resp, nil
}

// GetModel describes one variant.
func (s *Server) GetModel(ctx context.Context, req *flowerdpb.GetModelRequest) (*flowerdpb.GetModelResponse, error) {
	v, err := s.one(req.GetVariant())
	if err != nil {
		return nil, s.toStatus(ctx, "GetModel", err)
	}
	info, err := s.describe(v)
	if err != nil {
		return nil, s.toStatus(ctx, "GetModel", err)
	}
	return &flowerdpb.GetModelResponse{Model: info}, nil
}

// one resolves a request naming exactly one variant.
func (s *Server) one(name string) (*variant, error) {
	if name == "" || name == allVariants {
		return nil, fmt.Errorf("%w: name one variant (%s)", errInvalid, strings.Join(s.order, ", "))
	}
	vs, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	return vs[0], nil
}

func (s *Server) describe(v *variant) (*flowerdpb.Model, error) {
	m, st, msg, j := v.snapshot()
	keep := v.cfg.KeepProbabilities()
	info := &flowerdpb.Model{
		Name: v.cfg.Name, Description: v.cfg.Description,
		PoolStrides:       []int32{int32(v.cfg.PoolStrides[0]), int32(v.cfg.PoolStrides[1]), int32(v.cfg.PoolStrides[2])},
		Regularization:    string(v.cfg.Regularization),
		KeepProbabilities: keep[:],
		Status:            st, StatusMessage: msg,
	}
	if j != nil {
		info.JobId = j.id
		if st == flowerdpb.ModelStatus_MODEL_STATUS_READY {
			info.Status = flowerdpb.ModelStatus_MODEL_STATUS_TRAINING
		}
	}
	if m != nil {
		info.Parameters = int64(m.NumParameters())
		info.ServedVersion = m.Served().Version()
		info.Trained = info.ServedVersion > 0
	}
	_, pinned, err := s.store.Served(v.cfg.Name)
	if err != nil && !errors.Is(err, checkpoints.ErrNotFound) {
		return nil, err
	}
	info.Pinned = pinned
	versions, err := s.store.Versions(v.cfg.Name)
	if err != nil && !errors.Is(err, checkpoints.ErrNotFound) {
		return nil, err
	}
	for _, mf := range versions {
		info.Versions = append(info.Versions, versionInfo(mf))
	}
	return info, nil
}

// SetServingVersion pins a checkpoint version for serving, or unpins to
// follow the latest. Refused while the variant trains.
func (s *Server) SetServingVersion(ctx context.Context, req *flowerdpb.SetServingVersionRequest) (*flowerdpb.SetServingVersionResponse, error) {
	resp, err := s.setServingVersion(req)
	if err != nil {
		return nil, s.toStatus(ctx, "SetServingVersion", err)
	}
	return resp, nil
}

func (s *Server) setServingVersion(req *flowerdpb.SetServingVersionRequest) (*flowerdpb.SetServingVersionResponse, error) {
	if err := s.readOnly("pin versions"); err != nil {
		return nil, err
	}
	v, err := s.one(req.GetVariant())
	if err != nil {
		return nil, err
	}
	if !req.GetUnpin() && req.GetVersion() <= 0 {
		return nil, fmt.Errorf("%w: version %d: give a stored version (see GetModel) or unpin", errInvalid, req.GetVersion())
	}
	m, err := s.ready(v)
	if err != nil {
		return nil, err
	}
	// Holding the job slot keeps a job from starting while the weights change.
	release, err := s.jobs.reserve(v)
	if err != nil {
		return nil, err
	}
	defer release() // idempotent: also released below before describing
	if req.GetUnpin() {
		if err := s.store.Unpin(v.cfg.Name); err != nil {
			return nil, err
		}
		served, _, err := s.store.Served(v.cfg.Name)
		if err != nil {
			return nil, err
		}
		if err := s.loadVersion(v.cfg.Name, served.Version, m); err != nil {
			return nil, err
		}
	} else {
		version := uint64(req.GetVersion())
		if _, err := s.store.Manifest(v.cfg.Name, version); err != nil {
			return nil, fmt.Errorf("%s version %d: %w", v.cfg.Name, version, err)
		}
		// Load first: a version that does not verify is never pinned.
		if err := s.loadVersion(v.cfg.Name, version, m); err != nil {
			return nil, err
		}
		if err := s.store.Pin(v.cfg.Name, version); err != nil {
			return nil, err
		}
	}
	man := m.Served().Version()
	s.exported(v.cfg.Name, man)
	v.setStatus(flowerdpb.ModelStatus_MODEL_STATUS_READY, fmt.Sprintf("serving checkpoint version %d", man))
	release() // before describing, which would report the reservation as a job
	info, err := s.describe(v)
	if err != nil {
		return nil, err
	}
	return &flowerdpb.SetServingVersionResponse{Model: info}, nil
}

// maxOtherDatasets is how many datasets besides the server's default the
// cache keeps once nothing uses them. A full-size dataset is about 200 MB.
const maxOtherDatasets = 1

// datasetCache loads each dataset directory once, on the server's context,
// and keeps the default dataset and the maxOtherDatasets most recently used
// others. Entries are keyed by absolute, cleaned path, so "/d/f17",
// "/d/f17/" and "/d//f17" share one copy.
type datasetCache struct {
	mu      sync.Mutex
	closed  bool // the server is closing: start no load
	entries map[string]*datasetEntry
	tick    uint64
	// evicted remembers the datasets dropped from entries while something
	// (a training job, an evaluation) may still hold them: asked for
	// again, one still alive is reused rather than loaded a second time.
	evicted map[string]weak.Pointer[dataset.Dataset]
}

// datasetEntry is one directory's dataset, loaded or loading.
type datasetEntry struct {
	done chan struct{} // closed when the load has ended; then ds or err is set
	ds   *dataset.Dataset
	err  error
	used uint64 // datasetCache.tick when last asked for
}

// dataset returns the dataset at dir (the server's default when empty). The
// first call for a directory starts loading it in the background on the
// server's context, so a caller that gives up does not fail the others
// waiting for it; each waits until the load ends or its own ctx is done. A
// failed load is not kept: the next call tries again.
func (s *Server) dataset(ctx context.Context, dir string) (*dataset.Dataset, error) {
	if dir == "" {
		dir = s.opts.DatasetDir
	}
	if dir == "" {
		return nil, fmt.Errorf("%w: the server has no default dataset; start it with -dataset (FLOWERD_DATASET) or name dataset_dir in the request", errNoDataset)
	}
	key, err := datasetKey(dir)
	if err != nil {
		return nil, err
	}
	e, err := s.datasetEntry(key)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for dataset %s: %w", key, ctx.Err())
	}
	if e.err != nil {
		if err := ctx.Err(); err != nil { // e.g. a job stopped with the server
			return nil, fmt.Errorf("wait for dataset %s: %w", key, err)
		}
		return nil, e.err // names the directory and what is wrong with it
	}
	return e.ds, nil
}

// datasetKey is the cache key of dir: its absolute, cleaned path.
func datasetKey(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("%w: dataset directory %q: %v", errInvalid, dir, err)
	}
	return abs, nil
}

// datasetEntry returns the cache entry of key, starting its load if there
// is none.
func (s *Server) datasetEntry(key string) (*datasetEntry, error) {
	c := &s.datasets
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]*datasetEntry{}
		c.evicted = map[string]weak.Pointer[dataset.Dataset]{}
	}
	c.tick++
	if e, ok := c.entries[key]; ok {
		e.used = c.tick
		return e, nil
	}
	if ds := c.evicted[key].Value(); ds != nil {
		delete(c.evicted, key)
		e := &datasetEntry{done: make(chan struct{}), ds: ds, used: c.tick}
		close(e.done)
		c.entries[key] = e
		s.trimDatasetsLocked()
		return e, nil
	}
	if c.closed {
		return nil, fmt.Errorf("%w: not loading dataset %s", errShuttingDown, key)
	}
	e := &datasetEntry{done: make(chan struct{}), used: c.tick}
	c.entries[key] = e
	s.wg.Add(1) // under c.mu, before Close's Wait: Close sets c.closed first
	go func() {
		defer s.wg.Done()
		s.loadDataset(key, e)
	}()
	return e, nil
}

// loadDataset loads the dataset of key into e on the server's context.
func (s *Server) loadDataset(key string, e *datasetEntry) {
	o := s.opts.Dataset
	o.Dir = key
	o.ImageSize = s.modelImageSize()
	o.Logger = s.log
	start := time.Now()
	ds, err := dataset.Load(s.ctx, o)
	if err != nil && s.ctx.Err() != nil {
		err = fmt.Errorf("%w: loading dataset %s stopped: %w", errShuttingDown, key, err)
	}
	c := &s.datasets
	c.mu.Lock()
	e.ds, e.err = ds, err
	close(e.done)
	if err != nil {
		if c.entries[key] == e {
			delete(c.entries, key) // not kept: the next call retries
		}
	} else {
		s.trimDatasetsLocked()
	}
	c.mu.Unlock()
	if err != nil {
		s.log.Warn("load dataset", "dir", key, "err", err)
		return
	}
	s.log.Info("dataset loaded", "dir", key, "train", ds.Len(dataset.Train), "val", ds.Len(dataset.Val),
		"test", ds.Len(dataset.Test), "took", time.Since(start).Round(time.Millisecond))
}

// trimDatasetsLocked drops the least recently used loaded datasets other
// than the default until at most maxOtherDatasets others are kept. A
// dropped one that something still uses stays reachable through evicted.
func (s *Server) trimDatasetsLocked() {
	c := &s.datasets
	def := ""
	if s.opts.DatasetDir != "" {
		def, _ = datasetKey(s.opts.DatasetDir)
	}
	for k, w := range c.evicted {
		if w.Value() == nil {
			delete(c.evicted, k)
		}
	}
	for {
		others, oldest := 0, ""
		for k, e := range c.entries {
			if k == def {
				continue
			}
			others++
			if e.ds == nil { // loading: not droppable yet
				continue
			}
			if oldest == "" || e.used < c.entries[oldest].used {
				oldest = k
			}
		}
		if others <= maxOtherDatasets || oldest == "" {
			return
		}
		c.evicted[oldest] = weak.Make(c.entries[oldest].ds)
		delete(c.entries, oldest)
	}
}

func (s *Server) modelImageSize() int {
	if s.opts.Model.ImageSize > 0 {
		return s.opts.Model.ImageSize
	}
	return model.ImageSize
}

// classes is the label order of the served models.
func (s *Server) classes() []string {
	if s.opts.Model.Classes != nil {
		return slices.Clone(s.opts.Model.Classes)
	}
	return model.FlowerClasses()
}
