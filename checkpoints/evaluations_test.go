package checkpoints

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestEvaluations(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Evaluation("model2", "test", 3); !errors.Is(err, ErrNotFound) {
		t.Errorf("Evaluation before any = %v; want ErrNotFound", err)
	}
	for _, e := range []Evaluation{
		{Variant: "model2", Version: 3, Split: "test", Examples: 170, Top1: 0.5, Top5: 0.8, Loss: 1.5},
		{Variant: "model2", Version: 3, Split: "test", Examples: 170, Top1: 0.6, Top5: 0.9, Loss: 1.2}, // replaces
		{Variant: "model2", Version: 3, Split: "val", Examples: 170, Top1: 0.4},
	} {
		if err := s.AddEvaluation(e); err != nil {
			t.Fatalf("AddEvaluation(%+v) = %v", e, err)
		}
	}
	if err := s.AddEvaluation(Evaluation{Variant: "a/b", Split: "test"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddEvaluation(bad variant) = %v; want ErrInvalid", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Survives a reopen.
	s, err = Open(filepath.Clean(dir), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Evaluation("model2", "test", 3)
	if err != nil || got.Top1 != 0.6 || got.Top5 != 0.9 || got.Examples != 170 || got.Time.IsZero() {
		t.Errorf("Evaluation(model2, test, 3) = %+v, %v; want the second record", got, err)
	}
	if got, err := s.Evaluation("model2", "val", 3); err != nil || got.Top1 != 0.4 {
		t.Errorf("Evaluation(model2, val, 3) = %+v, %v", got, err)
	}
}
