// Package datasettest finds the Oxford 17 Flowers data for tests: one place
// instead of a copy in every package's tests. It imports only the standard
// library.
package datasettest

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the absolute path of Oxford 17 Flowers: $FLOWERD_DATA, else
// shared/data/flowers17 beside the module's root (the checkout's ../shared).
// It skips the test, saying how to point it at the data, when there is none.
func Dir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("FLOWERD_DATA")
	if dir == "" {
		dir = filepath.Join(moduleRoot(t), "..", "shared", "data", "flowers17")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Skipf("Oxford 17 Flowers not found at %s (set FLOWERD_DATA): %v", abs, err)
	}
	return abs
}

// moduleRoot is the nearest directory above the working directory (a test's
// package directory) that holds go.mod.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
