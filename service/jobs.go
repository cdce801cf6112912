package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowerd/flowerd/checkpoints"
	"github.com/flowerd/flowerd/model"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// Training request limits. A training batch's activations are kept for the
// backward pass: a server of all five variants peaked near 16 GB resident
// while model1 trained at batch 64 on the go backend, so 128 is the most a
// large machine takes; the whole training split is about 1000 images anyway.
const (
	maxEpochs    = 10000
	maxBatchSize = 128
)

// jobs runs training jobs: at most one per variant, at most
// MaxConcurrentJobs at once (the rest wait queued), on the server's context.
type jobs struct {
	s     *Server
	slots chan struct{}

	mu     sync.Mutex
	live   map[string]*job
	closed bool
}

func newJobs(s *Server) *jobs {
	return &jobs{s: s, slots: make(chan struct{}, s.opts.MaxConcurrentJobs), live: map[string]*job{}}
}

// job is a live (queued or running) training job of one variant.
type job struct {
	id      string
	v       *variant
	config  *flowerdpb.TrainRequest // defaults filled in
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	created time.Time
	link    trace.Link // to the Train call that started it

	mu         sync.Mutex
	state      flowerdpb.JobState
	errMsg     string
	runID      string
	runStarted time.Time // when the run was recorded: its total time counts from here, not from the queue
	epochsDone int32
	last       *flowerdpb.EpochMetrics
	epochSecs  float64 // sum over this job's epochs
	updated    time.Time
	byUser     bool // cancelled by CancelJob, not by shutdown
	subs       map[chan *flowerdpb.WatchJobResponse]struct{}
}

// claim marks v as held by holder unless a job (or another holder) has it,
// in which case it returns that one. release undoes the claim; it is safe
// to call more than once and after the holder was replaced.
func claim(v *variant, holder *job) (release func(), busy *job) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.job != nil {
		return nil, v.job
	}
	v.job = holder
	return func() {
		v.mu.Lock()
		if v.job == holder {
			v.job = nil
		}
		v.mu.Unlock()
	}, nil
}

// reserve marks v busy for an operation that must not overlap a job (such
// as changing the served version); release undoes it.
func (js *jobs) reserve(v *variant) (release func(), err error) {
	release, busy := claim(v, &job{id: "(changing the served version)"})
	if busy != nil {
		return nil, fmt.Errorf("%w: %s is training in job %s; cancel it or wait for it to end", errJobRunning, v.cfg.Name, busy.id)
	}
	return release, nil
}

// Train validates the request and starts one job per variant.
func (s *Server) Train(ctx context.Context, req *flowerdpb.TrainRequest) (*flowerdpb.TrainResponse, error) {
	resp, err := s.train(ctx, req)
	if err != nil {
		return nil, s.toStatus(ctx, "Train", err)
	}
	return resp, nil
}

func (s *Server) train(ctx context.Context, req *flowerdpb.TrainRequest) (*flowerdpb.TrainResponse, error) {
	if err := s.readOnly("train"); err != nil {
		return nil, err
	}
	cfg, err := trainDefaults(req)
	if err != nil {
		return nil, err
	}
	if err := s.checkDatasetDir(cfg.GetDatasetDir()); err != nil {
		return nil, err
	}
	vs, err := s.lookup(cfg.GetVariant())
	if err != nil {
		return nil, err
	}
	for _, v := range vs {
		if _, err := s.ready(v); err != nil {
			return nil, err
		}
	}
	started, err := s.jobs.start(trace.LinkFromContext(ctx), vs, cfg)
	if err != nil {
		return nil, err
	}
	resp := &flowerdpb.TrainResponse{}
	for _, j := range started {
		resp.Jobs = append(resp.Jobs, j.toPB())
	}
	return resp, nil
}

// checkDatasetDir checks a request's dataset_dir (or the server's default
// when it is empty) before any work starts.
func (s *Server) checkDatasetDir(dir string) error {
	if dir == "" {
		if s.opts.DatasetDir == "" {
			return fmt.Errorf("%w: the server has no default dataset; start it with -dataset (FLOWERD_DATASET) or name dataset_dir", errNoDataset)
		}
		return nil
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%w: dataset_dir %q is not a directory on the server", errInvalid, dir)
	}
	return nil
}

