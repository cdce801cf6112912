#!/usr/bin/env bash
# Classify under concurrency, measured with ghz: 1, 4 and 16 concurrent
# clients against one variant, with dynamic batching on (-batch-max 16) and
# off (-batch-max 1), same binary, same machine, one after the other. Prints
# throughput and p50/p99 latency per run. Run it with `make bench-load`.
set -euo pipefail
cd "$(dirname "$0")/.."
GHZ=${GHZ:-.tools/bin/ghz}
BIN=${BIN:-bin/flowerd}
DATA=${FLOWERD_DATA:-../shared/data/flowers17}
VARIANT=${VARIANT:-model2}
PER_CLIENT=${PER_CLIENT:-20}
ADDR=${ADDR:-127.0.0.1:50091}

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
# The first sunflower (a glob sorts): `find | sort | head -1` could end with
# SIGPIPE in sort, which pipefail turns into the script's exit (141).
imgs=("$DATA"/sunflower/*.jpg)
img=${imgs[0]}
[[ -f $img ]] || { echo "no sunflower JPEGs under $DATA (set FLOWERD_DATA)" >&2; exit 1; }
printf '{"variant":"%s","top_k":5,"images":[{"name":"sunflower.jpg","data":"%s"}]}' "$VARIANT" "$(base64 -w0 "$img")" >"$work/req.json"

echo "variant $VARIANT, $PER_CLIENT calls per client, one image per call, backend ${GOMLX_BACKEND:-go}"
printf '%-9s %-8s %10s %9s %9s\n' batching clients "calls/s" "p50 ms" "p99 ms"
for batch in 16 1; do
	FLOWERD_ADDR=$ADDR FLOWERD_DATA_DIR="$work/store-$batch" FLOWERD_VARIANTS=$VARIANT FLOWERD_BATCH_MAX=$batch \
		FLOWERD_LOG_LEVEL=warn "$BIN" &
	server=$!
	for _ in $(seq 600); do
		"$BIN" -health-probe -addr "$ADDR" 2>/dev/null && break
		sleep 0.2
	done
	"$GHZ" --insecure --call flowerd.v1.FlowerdService/Classify -D "$work/req.json" -c 2 -n 6 "$ADDR" >/dev/null # warm up
	for c in 1 4 16; do
		"$GHZ" --insecure --call flowerd.v1.FlowerdService/Classify -D "$work/req.json" -c "$c" -n $((c * PER_CLIENT)) \
			"$ADDR" >"$work/out.txt"
		awk -v mode="$([ "$batch" = 1 ] && echo off || echo on)" -v c="$c" '
			function ms(v, unit) { return unit == "s" ? v * 1000 : (unit == "ms" ? v : v / 1000) }
			/Requests\/sec:/ { rps = $2 }
			/ 50 % in / { p50 = ms($4, $5) }
			/ 99 % in / { p99 = ms($4, $5) }
			/^  \[/ && $1 != "[OK]" { errs += $2 }
			END { printf "%-9s %-8s %10.1f %9.1f %9.1f%s\n", mode, c, rps, p50, p99, errs ? "  (" errs " errors)" : "" }
		' "$work/out.txt"
	done
	kill -TERM "$server"
	wait "$server" || true
done
