package checkpoints

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestJobsRecovery(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	states := map[string]JobState{"j1": JobQueued, "j2": JobRunning, "j3": JobCompleted, "j4": JobFailed, "j5": JobQueued}
	for i, id := range []string{"j1", "j2", "j3", "j4", "j5"} {
		_, err := s.CreateJob(Job{ID: id, Kind: "train", Variant: "model1", State: states[id],
			Request: []byte("req-" + id), CreatedAt: t0.Add(time.Duration(i) * time.Second)})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The server stops without finishing its jobs.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openT(t, dir, testOptions(t))
	got, err := s.InterruptJobs("server restarted")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range got {
		ids = append(ids, j.ID)
		if j.State != JobInterrupted || j.Reason != "server restarted" || string(j.Request) != "req-"+j.ID {
			t.Errorf("interrupted job = %+v", j)
		}
	}
	if want := []string{"j5", "j2", "j1"}; !slices.Equal(ids, want) {
		t.Errorf("InterruptJobs = %v; want %v", ids, want)
	}
	if again, err := s.InterruptJobs("again"); err != nil || len(again) != 0 {
		t.Errorf("second InterruptJobs = %v, %v; want none", again, err)
	}
	all, err := s.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	wantStates := map[string]JobState{"j1": JobInterrupted, "j2": JobInterrupted, "j3": JobCompleted, "j4": JobFailed, "j5": JobInterrupted}
	ids = nil
	for _, j := range all {
		ids = append(ids, j.ID)
		if j.State != wantStates[j.ID] {
			t.Errorf("job %s state %s; want %s", j.ID, j.State, wantStates[j.ID])
		}
	}
	if want := []string{"j5", "j4", "j3", "j2", "j1"}; !slices.Equal(ids, want) {
		t.Errorf("Jobs = %v; want %v", ids, want)
	}
}

func TestJobTransitions(t *testing.T) {
	s := openT(t, t.TempDir(), testOptions(t))
	j, err := s.CreateJob(Job{Kind: "finetune"})
	if err != nil || j.ID == "" || j.State != JobQueued {
		t.Fatalf("CreateJob = %+v, %v; want a queued job with an ID", j, err)
	}
	steps := []struct {
		state   JobState
		reason  string
		runID   string
		wantErr error
	}{
		{"bogus", "", "", ErrInvalid},
		{JobRunning, "", "run-1", nil},
		{JobCancelled, "by client", "", nil},
		{JobRunning, "", "", ErrJobFinished},
		{JobFailed, "", "", ErrJobFinished},
	}
	for _, st := range steps {
		got, err := s.UpdateJob(j.ID, st.state, st.reason, st.runID)
		if !errors.Is(err, st.wantErr) {
			t.Fatalf("UpdateJob(%s) = %v; want %v", st.state, err, st.wantErr)
		}
		if err == nil && (got.State != st.state || got.Reason != st.reason || got.RunID != "run-1") {
			t.Errorf("UpdateJob(%s) = %+v", st.state, got)
		}
	}
	if got, err := s.Job(j.ID); err != nil || got.State != JobCancelled || got.RunID != "run-1" {
		t.Errorf("Job = %+v, %v; want cancelled, run-1", got, err)
	}
	if _, err := s.CreateJob(Job{ID: j.ID}); !errors.Is(err, ErrExists) {
		t.Errorf("CreateJob(duplicate) = %v; want ErrExists", err)
	}
	if _, err := s.UpdateJob("nope", JobRunning, "", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateJob(unknown) = %v; want ErrNotFound", err)
	}
	if err := s.DeleteJob(j.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Job(j.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Job after delete = %v; want ErrNotFound", err)
	}
	if err := s.DeleteJob(j.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteJob = %v; want ErrNotFound", err)
	}
}