// trainDefaults validates a request and fills in the study's defaults.
func trainDefaults(req *flowerdpb.TrainRequest) (*flowerdpb.TrainRequest, error) {
	cfg := proto.Clone(req).(*flowerdpb.TrainRequest)
	if cfg.Epochs < 1 || cfg.Epochs > maxEpochs {
		return nil, fmt.Errorf("%w: epochs %d: want 1 to %d", errInvalid, cfg.Epochs, maxEpochs)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = model.DefaultBatchSize
	}
	if cfg.BatchSize < 1 || cfg.BatchSize > maxBatchSize {
		return nil, fmt.Errorf("%w: batch_size %d: want 1 to %d (0 means %d); training memory grows with the batch (the server peaks near 16 GB while model1 trains at 64)",
			errInvalid, cfg.BatchSize, maxBatchSize, model.DefaultBatchSize)
	}
	if cfg.LearningRate == 0 {
		cfg.LearningRate = model.DefaultLearningRate
	}
	if !(cfg.LearningRate > 0 && cfg.LearningRate < 10) {
		return nil, fmt.Errorf("%w: learning_rate %v: want a value in (0, 10)", errInvalid, cfg.LearningRate)
	}
	if cfg.Momentum == 0 {
		cfg.Momentum = model.DefaultMomentum
	}
	if !(cfg.Momentum > 0 && cfg.Momentum < 1) {
		return nil, fmt.Errorf("%w: momentum %v: want a value in (0, 1)", errInvalid, cfg.Momentum)
	}
	switch cfg.Publish {
	case flowerdpb.PublishPolicy_PUBLISH_POLICY_UNSPECIFIED:
		cfg.Publish = flowerdpb.PublishPolicy_PUBLISH_POLICY_EACH_EPOCH
	case flowerdpb.PublishPolicy_PUBLISH_POLICY_EACH_EPOCH, flowerdpb.PublishPolicy_PUBLISH_POLICY_AT_END:
	default:
		return nil, fmt.Errorf("%w: publish %v", errInvalid, cfg.Publish)
	}
	return cfg, nil
}

// start creates and launches one job per variant, all or none: a variant
// that already has a job (or an operation such as a pin) refuses the whole
// request. Every variant is claimed in one critical section per variant
// before any record is written, so nothing can slip in between the check
// and the claim; if a record cannot be written, no job starts.
func (js *jobs) start(link trace.Link, vs []*variant, cfg *flowerdpb.TrainRequest) ([]*job, error) {
	js.mu.Lock()
	defer js.mu.Unlock()
	if js.closed {
		return nil, errShuttingDown
	}
	holder := &job{id: "(starting)"}
	var releases []func()
	release := func() {
		for _, r := range releases {
			r()
		}
	}
	for _, v := range vs {
		r, busy := claim(v, holder)
		if busy != nil {
			release()
			return nil, fmt.Errorf("%w: %s already has job %s; cancel it (CancelJob) or wait for it to end", errJobRunning, v.cfg.Name, busy.id)
		}
		releases = append(releases, r)
	}
	var started []*job
	for _, v := range vs {
		j, err := js.record(link, v, cfg)
		if err != nil {
			for _, j := range started {
				j.cancel()
				if _, uerr := js.s.store.UpdateJob(j.id, checkpoints.JobFailed, "not started: recording another job of the request failed", ""); uerr != nil {
					js.s.log.Error("record unstarted job", "job", j.id, "err", uerr)
				}
			}
			release()
			return nil, fmt.Errorf("record job: %w", err)
		}
		started = append(started, j)
	}
	for _, j := range started {
		j.v.mu.Lock()
		j.v.job = j
		j.v.mu.Unlock()
		js.live[j.id] = j
		js.s.wg.Add(1)
		go js.run(j)
	}
	return started, nil
}

