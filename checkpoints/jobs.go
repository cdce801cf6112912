package checkpoints

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// JobState is where a service job is in its life.
type JobState string

// Job states. Queued and running are live; the others are terminal.
const (
	JobQueued      JobState = "queued"
	JobRunning     JobState = "running"
	JobCompleted   JobState = "completed"
	JobCancelled   JobState = "cancelled"
	JobFailed      JobState = "failed"
	JobInterrupted JobState = "interrupted" // the server stopped while the job was live
)

// Terminal reports whether a job in state s can no longer change state.
func (s JobState) Terminal() bool {
	switch s {
	case JobCompleted, JobCancelled, JobFailed, JobInterrupted:
		return true
	}
	return false
}

func (s JobState) valid() bool {
	return s == JobQueued || s == JobRunning || s.Terminal()
}

// Job is the service's record of one job (a training or fine-tuning
// request). The store does not interpret Kind or Request.
type Job struct {
	ID        string   // set by CreateJob when empty
	Kind      string   // e.g. "train", "finetune"
	Variant   string   // may be empty
	RunID     string   // the run it started, once known
	State     JobState // CreateJob defaults it to JobQueued
	Reason    string   // why it failed, was cancelled or interrupted
	Request   []byte   // the request, opaque, so a job can be resubmitted
	CreatedAt time.Time
	UpdatedAt time.Time
}

type jobRecord struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind,omitempty"`
	Variant   string    `json:"variant,omitempty"`
	RunID     string    `json:"run_id,omitempty"`
	State     JobState  `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	Request   []byte    `json:"request,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func jobKey(id string) []byte { return []byte(pJob + id) }

// CreateJob stores a new job. An empty ID is replaced by a random one, an
// empty State by JobQueued, a zero CreatedAt by now. An existing ID is
// ErrExists.
func (s *Store) CreateJob(j Job) (Job, error) {
	if j.ID == "" {
		j.ID = newID()
	}
	if err := checkName("job id", j.ID); err != nil {
		return Job{}, fmt.Errorf("create job: %w", err)
	}
	if j.State == "" {
		j.State = JobQueued
	}
	if !j.State.valid() {
		return Job{}, fmt.Errorf("create job: state %q: %w", j.State, ErrInvalid)
	}
	now := time.Now()
	if j.CreatedAt.IsZero() {
		j.CreatedAt = now
	}
	j.UpdatedAt = now
	if err := s.begin(); err != nil {
		return Job{}, fmt.Errorf("create job: %w", err)
	}
	defer s.end()
	rec := jobRecord(j)
	err := s.update(func(txn *badger.Txn) error {
		if _, err := txn.Get(jobKey(j.ID)); err == nil {
			return fmt.Errorf("job %s: %w", j.ID, ErrExists)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return setJSON(txn, jobKey(j.ID), rec)
	})
	if err != nil {
		return Job{}, fmt.Errorf("create job: %w", err)
	}
	return j, nil
}

// Job returns one job.
func (s *Store) Job(id string) (Job, error) {
	if err := checkName("job id", id); err != nil {
		return Job{}, fmt.Errorf("get job: %w", err)
	}
	if err := s.begin(); err != nil {
		return Job{}, fmt.Errorf("get job: %w", err)
	}
	defer s.end()
	var rec jobRecord
	if err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, jobKey(id), &rec) }); err != nil {
		return Job{}, fmt.Errorf("get job %s: %w", id, err)
	}
	return Job(rec), nil
}

// UpdateJob moves job id to state, with reason (may be empty) and, when
// runID is not empty, records the run it started. A job in a terminal state
// cannot move (ErrJobFinished).
func (s *Store) UpdateJob(id string, state JobState, reason, runID string) (Job, error) {
	if err := checkName("job id", id); err != nil {
		return Job{}, fmt.Errorf("update job: %w", err)
	}
	if !state.valid() {
		return Job{}, fmt.Errorf("update job: state %q: %w", state, ErrInvalid)
	}
	if err := s.begin(); err != nil {
		return Job{}, fmt.Errorf("update job: %w", err)
	}
	defer s.end()
	var rec jobRecord
	err := s.update(func(txn *badger.Txn) error {
		if err := getJSON(txn, jobKey(id), &rec); err != nil {
			return err
		}
		if rec.State.Terminal() {
			return fmt.Errorf("job %s is %s: %w", id, rec.State, ErrJobFinished)
		}
		rec.State, rec.Reason, rec.UpdatedAt = state, reason, time.Now()
		if runID != "" {
			rec.RunID = runID
		}
		return setJSON(txn, jobKey(id), rec)
	})
	if err != nil {
		return Job{}, fmt.Errorf("update job %s: %w", id, err)
	}
	return Job(rec), nil
}

// Jobs lists every job, newest (by CreatedAt) first.
func (s *Store) Jobs() ([]Job, error) {
	if err := s.begin(); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer s.end()
	var out []Job
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		out, err = scanJobs(txn)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return out, nil
}

func scanJobs(txn *badger.Txn) ([]Job, error) {
	var out []Job
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pJob), PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var rec jobRecord
		if err := getJSON(txn, it.Item().KeyCopy(nil), &rec); err != nil {
			return nil, err
		}
		out = append(out, Job(rec))
	}
	slices.SortStableFunc(out, func(a, b Job) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

// InterruptJobs is for a server that is starting: in one transaction it
// moves every queued or running job (left so by a previous process that
// stopped or crashed) to JobInterrupted with reason, and returns those jobs
// as they are now, newest first.
func (s *Store) InterruptJobs(reason string) ([]Job, error) {
	if err := s.begin(); err != nil {
		return nil, fmt.Errorf("interrupt jobs: %w", err)
	}
	defer s.end()
	var out []Job
	err := s.update(func(txn *badger.Txn) error {
		out = out[:0]
		all, err := scanJobs(txn)
		if err != nil {
			return err
		}
		now := time.Now()
		for _, j := range all {
			if j.State.Terminal() {
				continue
			}
			j.State, j.Reason, j.UpdatedAt = JobInterrupted, reason, now
			if err := setJSON(txn, jobKey(j.ID), jobRecord(j)); err != nil {
				return err
			}
			out = append(out, j)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("interrupt jobs: %w", err)
	}
	return out, nil
}

// DeleteJob removes a job record.
func (s *Store) DeleteJob(id string) error {
	if err := checkName("job id", id); err != nil {
		return fmt.Errorf("delete job: %w", err)
	}
	if err := s.begin(); err != nil {
		return fmt.Errorf("delete job: %w", err)
	}
	defer s.end()
	err := s.update(func(txn *badger.Txn) error {
		if _, err := txn.Get(jobKey(id)); errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("job %s: %w", id, ErrNotFound)
		} else if err != nil {
			return err
		}
		return txn.Delete(jobKey(id))
	})
	if err != nil {
		return fmt.Errorf("delete job: %w", err)
	}
	return nil
}
