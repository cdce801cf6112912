package checkpoints

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// RunConfig is the configuration a training run was started with.
type RunConfig struct {
	Epochs             int
	BatchSize          int
	LearningRate       float64
	Momentum           float64
	Seed               int64
	DatasetFingerprint string
	Backend            string
	FromVersion        uint64 // the checkpoint version the run started from; 0: fresh weights
	FromRun            string // the run that wrote FromVersion, when known
}

// Outcome is how a run ended; the empty Outcome means it has not ended.
type Outcome string

// Outcomes of a run.
const (
	OutcomeCompleted Outcome = "completed"
	OutcomeCancelled Outcome = "cancelled"
	OutcomeFailed    Outcome = "failed"
)

// Run is one training run of one variant.
type Run struct {
	ID         string // set by CreateRun when empty
	Variant    string
	Config     RunConfig
	StartedAt  time.Time // set by CreateRun when zero
	Outcome    Outcome   // empty while running
	Reason     string    // why it was cancelled or failed
	FinishedAt time.Time
	TotalTime  time.Duration
}

// Epoch is the metrics of one epoch of a run.
type Epoch struct {
	Epoch        int
	Loss         float64
	Accuracy     float64
	ValLoss      float64
	ValAccuracy  float64
	WallTime     time.Duration
	ImagesPerSec float64
	Time         time.Time // when the epoch ended
	Version      uint64    // the checkpoint version written for this epoch; 0: none
}

type runRecord struct {
	ID                 string        `json:"id"`
	Variant            string        `json:"variant"`
	Epochs             int           `json:"epochs"`
	BatchSize          int           `json:"batch_size"`
	LearningRate       jfloat        `json:"learning_rate"`
	Momentum           jfloat        `json:"momentum"`
	Seed               int64         `json:"seed"`
	DatasetFingerprint string        `json:"dataset_fingerprint,omitempty"`
	Backend            string        `json:"backend,omitempty"`
	FromVersion        uint64        `json:"from_version,omitempty"`
	FromRun            string        `json:"from_run,omitempty"`
	StartedAt          time.Time     `json:"started_at"`
	Outcome            Outcome       `json:"outcome,omitempty"`
	Reason             string        `json:"reason,omitempty"`
	FinishedAt         time.Time     `json:"finished_at,omitzero"`
	TotalTime          time.Duration `json:"total_time_ns,omitempty"`
}

func toRunRecord(r Run) runRecord {
	return runRecord{
		ID: r.ID, Variant: r.Variant,
		Epochs: r.Config.Epochs, BatchSize: r.Config.BatchSize,
		LearningRate: jfloat(r.Config.LearningRate), Momentum: jfloat(r.Config.Momentum),
		Seed: r.Config.Seed, DatasetFingerprint: r.Config.DatasetFingerprint, Backend: r.Config.Backend,
		FromVersion: r.Config.FromVersion, FromRun: r.Config.FromRun,
		StartedAt: r.StartedAt, Outcome: r.Outcome, Reason: r.Reason,
		FinishedAt: r.FinishedAt, TotalTime: r.TotalTime,
	}
}

func (r runRecord) run() Run {
	return Run{
		ID: r.ID, Variant: r.Variant,
		Config: RunConfig{
			Epochs: r.Epochs, BatchSize: r.BatchSize,
			LearningRate: float64(r.LearningRate), Momentum: float64(r.Momentum),
			Seed: r.Seed, DatasetFingerprint: r.DatasetFingerprint, Backend: r.Backend,
			FromVersion: r.FromVersion, FromRun: r.FromRun,
		},
		StartedAt: r.StartedAt, Outcome: r.Outcome, Reason: r.Reason,
		FinishedAt: r.FinishedAt, TotalTime: r.TotalTime,
	}
}

type epochRecord struct {
	Epoch        int           `json:"epoch"`
	Loss         jfloat        `json:"loss"`
	Accuracy     jfloat        `json:"accuracy"`
	ValLoss      jfloat        `json:"val_loss"`
	ValAccuracy  jfloat        `json:"val_accuracy"`
	WallTime     time.Duration `json:"wall_time_ns"`
	ImagesPerSec jfloat        `json:"images_per_sec"`
	Time         time.Time     `json:"time"`
	Version      uint64        `json:"version,omitempty"`
}