// record writes the job record of training v with cfg and returns the job,
// queued and not yet running.
func (js *jobs) record(link trace.Link, v *variant, cfg *flowerdpb.TrainRequest) (*job, error) {
	c := proto.Clone(cfg).(*flowerdpb.TrainRequest)
	c.Variant = v.cfg.Name
	raw, err := proto.Marshal(c)
	if err != nil {
		return nil, err
	}
	rec, err := js.s.store.CreateJob(checkpoints.Job{Kind: "train", Variant: v.cfg.Name, Request: raw})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(js.s.ctx)
	return &job{id: rec.ID, v: v, config: c, ctx: ctx, cancel: cancel, done: make(chan struct{}),
		link: link, created: rec.CreatedAt, updated: rec.CreatedAt, state: flowerdpb.JobState_JOB_STATE_QUEUED,
		subs: map[chan *flowerdpb.WatchJobResponse]struct{}{}}, nil
}

// shutdown refuses new jobs and cancels the live ones; they end interrupted.
func (js *jobs) shutdown() {
	js.mu.Lock()
	defer js.mu.Unlock()
	js.closed = true
	for _, j := range js.live {
		j.cancel()
	}
}

func (js *jobs) get(id string) *job {
	js.mu.Lock()
	defer js.mu.Unlock()
	return js.live[id]
}

// run is a job's goroutine: wait for a slot, train, record the outcome.
func (js *jobs) run(j *job) {
	s := js.s
	defer s.wg.Done()
	defer close(j.done)
	defer j.cancel() // detach the job's context from the server's once it ends
	var err error
	select {
	case js.slots <- struct{}{}:
		err = s.runJob(j)
		<-js.slots
	case <-j.ctx.Done():
		err = j.ctx.Err()
	}
	state, reason := flowerdpb.JobState_JOB_STATE_COMPLETED, ""
	outcome := checkpoints.OutcomeCompleted
	j.mu.Lock()
	byUser := j.byUser
	j.mu.Unlock()
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled) && byUser:
		state, reason, outcome = flowerdpb.JobState_JOB_STATE_CANCELLED, "cancelled by CancelJob", checkpoints.OutcomeCancelled
	case errors.Is(err, context.Canceled):
		state, reason, outcome = flowerdpb.JobState_JOB_STATE_INTERRUPTED, "interrupted: the server is shutting down; train again to resume from the last checkpoint", checkpoints.OutcomeCancelled
	default:
		state, reason, outcome = flowerdpb.JobState_JOB_STATE_FAILED, err.Error(), checkpoints.OutcomeFailed
		s.log.Error("training job failed", "job", j.id, "variant", j.v.cfg.Name, "err", err)
	}
	j.mu.Lock()
	runID, total := j.runID, time.Since(j.runStarted)
	j.mu.Unlock()
	if runID != "" {
		if _, ferr := s.store.FinishRun(runID, outcome, reason, total); ferr != nil {
			s.log.Error("record run outcome", "run", runID, "err", ferr)
		}
	}
	if _, uerr := s.store.UpdateJob(j.id, storeState(state), reason, runID); uerr != nil {
		s.log.Error("record job outcome", "job", j.id, "err", uerr)
	}
	j.v.mu.Lock()
	if j.v.job == j {
		j.v.job = nil
	}
	j.v.mu.Unlock()
	js.mu.Lock()
	delete(js.live, j.id)
	js.mu.Unlock()
	j.finish(state, reason)
}

