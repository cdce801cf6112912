package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	flowerdpb "github.com/flowerd/flowerd/pb/flowerd/v1"
)

func testApp(env map[string]string) (*app, *bytes.Buffer) {
	var stderr bytes.Buffer
	return &app{stdout: io.Discard, stderr: &stderr, getenv: func(k string) string { return env[k] }}, &stderr
}

func TestParse(t *testing.T) {
	each, end := flowerdpb.PublishPolicy_PUBLISH_POLICY_EACH_EPOCH, flowerdpb.PublishPolicy_PUBLISH_POLICY_AT_END
	tests := []struct {
		args    []string
		env     map[string]string
		globals globals
		want    runner
	}{
		{[]string{"models"}, nil, globals{addr: "localhost:50051"}, modelsCmd{}},
		{[]string{"models"}, map[string]string{"FLOWERD_ADDR": "flowerd:9000"}, globals{addr: "flowerd:9000"}, modelsCmd{}},
		{[]string{"-addr", "a:1", "-json", "compare"}, map[string]string{"FLOWERD_ADDR": "flowerd:9000"},
			globals{addr: "a:1", json: true}, compareCmd{}},
		// Global flags after the command.
		{[]string{"jobs", "-variant", "model3", "-timeout", "5s", "-addr", "b:2"}, nil,
			globals{addr: "b:2", timeout: 5 * time.Second}, &jobsCmd{variant: "model3"}},
		{[]string{"classify", "a.jpg", "b.png"}, nil, globals{addr: "localhost:50051"},
			&classifyCmd{variant: "all", k: 3, files: []string{"a.jpg", "b.png"}}},
		{[]string{"classify", "-variant", "model2", "-k", "5", "a.jpg"}, nil, globals{addr: "localhost:50051"},
			&classifyCmd{variant: "model2", k: 5, files: []string{"a.jpg"}}},
		{[]string{"train"}, nil, globals{addr: "localhost:50051"},
			&trainCmd{req: &flowerdpb.TrainRequest{Variant: "all", Epochs: 1, Publish: each}}},
		{[]string{"train", "-variant", "model4", "-epochs", "30", "-batch-size", "32", "-lr", "0.01", "-momentum", "0.95",
			"-seed", "7", "-from-scratch", "-feedback", "-augment", "-publish", "end", "-dataset", "/data", "-detach"}, nil,
			globals{addr: "localhost:50051"},
			&trainCmd{detach: true, req: &flowerdpb.TrainRequest{Variant: "model4", Epochs: 30, BatchSize: 32, LearningRate: 0.01,
				Momentum: 0.95, Seed: 7, FromScratch: true, UseFeedback: true, Augment: true, Publish: end, DatasetDir: "/data"}}},
		{[]string{"cancel", "j1", "j2"}, nil, globals{addr: "localhost:50051"}, &cancelCmd{ids: []string{"j1", "j2"}}},
		{[]string{"evaluate", "-variant", "model1", "-split", "test", "-version", "4", "-per-class"}, nil, globals{addr: "localhost:50051"},
			&evaluateCmd{perClass: true, req: &flowerdpb.EvaluateRequest{Variant: "model1", Split: flowerdpb.Split_SPLIT_TEST, Version: 4}}},
		{[]string{"evaluate"}, nil, globals{addr: "localhost:50051"},
			&evaluateCmd{req: &flowerdpb.EvaluateRequest{Variant: "all", Split: flowerdpb.Split_SPLIT_VAL}}},
		{[]string{"history", "-variant", "model2", "-csv", "-runs", "3"}, nil, globals{addr: "localhost:50051"},
			&historyCmd{csv: true, req: &flowerdpb.GetHistoryRequest{Variant: "model2", MaxRuns: 3}}},
		{[]string{"history", "-variant", "model2", "-plot", "f.png"}, nil, globals{addr: "localhost:50051"},
			&historyCmd{plot: "f.png", req: &flowerdpb.GetHistoryRequest{Variant: "model2"}}},
		{[]string{"history", "-plot", "f.png"}, nil, globals{addr: "localhost:50051"},
			&historyCmd{plot: "f.png", req: &flowerdpb.GetHistoryRequest{}}},
		{[]string{"history", "-variant", "all", "-plot", "f.png", "-json"}, nil, globals{addr: "localhost:50051", json: true},
			&historyCmd{plot: "f.png", req: &flowerdpb.GetHistoryRequest{}}},
		{[]string{"pin", "-variant", "model2", "-version", "3"}, nil, globals{addr: "localhost:50051"},
			&pinCmd{variant: "model2", version: 3}},
		{[]string{"pin", "-variant", "model2", "-unpin"}, nil, globals{addr: "localhost:50051"},
			&pinCmd{variant: "model2", unpin: true}},
		// serve-version is pin's old name.
		{[]string{"serve-version", "-variant", "model2", "-unpin"}, nil, globals{addr: "localhost:50051"},
			&pinCmd{variant: "model2", unpin: true}},
		{[]string{"feedback", "-label", "tulip", "t.jpg"}, nil, globals{addr: "localhost:50051"},
			&feedbackCmd{label: "tulip", file: "t.jpg"}},
	}
	for _, tc := range tests {
		a, stderr := testApp(tc.env)
		g, r, err := a.parse(tc.args)
		if err != nil {
			t.Errorf("parse(%q) = %v; want %#v (stderr %q)", tc.args, err, tc.want, stderr)
			continue
		}
		if g != tc.globals {
			t.Errorf("parse(%q) globals = %+v; want %+v", tc.args, g, tc.globals)
		}
		if !runnersEqual(r, tc.want) {
			t.Errorf("parse(%q) = %s; want %s", tc.args, describe(r), describe(tc.want))
		}
	}
}

