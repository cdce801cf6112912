package service

import (
	"context"
	"errors"
	"fmt"

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
	runs, err := s.store.Runs(cfg.Name, 0)
	if err != nil {
		return nil, err
	}
	// Runs come newest first; the last validation accuracy is the newest
	// epoch's.
	lastSet := false
	for _, r := range runs {
		epochs, err := s.store.History(r.ID)
		if err != nil {
			return nil, err
		}
		for i := len(epochs) - 1; i >= 0; i-- {
			e := epochs[i]
			row.Epochs++
			row.TotalTrainSeconds += e.WallTime.Seconds()
			row.BestValAccuracy = max(row.BestValAccuracy, e.ValAccuracy)
			if !lastSet {
				row.LastValAccuracy, lastSet = e.ValAccuracy, true
			}
		}
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