// runJob prepares the variant's training state and trains, checkpointing and
// publishing as the job's policy says.
func (s *Server) runJob(j *job) (err error) {
	cfg, v := j.config, j.v
	// A job outlives the call that started it: its span is a new root,
	// linked to the Train call's.
	ctx, span := s.tel.tracer.Start(j.ctx, "training job", trace.WithNewRoot(), trace.WithLinks(j.link),
		trace.WithAttributes(AttrJobID.String(j.id), AttrVariant.String(v.cfg.Name), AttrBackend.String(s.backend.Name()),
			AttrBatchSize.Int(int(cfg.GetBatchSize()))))
	defer func() { endSpan(span, err) }()
	m, err := s.ready(v)
	if err != nil {
		return err
	}
	j.setState(flowerdpb.JobState_JOB_STATE_RUNNING)
	if _, err := s.store.UpdateJob(j.id, checkpoints.JobRunning, "", ""); err != nil {
		return fmt.Errorf("record job start: %w", err)
	}
	ds, err := s.dataset(ctx, cfg.GetDatasetDir())
	if err != nil {
		return err
	}
	if cfg.GetUseFeedback() {
		extras, err := s.feedbackExtras()
		if err != nil {
			return fmt.Errorf("read feedback: %w", err)
		}
		if ds, err = ds.WithTrain(extras); err != nil {
			return fmt.Errorf("add feedback: %w", err)
		}
	}
	// Train on the weights that are served (a cancelled job may have left
	// the training state elsewhere), or on fresh ones.
	served := m.Served().Version()
	var from uint64 // the version the run continues; 0: fresh weights
	var fromRun string
	switch {
	case cfg.GetFromScratch() || served == 0:
		err = m.Reset(cfg.GetSeed())
	default:
		from = uint64(served)
		err = s.readState(v.cfg.Name, from, m)
		if err == nil {
			var man checkpoints.Manifest
			if man, err = s.store.Manifest(v.cfg.Name, from); err == nil {
				fromRun = man.RunID
			}
		}
	}
	if err != nil {
		return fmt.Errorf("prepare training state: %w", err)
	}
	run, err := s.store.CreateRun(checkpoints.Run{Variant: v.cfg.Name, Config: checkpoints.RunConfig{
		Epochs: int(cfg.GetEpochs()), BatchSize: int(cfg.GetBatchSize()), LearningRate: cfg.GetLearningRate(),
		Momentum: cfg.GetMomentum(), Seed: cfg.GetSeed(), DatasetFingerprint: ds.Fingerprint(), Backend: s.backend.Name(),
		FromVersion: from, FromRun: fromRun,
	}})
	if err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	j.mu.Lock()
	j.runID, j.runStarted = run.ID, run.StartedAt
	j.mu.Unlock()
	span.SetAttributes(AttrRunID.String(run.ID))
	if _, err := s.store.UpdateJob(j.id, checkpoints.JobRunning, "", run.ID); err != nil {
		return fmt.Errorf("record job run: %w", err)
	}
	done := 0
	return m.Train(ctx, ds, model.TrainOptions{
		Epochs: int(cfg.GetEpochs()), BatchSize: int(cfg.GetBatchSize()), LearningRate: cfg.GetLearningRate(),
		Momentum: cfg.GetMomentum(), Seed: cfg.GetSeed(), Augment: cfg.GetAugment(),
	}, func(e model.EpochEnd) error {
		done++
		met := e.Metrics
		ectx, es := s.tel.tracer.Start(ctx, "epoch", trace.WithTimestamp(time.Now().Add(-met.WallTime)),
			trace.WithAttributes(AttrVariant.String(v.cfg.Name), AttrEpoch.Int(met.Epoch), AttrLoss.Float64(met.Loss),
				AttrAccuracy.Float64(met.Accuracy), AttrValLoss.Float64(met.ValLoss), AttrValAccuracy.Float64(met.ValAccuracy),
				AttrImagesPerSec.Float64(met.ImagesPerSec)))
		s.tel.trainSpeed.Record(ctx, met.ImagesPerSec, metric.WithAttributes(AttrVariant.String(v.cfg.Name)))
		// The epoch's record is written before its checkpoint commits: a
		// crash between the two leaves a recorded epoch without a
		// checkpoint, which the resumed run records again (history readers
		// keep the newer), never a checkpoint whose epoch is missing from
		// the history.
		record := func(version uint64) error {
			if err := s.store.AddEpoch(run.ID, checkpoints.Epoch{Epoch: met.Epoch, Loss: met.Loss, Accuracy: met.Accuracy,
				ValLoss: met.ValLoss, ValAccuracy: met.ValAccuracy, WallTime: met.WallTime, ImagesPerSec: met.ImagesPerSec,
				Time: time.Now(), Version: version}); err != nil {
				return fmt.Errorf("record epoch: %w", err)
			}
			return nil
		}
		var version int64
		var err error
		if cfg.GetPublish() == flowerdpb.PublishPolicy_PUBLISH_POLICY_EACH_EPOCH || done == int(cfg.GetEpochs()) {
			version, err = s.checkpoint(ectx, v.cfg.Name, run.ID, e, record)
		} else {
			err = record(0)
		}
		endSpan(es, err)
		if err != nil {
			return err
		}
		j.epochDone(epochToPB(met, version), met.WallTime)
		return nil
	})
}

