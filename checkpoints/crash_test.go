package checkpoints

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const crashDirEnv = "CHECKPOINTS_CRASH_DIR"

// crashSize is the state size the crash child writes for a given step, so
// the parent can regenerate and check any version from its manifest alone.
func crashSize(step int64) int64 { return 100<<10 + (step%7)*70<<10 }

func crashOptions(t testing.TB) Options {
	o := testOptions(t)
	o.KeepVersions = 2
	o.GCInterval = 20 * time.Millisecond // let GC run, and be killed, too
	return o
}

// TestCrashChild is the child of TestCrash: it writes checkpoints and
// records in a loop until it is killed. It does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("only runs as the child process of TestCrash")
	}
	s, err := Open(dir, crashOptions(t))
	if err != nil {
		fmt.Println("open failed:", err)
		os.Exit(3)
	}
	// Continue the step count where the last child stopped.
	var step int64
	for _, v := range []string{"a", "b"} {
		ms, err := s.Versions(v)
		if err != nil {
			fmt.Println("versions failed:", err)
			os.Exit(3)
		}
		for _, m := range ms {
			step = max(step, m.Step)
		}
	}
	fmt.Println("ready")
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second) // in case the parent is gone
	for time.Now().Before(deadline) {
		step++
		variant := []string{"a", "b"}[step%2]
		meta := Meta{Step: step, Epoch: int(step), ValAccuracy: float64(step%5) / 10}
		if _, err := s.Save(ctx, variant, meta, newGen(uint64(step), crashSize(step))); err != nil {
			fmt.Println("save failed:", err)
			os.Exit(3)
		}
		run, err := s.CreateRun(Run{Variant: variant})
		if err == nil {
			err = s.AddEpoch(run.ID, Epoch{Epoch: 1, Loss: 0.5})
		}
		if err == nil && step%3 == 0 {
			_, err = s.Rollback(variant)
			if errors.Is(err, ErrNotFound) {
				err = nil
			}
		}
		if err == nil && step%3 == 1 {
			err = s.Unpin(variant)
		}
		if err != nil {
			fmt.Println("records failed:", err)
			os.Exit(3)
		}
	}
	os.Exit(0)
}

// TestCrash kills a child process that writes checkpoints with SIGKILL at
// random moments. After every kill the store must open, every listed
// version must verify and hold the bytes it was written with, no chunk of
// an unfinished write may be left, and the served version must load.
func TestCrash(t *testing.T) {
	kills := 20
	if testing.Short() {
		kills = 5
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	ctx := context.Background()
	seen := map[string]uint64{} // newest version seen per variant
	for i := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		if !lines.Scan() || lines.Text() != "ready" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("kill %d: child did not start: %q %s", i, lines.Text(), stderr.String())
		}
		rest := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(out)
			rest <- string(b)
		}()
		time.Sleep(time.Duration(rng.IntN(250)) * time.Millisecond)
		cmd.Process.Kill() // SIGKILL
		err = cmd.Wait()
		if cmd.ProcessState.Exited() {
			t.Fatalf("kill %d: child exited by itself (%v): %s%s", i, err, <-rest, stderr.String())
		}
		if strings.Contains(stderr.String(), "DATA RACE") {
			t.Errorf("kill %d: the child saw a data race:\n%s", i, stderr.String())
		}

		s, err := Open(dir, crashOptions(t))
		if err != nil {
			t.Fatalf("kill %d: Open = %v", i, err)
		}
		var chunks int
		for _, v := range []string{"a", "b"} {
			ms, err := s.Versions(v)
			if err != nil {
				t.Fatalf("kill %d: Versions(%s) = %v", i, v, err)
			}
			for _, m := range ms {
				chunks += m.Chunks
				if want := genSum(uint64(m.Step), crashSize(m.Step)); m.SHA256 != want {
					t.Errorf("kill %d: %s version %d (step %d) has sha %s; want %s", i, v, m.Version, m.Step, m.SHA256, want)
				}
				if err := s.Verify(ctx, v, m.Version); err != nil {
					t.Errorf("kill %d: Verify(%s, %d) = %v", i, v, m.Version, err)
				}
			}
			if len(ms) == 0 {
				continue
			}
			if ms[0].Version < seen[v] {
				t.Errorf("kill %d: newest %s version %d; an earlier check saw %d", i, v, ms[0].Version, seen[v])
			}
			seen[v] = ms[0].Version
			served, _, err := s.Served(v)
			if err != nil {
				t.Fatalf("kill %d: Served(%s) = %v", i, v, err)
			}
			m, err := s.Load(ctx, v, func(Manifest, io.Reader) error { return nil })
			if err != nil || m.Version != served.Version {
				t.Errorf("kill %d: Load(%s) = %d, %v; want served version %d", i, v, m.Version, err, served.Version)
			}
		}
		if got := len(rawKeys(t, s, pChunk)); got != chunks {
			t.Errorf("kill %d: %d chunk keys; the manifests list %d", i, got, chunks)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("kill %d: Close = %v", i, err)
		}
	}
	t.Logf("after %d kills: newest versions %v", kills, seen)
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Errorf("children committed no versions (%v); the test proves nothing", seen)
	}
}