// MarshalJSON writes e as the store keeps it: NaN and infinite metrics
// survive (a diverged epoch's loss is NaN), the wall time in nanoseconds.
// Other files that carry stored epochs (a trainer's exported lineage) use it
// too.
func (e Epoch) MarshalJSON() ([]byte, error) {
	return json.Marshal(epochRecord{
		Epoch: e.Epoch, Loss: jfloat(e.Loss), Accuracy: jfloat(e.Accuracy),
		ValLoss: jfloat(e.ValLoss), ValAccuracy: jfloat(e.ValAccuracy),
		WallTime: e.WallTime, ImagesPerSec: jfloat(e.ImagesPerSec), Time: e.Time, Version: e.Version,
	})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (e *Epoch) UnmarshalJSON(b []byte) error {
	var r epochRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	*e = Epoch{
		Epoch: r.Epoch, Loss: float64(r.Loss), Accuracy: float64(r.Accuracy),
		ValLoss: float64(r.ValLoss), ValAccuracy: float64(r.ValAccuracy),
		WallTime: r.WallTime, ImagesPerSec: float64(r.ImagesPerSec), Time: r.Time, Version: r.Version,
	}
	return nil
}

func runKey(id string) []byte { return []byte(pRun + id) }

// timeKey encodes t so that byte order is time order, before 1970 too.
func timeKey(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())^(1<<63))
}

func runIndexKeys(r runRecord) (byVariant, all []byte) {
	tk := timeKey(r.StartedAt)
	byVariant = append(append([]byte(pRunIdx+r.Variant+"/"), tk...), r.ID...)
	all = append(append([]byte(pRunAll), tk...), r.ID...)
	return byVariant, all
}

func epochPrefix(runID string) []byte { return []byte(pEpoch + runID + "/") }

// newID returns a random 16-hex-digit ID.
func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func getJSON(txn *badger.Txn, k []byte, v any) error {
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("%q: %w", k, ErrNotFound)
	}
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("decode %q: %v: %w", k, err, ErrCorrupt)
		}
		return nil
	})
}

func setJSON(txn *badger.Txn, k []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return txn.Set(k, b)
}

// CreateRun records the start of a run. An empty ID is replaced by a random
// one and a zero StartedAt by now; the stored run is returned. A run with
// the same ID is ErrExists.
func (s *Store) CreateRun(r Run) (Run, error) {
	if r.ID == "" {
		r.ID = newID()
	}
	if err := checkName("run id", r.ID); err != nil {
		return Run{}, fmt.Errorf("create run: %w", err)
	}
	if err := checkName("variant", r.Variant); err != nil {
		return Run{}, fmt.Errorf("create run: %w", err)
	}
	if r.StartedAt.IsZero() {
		r.StartedAt = time.Now()
	}
	if err := s.begin(); err != nil {
		return Run{}, fmt.Errorf("create run: %w", err)
	}
	defer s.end()
	rec := toRunRecord(r)
	err := s.update(func(txn *badger.Txn) error {
		if _, err := txn.Get(runKey(r.ID)); err == nil {
			return fmt.Errorf("run %s: %w", r.ID, ErrExists)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		byVariant, all := runIndexKeys(rec)
		if err := txn.Set(byVariant, nil); err != nil {
			return err
		}
		if err := txn.Set(all, nil); err != nil {
			return err
		}
		return setJSON(txn, runKey(r.ID), rec)
	})
	if err != nil {
		return Run{}, fmt.Errorf("create run: %w", err)
	}
	return rec.run(), nil
}

// FinishRun records how run id ended. A zero total means the time since it
// started.
func (s *Store) FinishRun(id string, outcome Outcome, reason string, total time.Duration) (Run, error) {
	if err := checkName("run id", id); err != nil {
		return Run{}, fmt.Errorf("finish run: %w", err)
	}
	switch outcome {
	case OutcomeCompleted, OutcomeCancelled, OutcomeFailed:
	default:
		return Run{}, fmt.Errorf("finish run: outcome %q: %w", outcome, ErrInvalid)
	}
	if err := s.begin(); err != nil {
		return Run{}, fmt.Errorf("finish run: %w", err)
	}
	defer s.end()
	var rec runRecord
	err := s.update(func(txn *badger.Txn) error {
		if err := getJSON(txn, runKey(id), &rec); err != nil {
			return err
		}
		rec.Outcome, rec.Reason = outcome, reason
		rec.FinishedAt = time.Now()
		rec.TotalTime = total
		if total == 0 {
			rec.TotalTime = rec.FinishedAt.Sub(rec.StartedAt)
		}
		return setJSON(txn, runKey(id), rec)
	})
	if err != nil {
		return Run{}, fmt.Errorf("finish run %s: %w", id, err)
	}
	return rec.run(), nil
}

// Run returns one run.
func (s *Store) Run(id string) (Run, error) {
	if err := checkName("run id", id); err != nil {
		return Run{}, fmt.Errorf("get run: %w", err)
	}
	if err := s.begin(); err != nil {
		return Run{}, fmt.Errorf("get run: %w", err)
	}
	defer s.end()
	var rec runRecord
	if err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, runKey(id), &rec) }); err != nil {
		return Run{}, fmt.Errorf("get run %s: %w", id, err)
	}
	return rec.run(), nil
}