// readState loads a stored version into m's training state without
// publishing it.
func (s *Server) readState(name string, version uint64, m *model.Model) error {
	r, err := s.store.OpenVersion(name, version)
	if err != nil {
		return err
	}
	defer r.Close()
	return m.ReadState(r)
}

// checkpoint stores the epoch's training state as a new version and, unless
// the variant's served version is pinned, serves it. record is called with
// the version once the state is written, before it commits.
func (s *Server) checkpoint(ctx context.Context, name, runID string, e model.EpochEnd, record func(version uint64) error) (_ int64, err error) {
	met := e.Metrics
	ctx, span := s.tel.tracer.Start(ctx, "checkpoint write", trace.WithAttributes(AttrVariant.String(name), AttrEpoch.Int(met.Epoch)))
	defer func() { endSpan(span, err) }()
	start := time.Now()
	w, err := s.store.Create(name, checkpoints.Meta{RunID: runID, Epoch: met.Epoch, Step: met.Step,
		ValAccuracy: met.ValAccuracy, ValLoss: met.ValLoss})
	if err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	if err := e.WriteState(w); err != nil {
		w.Abort()
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	if err := record(w.Version()); err != nil {
		w.Abort()
		return 0, err
	}
	man, err := w.Commit()
	if err != nil {
		w.Abort() // frees the chunks written so far now, not at the next Open
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	took := time.Since(start)
	span.SetAttributes(AttrVersion.Int64(int64(man.Version)), AttrBytes.Int64(man.Size), AttrChunks.Int(man.Chunks))
	s.tel.checkpointTime.Record(ctx, took.Seconds(), metric.WithAttributes(AttrVariant.String(name)))
	if _, pinned, err := s.store.Served(name); err != nil {
		return 0, err
	} else if !pinned {
		if err := e.Publish(int64(man.Version)); err != nil {
			return 0, fmt.Errorf("publish: %w", err)
		}
		s.exported(name, int64(man.Version))
	}
	return int64(man.Version), nil
}

func (j *job) setState(st flowerdpb.JobState) {
	j.mu.Lock()
	j.state, j.updated = st, time.Now()
	ev := &flowerdpb.WatchJobResponse{Job: j.toPBLocked()}
	j.broadcastLocked(ev)
	j.mu.Unlock()
}

func (j *job) epochDone(met *flowerdpb.EpochMetrics, took time.Duration) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.epochsDone++
	j.last, j.updated = met, time.Now()
	j.epochSecs += took.Seconds()
	left := float64(j.config.GetEpochs() - j.epochsDone)
	ev := &flowerdpb.WatchJobResponse{Job: j.toPBLocked(), Epoch: met, EtaSeconds: j.epochSecs / float64(j.epochsDone) * left}
	j.broadcastLocked(ev)
}

// finish records the terminal state and ends every watcher's stream.
func (j *job) finish(st flowerdpb.JobState, reason string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.state, j.errMsg, j.updated = st, reason, time.Now()
	j.broadcastLocked(&flowerdpb.WatchJobResponse{Job: j.toPBLocked()})
	for ch := range j.subs {
		close(ch)
	}
	j.subs = nil
}

// broadcastLocked sends ev to every watcher; a watcher too slow to keep a
// buffer of events loses the oldest, never blocks the job.
func (j *job) broadcastLocked(ev *flowerdpb.WatchJobResponse) {
	for ch := range j.subs {
		select {
		case ch <- ev:
		default:
			select {
			case <-ch:
			default:
			}
			ch <- ev
		}
	}
}

// subscribe returns a channel of the job's events, starting with its state
// now, closed when the job ends; nil if it has ended.
func (j *job) subscribe() chan *flowerdpb.WatchJobResponse {
	j.mu.Lock()
	defer j.mu.Unlock()
	ch := make(chan *flowerdpb.WatchJobResponse, 64)
	ch <- &flowerdpb.WatchJobResponse{Job: j.toPBLocked(), Epoch: j.last}
	if j.subs == nil {
		close(ch)
		return ch
	}
	j.subs[ch] = struct{}{}
	return ch
}

func (j *job) unsubscribe(ch chan *flowerdpb.WatchJobResponse) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.subs, ch)
}

