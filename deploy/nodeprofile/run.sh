#!/usr/bin/env bash
# Per-node timings of one variant on GoMLX's pure-Go backend: where a
# training step or an inference batch spends its time, op by op and shape
# by shape (pprof names only the backend's functions, not the graph's
# nodes). Needs Go and the module cache of a `make build`; touches nothing in
# the working tree: it copies the committed tree and the backend's module
# to a temporary folder, patches the copy of the backend (node-timing.patch
# times each node of the sequential executor) and runs a few steps there.
#
#   deploy/nodeprofile/run.sh model1 train          # batch 32 training steps
#   deploy/nodeprofile/run.sh model2 infer16        # inference, batch 16 (or b1)
#   BLOCK_COPY=1 deploy/nodeprofile/run.sh model2 infer16
#
# BLOCK_COPY=1 also applies block-copy.patch: Transpose and Slice copying
# contiguous runs instead of one element at a time. That is a change to
# GoMLX, not to this project (the README's Benchmarks section gives its
# figures); it is here to measure what it would buy.
set -euo pipefail

variant=${1:-model1}
kind=${2:-train}
steps=${STEPS:-3}
case $kind in train | infer16 | b1) ;; *)
	echo "kind must be train, infer16 or b1, not $kind" >&2
	exit 2
	;;
esac

here=$(cd "$(dirname "$0")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export GOEXPERIMENT=simd
module=$(cd "$repo" && go list -m -f '{{.Dir}}' github.com/gomlx/compute)
cp -r "$module" "$work/compute"
chmod -R u+w "$work/compute"
patch -s -d "$work/compute" -p1 <"$here/node-timing.patch"
if [[ ${BLOCK_COPY:-} == 1 ]]; then
	patch -s -d "$work/compute" -p1 <"$here/block-copy.patch"
fi

git clone -q "$repo" "$work/flowerd"
cd "$work/flowerd"
go mod edit -replace "github.com/gomlx/compute=$work/compute"
cat >model/nodeprofile_test.go <<'EOF'
package model

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gomlx/compute/gobackend"
)

func BenchmarkNodeProfile(b *testing.B) {
	backend, err := NewBackend("go")
	if err != nil {
		b.Fatal(err)
	}
	v, err := LookupVariant(os.Getenv("NODEPROFILE_VARIANT"))
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(backend, v, Options{})
	if err != nil {
		b.Fatal(err)
	}
	kind := os.Getenv("NODEPROFILE_KIND")
	n := map[string]int{"train": 32, "infer16": 16, "b1": 1}[kind]
	steps, _ := strconv.Atoi(os.Getenv("NODEPROFILE_STEPS"))
	ctx := context.Background()
	step := func() {
		if kind != "train" {
			if _, err := m.Predict(ctx, randomImages(n), n); err != nil {
				b.Fatal(err)
			}
			return
		}
		if _, err := m.TrainStep(ctx, trainBatch(randomImages(n), n, NumClasses), DefaultLearningRate, DefaultMomentum); err != nil {
			b.Fatal(err)
		}
	}
	step() // compile and warm up
	gobackend.NodeTimingReset()
	start := time.Now()
	for range steps {
		step()
	}
	b.Logf("%s %s: %.1f ms per step (wall)", v.Name, kind, time.Since(start).Seconds()*1e3/float64(steps))
	gobackend.NodeTimingDump(os.Stdout, steps)
}
EOF
NODEPROFILE_VARIANT=$variant NODEPROFILE_KIND=$kind NODEPROFILE_STEPS=$steps \
	go test ./model/ -run '^$' -bench NodeProfile -benchtime 1x -timeout 30m