// Runs lists runs newest first (by StartedAt): those of variant, or all
// runs when variant is empty. limit <= 0 means no limit.
func (s *Store) Runs(variant string, limit int) ([]Run, error) {
	prefix := []byte(pRunAll)
	if variant != "" {
		if err := checkName("variant", variant); err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		prefix = []byte(pRunIdx + variant + "/")
	}
	if err := s.begin(); err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer s.end()
	var out []Run
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
		defer it.Close()
		seek := append(append([]byte{}, prefix...), 0xff)
		for it.Seek(seek); it.Valid(); it.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			k := it.Item().Key()
			if len(k) < len(prefix)+8 {
				return fmt.Errorf("run index key %q: %w", k, ErrCorrupt)
			}
			var rec runRecord
			if err := getJSON(txn, runKey(string(k[len(prefix)+8:])), &rec); err != nil {
				return err
			}
			out = append(out, rec.run())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return out, nil
}

// AddEpoch records the metrics of one epoch of run runID. Recording the
// same epoch again replaces it.
func (s *Store) AddEpoch(runID string, e Epoch) error {
	if err := checkName("run id", runID); err != nil {
		return fmt.Errorf("add epoch: %w", err)
	}
	if e.Epoch < 0 || uint64(e.Epoch) > math.MaxUint32 {
		return fmt.Errorf("add epoch: epoch %d: %w", e.Epoch, ErrInvalid)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if err := s.begin(); err != nil {
		return fmt.Errorf("add epoch: %w", err)
	}
	defer s.end()
	err := s.update(func(txn *badger.Txn) error {
		if _, err := txn.Get(runKey(runID)); errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("run %s: %w", runID, ErrNotFound)
		} else if err != nil {
			return err
		}
		return setJSON(txn, binary.BigEndian.AppendUint32(epochPrefix(runID), uint32(e.Epoch)), e)
	})
	if err != nil {
		return fmt.Errorf("add epoch %d of run %s: %w", e.Epoch, runID, err)
	}
	return nil
}

// History returns the epochs of run runID in epoch order. A run with no
// epochs yet has an empty history; an unknown run is ErrNotFound.
func (s *Store) History(runID string) ([]Epoch, error) {
	if err := checkName("run id", runID); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	if err := s.begin(); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer s.end()
	var out []Epoch
	err := s.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get(runKey(runID)); errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("run %s: %w", runID, ErrNotFound)
		} else if err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: epochPrefix(runID), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var e Epoch
			err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &e) })
			if err != nil {
				return fmt.Errorf("decode epoch %q: %v: %w", it.Item().Key(), err, ErrCorrupt)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("history of run %s: %w", runID, err)
	}
	return out, nil
}