func (j *job) toPB() *flowerdpb.Job {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.toPBLocked()
}

func (j *job) toPBLocked() *flowerdpb.Job {
	return &flowerdpb.Job{
		Id: j.id, Variant: j.v.cfg.Name, State: j.state, Config: j.config, EpochsDone: j.epochsDone,
		LastEpoch: j.last, Error: j.errMsg, RunId: j.runID,
		CreatedAt: timestamppb.New(j.created), UpdatedAt: timestamppb.New(j.updated),
	}
}

// WatchJob streams a job's events until it ends.
func (s *Server) WatchJob(req *flowerdpb.WatchJobRequest, stream flowerdpb.FlowerdService_WatchJobServer) error {
	ctx := stream.Context()
	j := s.jobs.get(req.GetJobId())
	if j == nil {
		// Not live: it ended (or never existed); send its record once.
		pj, err := s.storedJob(req.GetJobId())
		if err != nil {
			return s.toStatus(ctx, "WatchJob", err)
		}
		return stream.Send(&flowerdpb.WatchJobResponse{Job: pj, Epoch: pj.GetLastEpoch()})
	}
	ch := j.subscribe()
	defer j.unsubscribe(ch)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-ctx.Done():
			return s.toStatus(ctx, "WatchJob", ctx.Err())
		}
	}
}

// GetJob returns a job, live or recorded.
func (s *Server) GetJob(ctx context.Context, req *flowerdpb.GetJobRequest) (*flowerdpb.GetJobResponse, error) {
	if j := s.jobs.get(req.GetJobId()); j != nil {
		return &flowerdpb.GetJobResponse{Job: j.toPB()}, nil
	}
	pj, err := s.storedJob(req.GetJobId())
	if err != nil {
		return nil, s.toStatus(ctx, "GetJob", err)
	}
	return &flowerdpb.GetJobResponse{Job: pj}, nil
}

