package checkpoints

import (
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Evaluation is the recorded result of evaluating one checkpoint version on
// one split, so that what a version scored outlives the process that
// measured it.
type Evaluation struct {
	Variant  string
	Version  uint64 // 0 is the seeded initial weights
	Split    string // e.g. "val", "test"
	Examples int
	Loss     float64
	Top1     float64
	Top5     float64
	Time     time.Time // when it was measured; zero means now
}

type evaluationRecord struct {
	Examples int       `json:"examples"`
	Loss     jfloat    `json:"loss"`
	Top1     jfloat    `json:"top1"`
	Top5     jfloat    `json:"top5"`
	Time     time.Time `json:"time"`
}

// evaluationKey is ev/<variant>/<split>/<version:8>.
func evaluationKey(variant, split string, version uint64) []byte {
	return append([]byte(pEvaluation+variant+"/"+split+"/"), be64(version)...)
}

// AddEvaluation records an evaluation, replacing an earlier one of the same
// variant, split and version.
func (s *Store) AddEvaluation(e Evaluation) error {
	if err := checkName("variant", e.Variant); err != nil {
		return fmt.Errorf("add evaluation: %w", err)
	}
	if err := checkName("split", e.Split); err != nil {
		return fmt.Errorf("add evaluation: %w", err)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if err := s.begin(); err != nil {
		return fmt.Errorf("add evaluation: %w", err)
	}
	defer s.end()
	rec := evaluationRecord{Examples: e.Examples, Loss: jfloat(e.Loss), Top1: jfloat(e.Top1), Top5: jfloat(e.Top5), Time: e.Time}
	if err := s.update(func(txn *badger.Txn) error {
		return setJSON(txn, evaluationKey(e.Variant, e.Split, e.Version), rec)
	}); err != nil {
		return fmt.Errorf("add evaluation of %s version %d: %w", e.Variant, e.Version, err)
	}
	return nil
}

// Evaluation returns the recorded evaluation of a variant's version on a
// split, or ErrNotFound.
func (s *Store) Evaluation(variant, split string, version uint64) (Evaluation, error) {
	if err := checkName("variant", variant); err != nil {
		return Evaluation{}, fmt.Errorf("get evaluation: %w", err)
	}
	if err := checkName("split", split); err != nil {
		return Evaluation{}, fmt.Errorf("get evaluation: %w", err)
	}
	if err := s.begin(); err != nil {
		return Evaluation{}, fmt.Errorf("get evaluation: %w", err)
	}
	defer s.end()
	var rec evaluationRecord
	if err := s.db.View(func(txn *badger.Txn) error {
		return getJSON(txn, evaluationKey(variant, split, version), &rec)
	}); err != nil {
		return Evaluation{}, fmt.Errorf("get %s evaluation of %s version %d: %w", split, variant, version, err)
	}
	return Evaluation{Variant: variant, Version: version, Split: split, Examples: rec.Examples,
		Loss: float64(rec.Loss), Top1: float64(rec.Top1), Top5: float64(rec.Top5), Time: rec.Time}, nil
}