// runnersEqual compares runners, their proto requests with proto.Equal.
func runnersEqual(a, b runner) bool {
	switch x := a.(type) {
	case *trainCmd:
		y, ok := b.(*trainCmd)
		return ok && x.detach == y.detach && proto.Equal(x.req, y.req)
	case *evaluateCmd:
		y, ok := b.(*evaluateCmd)
		return ok && x.perClass == y.perClass && proto.Equal(x.req, y.req)
	case *historyCmd:
		y, ok := b.(*historyCmd)
		return ok && x.csv == y.csv && x.plot == y.plot && proto.Equal(x.req, y.req)
	}
	return reflect.DeepEqual(a, b)
}

func describe(r runner) string {
	switch x := r.(type) {
	case *trainCmd:
		return fmt.Sprintf("train{detach %v, %v}", x.detach, x.req)
	case *evaluateCmd:
		return fmt.Sprintf("evaluate{per-class %v, %v}", x.perClass, x.req)
	case *historyCmd:
		return fmt.Sprintf("history{csv %v, plot %q, %v}", x.csv, x.plot, x.req)
	}
	return fmt.Sprintf("%#v", r)
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the error, or "" for a flag package error
	}{
		{nil, "no command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"-nope", "models"}, ""},
		{[]string{"models", "extra"}, "takes no arguments"},
		{[]string{"classify"}, "at least one"},
		{[]string{"classify", "-k", "0", "a.jpg"}, "-k 0"},
		{[]string{"classify", "-k", "18", "a.jpg"}, "-k 18"},
		{[]string{"train", "-epochs", "0"}, "-epochs 0"},
		{[]string{"train", "-publish", "sometimes"}, `-publish "sometimes"`},
		{[]string{"train", "-batch-size", "-1"}, "-batch-size -1"},
		{[]string{"train", "-epochs", "many"}, ""},
		{[]string{"cancel"}, "job IDs"},
		{[]string{"evaluate", "-split", "train"}, `-split "train"`},
		{[]string{"evaluate", "-version", "-1"}, "-version -1"},
		{[]string{"history"}, "-variant"},
		{[]string{"history", "-variant", "all"}, "-variant"},
		{[]string{"history", "-plot", "f.png", "-run", "r1"}, "need one variant"},
		{[]string{"history", "-variant", "all", "-plot", "f.png", "-runs", "2"}, "need one variant"},
		{[]string{"pin", "-variant", "model2"}, "pin: give either -version N"},
		{[]string{"pin", "-variant", "model2", "-version", "2", "-unpin"}, "either -version N"},
		{[]string{"pin", "-variant", "model2", "-version", "-2"}, "-version -2"},
		{[]string{"pin", "-version", "2"}, "-variant"},
		{[]string{"pin", "-variant", "all", "-unpin"}, "-variant"},
		{[]string{"serve-version", "-variant", "model2"}, "either -version N"},
		{[]string{"feedback", "t.jpg"}, "-label"},
		{[]string{"feedback", "-label", "tulip"}, "one JPEG or PNG"},
		{[]string{"feedback", "-label", "tulip", "a.jpg", "b.jpg"}, "one JPEG or PNG"},
		{[]string{"-timeout", "-1s", "models"}, "-timeout"},
	}
	for _, tc := range tests {
		a, _ := testApp(nil)
		_, r, err := a.parse(tc.args)
		if err == nil {
			t.Errorf("parse(%q) = %s; want an error", tc.args, describe(r))
			continue
		}
		var ue usageError
		if tc.want == "" {
			if errors.As(err, &ue) {
				t.Errorf("parse(%q) = usage error %v; want the flag package's", tc.args, err)
			}
		} else if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parse(%q) = %v; want a usage error containing %q", tc.args, err, tc.want)
		}
		a, stderr := testApp(nil)
		if code := a.main(t.Context(), tc.args); code != 2 {
			t.Errorf("main(%q) = %d; want 2 (stderr %q)", tc.args, code, stderr)
		}
	}
	a, stderr := testApp(nil)
	if _, _, err := a.parse([]string{"train", "-h"}); !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "-publish") {
		t.Errorf("parse(train -h) = %v, %q; want ErrHelp and the flags", err, stderr)
	}
	if code := a.main(t.Context(), []string{"-h"}); code != 0 {
		t.Errorf("main(-h) = %d; want 0", code)
	}
}

func TestFormatError(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("classify: %w", status.Error(codes.NotFound, `not found: variant "model9"`)), `classify: NotFound: not found: variant "model9"`},
		{fmt.Errorf("dial x: %w", status.Error(codes.Unavailable, "not connected")), "dial x: Unavailable: not connected"},
		{status.Error(codes.Internal, "boom"), "Internal: boom"},
		{errors.New("classify: open a.jpg: no such file or directory"), "classify: open a.jpg: no such file or directory"},
	}
	for _, tc := range tests {
		if got := formatError(tc.err); got != tc.want {
			t.Errorf("formatError(%v) = %q; want %q", tc.err, got, tc.want)
		}
	}
}