// storedJob reads a job's record and its run's last epoch from the store.
func (s *Server) storedJob(id string) (*flowerdpb.Job, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: no job_id", errInvalid)
	}
	rec, err := s.store.Job(id)
	if errors.Is(err, checkpoints.ErrNotFound) || errors.Is(err, checkpoints.ErrInvalid) {
		return nil, fmt.Errorf("%w: job %q (ListJobs lists them)", errNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	return s.jobRecordToPB(rec), nil
}

func (s *Server) jobRecordToPB(rec checkpoints.Job) *flowerdpb.Job {
	pj := &flowerdpb.Job{Id: rec.ID, Variant: rec.Variant, State: pbState(rec.State), Error: rec.Reason, RunId: rec.RunID,
		CreatedAt: timestamppb.New(rec.CreatedAt), UpdatedAt: timestamppb.New(rec.UpdatedAt)}
	cfg := &flowerdpb.TrainRequest{}
	if proto.Unmarshal(rec.Request, cfg) == nil {
		pj.Config = cfg
	}
	if rec.RunID != "" {
		if epochs, err := s.store.History(rec.RunID); err == nil && len(epochs) > 0 {
			pj.EpochsDone = int32(len(epochs))
			pj.LastEpoch = storedEpochToPB(epochs[len(epochs)-1])
		}
	}
	return pj
}

// ListJobs lists jobs, newest first.
func (s *Server) ListJobs(ctx context.Context, req *flowerdpb.ListJobsRequest) (*flowerdpb.ListJobsResponse, error) {
	variant := req.GetVariant()
	if variant == allVariants {
		variant = ""
	}
	if variant != "" {
		if _, err := s.one(variant); err != nil {
			return nil, s.toStatus(ctx, "ListJobs", err)
		}
	}
	recs, err := s.store.Jobs()
	if err != nil {
		return nil, s.toStatus(ctx, "ListJobs", err)
	}
	slices.SortFunc(recs, func(a, b checkpoints.Job) int { return b.CreatedAt.Compare(a.CreatedAt) })
	resp := &flowerdpb.ListJobsResponse{}
	for _, rec := range recs {
		if variant != "" && rec.Variant != variant {
			continue
		}
		if j := s.jobs.get(rec.ID); j != nil {
			resp.Jobs = append(resp.Jobs, j.toPB())
			continue
		}
		resp.Jobs = append(resp.Jobs, s.jobRecordToPB(rec))
	}
	return resp, nil
}

// CancelJob cancels a live job and waits for it to stop (within one training
// step), or until the call's deadline.
func (s *Server) CancelJob(ctx context.Context, req *flowerdpb.CancelJobRequest) (*flowerdpb.CancelJobResponse, error) {
	if err := s.readOnly("cancel jobs"); err != nil {
		return nil, s.toStatus(ctx, "CancelJob", err)
	}
	j := s.jobs.get(req.GetJobId())
	if j == nil {
		pj, err := s.storedJob(req.GetJobId())
		if err != nil {
			return nil, s.toStatus(ctx, "CancelJob", err)
		}
		return nil, s.toStatus(ctx, "CancelJob", fmt.Errorf("%w: job %s already ended (%s)", errJobRunning, pj.GetId(), pj.GetState()))
	}
	j.mu.Lock()
	j.byUser = true
	j.mu.Unlock()
	j.cancel()
	select {
	case <-j.done:
	case <-ctx.Done():
	}
	return &flowerdpb.CancelJobResponse{Job: j.toPB()}, nil
}

// jobStates pairs the API's job states with the store's.
var jobStates = []struct {
	pb    flowerdpb.JobState
	store checkpoints.JobState
}{
	{flowerdpb.JobState_JOB_STATE_QUEUED, checkpoints.JobQueued},
	{flowerdpb.JobState_JOB_STATE_RUNNING, checkpoints.JobRunning},
	{flowerdpb.JobState_JOB_STATE_COMPLETED, checkpoints.JobCompleted},
	{flowerdpb.JobState_JOB_STATE_CANCELLED, checkpoints.JobCancelled},
	{flowerdpb.JobState_JOB_STATE_FAILED, checkpoints.JobFailed},
	{flowerdpb.JobState_JOB_STATE_INTERRUPTED, checkpoints.JobInterrupted},
}

func storeState(st flowerdpb.JobState) checkpoints.JobState {
	for _, s := range jobStates {
		if s.pb == st {
			return s.store
		}
	}
	return checkpoints.JobFailed
}

func pbState(st checkpoints.JobState) flowerdpb.JobState {
	for _, s := range jobStates {
		if s.store == st {
			return s.pb
		}
	}
	return flowerdpb.JobState_JOB_STATE_UNSPECIFIED
}

func epochToPB(met model.EpochMetrics, version int64) *flowerdpb.EpochMetrics {
	return &flowerdpb.EpochMetrics{Epoch: int32(met.Epoch), Loss: met.Loss, Accuracy: met.Accuracy,
		ValLoss: met.ValLoss, ValAccuracy: met.ValAccuracy, EpochSeconds: met.WallTime.Seconds(),
		ImagesPerSec: met.ImagesPerSec, Time: timestamppb.Now(), Version: version}
}

func storedEpochToPB(e checkpoints.Epoch) *flowerdpb.EpochMetrics {
	return &flowerdpb.EpochMetrics{Epoch: int32(e.Epoch), Loss: e.Loss, Accuracy: e.Accuracy,
		ValLoss: e.ValLoss, ValAccuracy: e.ValAccuracy, EpochSeconds: e.WallTime.Seconds(),
		ImagesPerSec: e.ImagesPerSec, Time: timestamppb.New(e.Time), Version: int64(e.Version)}
}

func versionInfo(m checkpoints.Manifest) *flowerdpb.Version {
	return &flowerdpb.Version{Version: int64(m.Version), Epoch: int32(m.Epoch), Step: m.Step,
		ValAccuracy: m.ValAccuracy, ValLoss: m.ValLoss, SizeBytes: m.Size, RunId: m.RunID,
		CreatedAt: timestamppb.New(m.CreatedAt)}
}
