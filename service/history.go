package service

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowerd/flowerd/checkpoints"
	"github.com/flowerd/flowerd/model/dataset"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

// DefaultHistoryRuns is how many runs GetHistory returns by default.
const DefaultHistoryRuns = 10

// GetHistory returns a variant's runs with their per-epoch metrics, newest
// run first.
func (s *Server) GetHistory(ctx context.Context, req *flowerdpb.GetHistoryRequest) (*flowerdpb.GetHistoryResponse, error) {
	resp, err := s.history(req)
	if err != nil {
		return nil, s.toStatus(ctx, "GetHistory", err)
	}
	return resp, nil
}

func (s *Server) history(req *flowerdpb.GetHistoryRequest) (*flowerdpb.GetHistoryResponse, error) {
	v, err := s.one(req.GetVariant())
	if err != nil {
		return nil, err
	}
	limit := int(req.GetMaxRuns())
	if limit < 0 {
		return nil, fmt.Errorf("%w: max_runs %d", errInvalid, limit)
	}
	if limit == 0 {
		limit = DefaultHistoryRuns
	}
	var runs []checkpoints.Run
	if id := req.GetRunId(); id != "" {
		run, err := s.store.Run(id)
		if errors.Is(err, checkpoints.ErrNotFound) || errors.Is(err, checkpoints.ErrInvalid) || (err == nil && run.Variant != v.cfg.Name) {
			return nil, fmt.Errorf("%w: run %q of %s", errNotFound, id, v.cfg.Name)
		}
		if err != nil {
			return nil, err
		}
		runs = []checkpoints.Run{run}
	} else if runs, err = s.store.Runs(v.cfg.Name, limit); err != nil {
		return nil, err
	}
	resp := &flowerdpb.GetHistoryResponse{}
	for _, r := range runs {
		pr, err := s.runToPB(r)
		if err != nil {
			return nil, err
		}
		resp.Runs = append(resp.Runs, pr)
	}
	return resp, nil
}

func (s *Server) runToPB(r checkpoints.Run) (*flowerdpb.Run, error) {
	epochs, err := s.store.History(r.ID)
	if err != nil {
		return nil, err
	}
	outcome := string(r.Outcome)
	if outcome == "" {
		outcome = "running"
	}
	pr := &flowerdpb.Run{RunId: r.ID, Variant: r.Variant, Outcome: outcome, Reason: r.Reason,
		StartedAt: timestamppb.New(r.StartedAt), TotalSeconds: r.TotalTime.Seconds(),
		DatasetFingerprint: r.Config.DatasetFingerprint, Backend: r.Config.Backend,
		FromVersion: int64(r.Config.FromVersion), FromRun: r.Config.FromRun,
		Config: &flowerdpb.TrainRequest{Variant: r.Variant, Epochs: int32(r.Config.Epochs), BatchSize: int32(r.Config.BatchSize),
			LearningRate: r.Config.LearningRate, Momentum: r.Config.Momentum, Seed: r.Config.Seed}}
	for _, e := range epochs {
		pr.Epochs = append(pr.Epochs, storedEpochToPB(e))
	}
	return pr, nil
}

// CompareVariants reports, per variant, what training cost (from the store's
// histories), what it bought (validation and test accuracy) and what serving
// costs now (live Classify latency).
func (s *Server) CompareVariants(ctx context.Context, _ *flowerdpb.CompareVariantsRequest) (*flowerdpb.CompareVariantsResponse, error) {
	resp := &flowerdpb.CompareVariantsResponse{}
	for _, name := range s.order {
		row, err := s.compare(s.variants[name])
		if err != nil {
			return nil, s.toStatus(ctx, "CompareVariants", err)
		}
		resp.Rows = append(resp.Rows, row)
	}
	return resp, nil
}

func (s *Server) compare(v *variant) (*flowerdpb.VariantComparison, error) {
	cfg := v.cfg
	row := &flowerdpb.VariantComparison{Variant: cfg.Name, Regularization: string(cfg.Regularization),
		PoolStrides: []int32{int32(cfg.PoolStrides[0]), int32(cfg.PoolStrides[1]), int32(cfg.PoolStrides[2])}}
	fwd, _ := cfg.FLOPs(s.modelImageSize(), len(s.classes()))
	row.GflopPerImage = fwd / 1e9
	m, _, _, _ := v.snapshot()
	if m != nil {
		row.Parameters = int64(m.NumParameters())
	}
	var served int64
	if m != nil {
		served = m.Served().Version()
	}
	epochs, err := s.servedLineage(cfg.Name, served)
	if err != nil {
		return nil, err
	}
	for _, e := range epochs {
		row.Epochs++
		row.TotalTrainSeconds += e.WallTime.Seconds()
		row.BestValAccuracy = max(row.BestValAccuracy, e.ValAccuracy)
		row.LastValAccuracy = e.ValAccuracy
	}
	if row.Epochs > 0 {
		row.MeanEpochSeconds = row.TotalTrainSeconds / float64(row.Epochs)
	}
	if m != nil {
		t, err := s.store.Evaluation(cfg.Name, dataset.Test.String(), uint64(m.Served().Version()))
		switch {
		case err == nil:
			row.HasTest, row.TestAccuracy = true, t.Top1
		case !errors.Is(err, checkpoints.ErrNotFound):
			return nil, err
		}
	}
	n, p50, p95, p99 := v.latency.percentiles()
	row.ClassifySamples, row.ClassifyP50Ms, row.ClassifyP95Ms, row.ClassifyP99Ms = int32(n), p50, p95, p99
	return row, nil
}

// servedLineage returns the epochs that produced version of variant name,
// oldest first: those of the run that wrote it, up to its epoch, preceded by
// those of the runs it continued (each up to where the next resumed). Other
// runs (a from-scratch run that was not kept, a cancelled experiment) cost
// nothing the served weights owe. Version 0 (initial weights) has none; a
// run recorded before runs named their origin ends the walk.
func (s *Server) servedLineage(name string, version int64) ([]checkpoints.Epoch, error) {
	if version <= 0 {
		return nil, nil
	}
	if s.opts.FollowDir != "" {
		// A follower serves the trainer's versions, not its own store's:
		// the trainer exported their history beside them.
		v := s.variants[name]
		v.mu.Lock()
		defer v.mu.Unlock()
		if v.followed.version == version {
			return slices.Clone(v.followed.epochs), nil
		}
		return nil, nil
	}
	man, err := s.store.Manifest(name, uint64(version))
	if errors.Is(err, checkpoints.ErrNotFound) {
		return nil, nil // pruned, or written by a store since recreated
	} else if err != nil {
		return nil, err
	}
	var parts [][]checkpoints.Epoch // newest run first
	runID, upTo := man.RunID, man.Epoch
	seen := map[string]bool{}
	for runID != "" && !seen[runID] {
		seen[runID] = true
		run, err := s.store.Run(runID)
		if errors.Is(err, checkpoints.ErrNotFound) {
			break
		} else if err != nil {
			return nil, err
		}
		epochs, err := s.store.History(runID)
		if err != nil {
			return nil, err
		}
		epochs = slices.DeleteFunc(epochs, func(e checkpoints.Epoch) bool { return e.Epoch > upTo })
		if len(epochs) == 0 {
			break
		}
		parts = append(parts, epochs)
		runID, upTo = run.Config.FromRun, epochs[0].Epoch-1
	}
	var out []checkpoints.Epoch
	for i := len(parts) - 1; i >= 0; i-- {
		out = append(out, parts[i]...)
	}
	return out, nil
}
