package main

import (
	"bytes"
	"encoding/csv"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/flowerd/flowerd/clients"
	"github.com/flowerd/flowerd/model/dataset/datasettest"
	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
	"github.com/flowerd/flowerd/service/servicetest"
)

// startServer runs the real service over bufconn (model2 only, 67x67
// pixels, one image per class per split) and returns the client options
// that reach it.
func startServer(t *testing.T) clients.Options {
	t.Helper()
	if raceEnabled {
		t.Skip("runs GoMLX graphs in-process, too slow under -race")
	}
	srv := servicetest.Start(t, servicetest.SmallOptions())
	return clients.Options{
		// Unavailable while model2 loads: the client's retries ride it out.
		Retry:       clients.Retry{MaxAttempts: 100, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
		DialOptions: []grpc.DialOption{srv.DialOption()},
	}
}

// TestCommands runs flowerctl's commands against the real service and
// checks what they print.
func TestCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("loads and trains a (small) network: skipped under -short")
	}
	opts := startServer(t)
	dir := filepath.Join(datasettest.Dir(t), "sunflower")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, entries[0].Name())

	run := func(t *testing.T, tty bool, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		var out, errb bytes.Buffer
		a := &app{stdout: &out, stderr: &errb, tty: tty, client: opts, getenv: func(string) string { return "" }}
		code = a.main(t.Context(), append([]string{"-addr", servicetest.Target}, args...))
		return out.String(), errb.String(), code
	}
	ok := func(t *testing.T, args ...string) string {
		t.Helper()
		out, errs, code := run(t, false, args...)
		if code != 0 {
			t.Fatalf("flowerctl %q exited %d: %s", args, code, errs)
		}
		return out
	}
	contains := func(t *testing.T, what, out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s printed\n%s\nwant it to contain %q", what, out, w)
			}
		}
	}

	out := ok(t, "classify", "-k", "2", img, img)
	if n := len(regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(img)+` +model2 +0 +[0-9.]+ms +\S+ 0\.\d{3}, \S+ 0\.\d{3}$`).FindAllString(out, -1)); n != 2 {
		t.Errorf("classify printed\n%s\nwant two rows of %s by model2 version 0", out, img)
	}
	contains(t, "models", ok(t, "models"), "model2", "READY", "backend: go")

	_, errs, code := run(t, false, "classify", "-variant", "model9", img)
	if code != 1 || !strings.Contains(errs, "flowerctl: classify: NotFound: ") {
		t.Errorf("classify -variant model9 exited %d with %q; want 1 and the NotFound code and message", code, errs)
	}
	_, errs, code = run(t, false, "feedback", "-label", "cactus", img)
	if code != 1 || !strings.Contains(errs, "InvalidArgument") {
		t.Errorf("feedback -label cactus exited %d with %q; want 1 and InvalidArgument", code, errs)
	}
	contains(t, "feedback", ok(t, "feedback", "-label", "sunflower", img), "stored", "1 stored")

	// Not a terminal: a line per epoch and one at the end.
	out = ok(t, "train", "-variant", "model2", "-epochs", "2", "-batch-size", "8", "-seed", "1", "-feedback")
	contains(t, "train", out, "started job ", "model2  RUNNING   epoch 1/2", "model2  RUNNING   epoch 2/2", "model2  COMPLETED epoch 2/2")
	if strings.Contains(out, "\r") {
		t.Errorf("train to a pipe printed carriage returns:\n%q", out)
	}
	id := regexp.MustCompile(`started job (\S+):`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("train printed no job id:\n%s", out)
	}

	// A terminal: the line is redrawn in place.
	out, errs, code = run(t, true, "train", "-variant", "model2", "-epochs", "1", "-batch-size", "8", "-publish", "end")
	if code != 0 || !strings.Contains(out, "\r") || !strings.Contains(out, "[####################] epoch 1/1") {
		t.Errorf("train on a terminal exited %d (%s) and printed %q; want \\r redraws and a full bar", code, errs, out)
	}

	contains(t, "jobs", ok(t, "jobs"), id[1], "COMPLETED  2/2", "COMPLETED  1/1")
	_, errs, code = run(t, false, "cancel", id[1])
	if code != 1 || !strings.Contains(errs, "FailedPrecondition") {
		t.Errorf("cancel of an ended job exited %d with %q; want 1 and FailedPrecondition", code, errs)
	}

	out = ok(t, "history", "-variant", "model2")
	contains(t, "history", out, "completed", "EPOCH  LOSS")
	if n := strings.Count(out, "\nrun "); n != 1 || strings.Count(out, "run ") != 2 {
		t.Errorf("history printed\n%s\nwant two runs", out)
	}
	recs, err := csv.NewReader(strings.NewReader(ok(t, "history", "-variant", "model2", "-csv"))).ReadAll()
	if err != nil || len(recs) != 4 || recs[1][0] != "model2" {
		t.Errorf("history -csv = %q, %v; want a header and 3 epochs of model2", recs, err)
	}

	// Figure 2: the runs of one variant, then the newest run of every variant.
	for _, args := range [][]string{{"-variant", "model2"}, {}, {"-variant", "all", "-json"}} {
		png := filepath.Join(t.TempDir(), "figure2.png")
		args = append([]string{"history", "-plot", png}, args...)
		out := ok(t, args...)
		if !slices.Contains(args, "-json") {
			contains(t, strings.Join(args, " "), out, "wrote Figure 2, ", "1600x1200 pixels", "EPOCH  LOSS")
		}
		data, err := os.ReadFile(png)
		if err != nil {
			t.Fatalf("flowerctl %q: %v", args, err)
		}
		checkFigure(t, strings.Join(args, " "), data)
	}
	contains(t, "history -plot -variant model2", ok(t, "history", "-plot", filepath.Join(t.TempDir(), "f.png"), "-variant", "model2"), "2 lines")
	contains(t, "history -plot", ok(t, "history", "-plot", filepath.Join(t.TempDir(), "f.png")), "1 lines")
	_, errs, code = run(t, false, "history", "-plot", filepath.Join(t.TempDir(), "no", "such", "dir.png"))
	if code != 1 || !strings.Contains(errs, "flowerctl: history: ") {
		t.Errorf("history -plot into a missing folder exited %d with %q; want 1 and the error", code, errs)
	}

	contains(t, "evaluate", ok(t, "evaluate", "-variant", "model2", "-split", "test", "-per-class"), "model2   3        test   17 ", "CLASS", "sunflower")
	contains(t, "compare", ok(t, "compare"), "model2   3,3,3    dropout")

	contains(t, "pin", ok(t, "pin", "-variant", "model2", "-version", "1"), " 1       yes")
	contains(t, "pin -unpin", ok(t, "pin", "-variant", "model2", "-unpin"), " 3       no")
	contains(t, "serve-version", ok(t, "serve-version", "-variant", "model2", "-version", "2"), " 2       yes")
	_, errs, code = run(t, false, "pin", "-variant", "model2", "-version", "99")
	if code != 1 || !strings.Contains(errs, "flowerctl: ") {
		t.Errorf("pin -version 99 exited %d with %q; want 1 and the server's error", code, errs)
	}
	contains(t, "pin -unpin", ok(t, "pin", "-variant", "model2", "-unpin"), " 3       no")

	var resp flowerdpb.ListModelsResponse
	if err := protojson.Unmarshal([]byte(ok(t, "-json", "models")), &resp); err != nil || resp.GetModels()[0].GetServedVersion() != 3 {
		t.Errorf("-json models = %v, %v; want protojson of model2 serving version 3", &resp, err)
	}
}
