#!/bin/sh
# Render every kustomization under deploy/k8s (base, overlays/cpu,
# overlays/gpu) and validate the objects, offline: against the OpenAPI v3
# schemas of the pinned Kubernetes release, by strict decoding into the
# Kubernetes API types, and against what flowerd needs. Needs only Go and the
# Go module proxy (the schemas come from the k8s.io/kubernetes module).
# See validate/doc.go.
#
#   deploy/k8s/validate.sh            # validate
#   deploy/k8s/validate.sh DIR        # and write the rendered YAML to DIR
set -eu
dir=$(cd "$(dirname "$0")" && pwd)
if [ $# -gt 0 ]; then
	out=$(mkdir -p "$1" && cd "$1" && pwd)
	cd "$dir/validate" && exec go test -count=1 ./... -args -render "$out"
fi
cd "$dir/validate" && exec go test -count=1 ./...
