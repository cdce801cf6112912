package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowerd/flowerd/model/dataset/datasettest"
)

// TestEndToEnd builds the binary, starts it on a free port, drives it with
// grpcurl through reflection (no .proto files) and stops it with SIGTERM.
// `make e2e` (part of `make test`) installs the pinned grpcurl and points
// $GRPCURL at it.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped under -short")
	}
	grpcurl := os.Getenv("GRPCURL")
	if grpcurl == "" {
		t.Skip("GRPCURL is not set: run `make e2e`, which installs the pinned grpcurl")
	}
	dataset := datasettest.Dir(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "flowerd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "FLOWERD_ADDR="+addr, "FLOWERD_DATA_DIR="+filepath.Join(dir, "store"),
		"FLOWERD_DATASET="+dataset, "FLOWERD_VARIANTS=model2", "FLOWERD_SPLIT=2,1,1", "GOMLX_BACKEND=go")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	}()

	call := func(method, data string) string {
		t.Helper()
		args := []string{"-plaintext", "-max-time", "300"}
		if data != "" {
			args = append(args, "-d", "@")
		}
		args = append(args, addr)
		if method != "" {
			args = append(args, strings.Fields(method)...)
		}
		c := exec.Command(grpcurl, args...)
		c.Stdin = strings.NewReader(data)
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %s: %v\n%s", method, err, out)
		}
		return string(out)
	}

	// Wait for readiness through the standard health service.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		c := exec.Command(grpcurl, "-plaintext", addr, "grpc.health.v1.Health/Check")
		out, _ := c.CombinedOutput()
		if strings.Contains(string(out), `"SERVING"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never became SERVING: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	if out := call("list", ""); !strings.Contains(out, "flowerd.v1.FlowerdService") || !strings.Contains(out, "grpc.health.v1.Health") {
		t.Fatalf("grpcurl list = %s", out)
	}
	if out := call("flowerd.v1.FlowerdService/ListModels", ""); !strings.Contains(out, `"name": "model2"`) {
		t.Fatalf("ListModels = %s", out)
	}
	var train struct {
		Jobs []struct {
			ID string `json:"id"`
		} `json:"jobs"`
	}
	out := call("flowerd.v1.FlowerdService/Train", `{"variant": "model2", "epochs": 1, "batch_size": 8}`)
	if err := json.Unmarshal([]byte(out), &train); err != nil || len(train.Jobs) != 1 {
		t.Fatalf("Train = %s (%v)", out, err)
	}
	watch := call("flowerd.v1.FlowerdService/WatchJob", fmt.Sprintf(`{"job_id": %q}`, train.Jobs[0].ID))
	if !strings.Contains(watch, "JOB_STATE_COMPLETED") || !strings.Contains(watch, `"valAccuracy"`) {
		t.Fatalf("WatchJob = %s", watch)
	}
	img, err := os.ReadFile(filepath.Join(dataset, "sunflower", firstFile(t, filepath.Join(dataset, "sunflower"))))
	if err != nil {
		t.Fatal(err)
	}
	out = call("flowerd.v1.FlowerdService/Classify",
		fmt.Sprintf(`{"images": [{"data": %q, "name": "sunflower.jpg"}], "top_k": 3}`, base64.StdEncoding.EncodeToString(img)))
	if !strings.Contains(out, `"variant": "model2"`) || !strings.Contains(out, `"version": "1"`) {
		t.Fatalf("Classify = %s", out)
	}
	if out := call("flowerd.v1.FlowerdService/Evaluate", `{"variant": "model2", "split": "SPLIT_TEST"}`); !strings.Contains(out, `"examples": 17`) {
		t.Fatalf("Evaluate = %s", out)
	}
	if out := call("flowerd.v1.FlowerdService/CompareVariants", ""); !strings.Contains(out, `"classifyP50Ms"`) || !strings.Contains(out, `"hasTest": true`) {
		t.Fatalf("CompareVariants = %s", out)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("server exited with %v after SIGTERM", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("server did not stop within a minute of SIGTERM")
	}
	if !strings.Contains(logs.String(), "stopped cleanly") {
		t.Errorf("server log does not say it stopped cleanly:\n%s", logs.String())
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func firstFile(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("read %s: %v", dir, err)
	}
	return entries[0].Name()
}
