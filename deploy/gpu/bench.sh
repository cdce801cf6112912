#!/usr/bin/env bash
# GPU benchmark, for a device machine with an NVIDIA card, CUDA and Python's
# jax-cuda13-pjrt (its xla_cuda_plugin.so is the PJRT CUDA plugin) and
# PyTorch: flowerd's benchmark (make bench's, every variant at full size) on
# the XLA backend, then the same network in PyTorch on the same card, so the
# two compare. Go is not needed there: build the test binary on the CPU
# machine and carry this folder:
#
#   GOEXPERIMENT=simd go test -c -o deploy/gpu/model.test ./model/
#   (on the GPU machine) deploy/gpu/bench.sh
#
# Without a plugin (or on a CPU machine) the Go part stops at once with the
# backend's own error, and nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")"
BENCHTIME=${BENCHTIME:-5x}

plugin=${PJRT_PLUGIN:-}
if [ -z "$plugin" ]; then
	site=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null || true)
	plugin=$(find $site /usr/local/lib -name xla_cuda_plugin.so 2>/dev/null | head -1 || true)
fi
if [ -z "$plugin" ]; then
	echo "no xla_cuda_plugin.so found: install jax-cuda13-pjrt or set PJRT_PLUGIN=/abs/path/xla_cuda_plugin.so" >&2
	plugin=/nonexistent/xla_cuda_plugin.so # let the backend say it too
fi
card=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no NVIDIA GPU visible")
echo "card: $card"
echo "plugin: $plugin"

echo "== flowerd (GoMLX, XLA backend)"
GOMLX_BACKEND="xla:$plugin" ./model.test -test.run '^$' -test.bench Variants -test.benchtime "$BENCHTIME" -test.timeout 20m

if python3 -c 'import torch' 2>/dev/null; then
	echo "== PyTorch, same network, same card"
	python3 alexnet_torch.py
else
	echo "PyTorch not installed: skipping the reference" >&2
fi
