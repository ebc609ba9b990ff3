#!/usr/bin/env bash
# Ingest of a large dropped file, before and after (issue 12): for each
# orquesta binary given, a fresh orchestrator (no workers) in a temp
# folder; the same N-task file (orquesta gen, fixed seed and prefix) is
# moved into task_queues/; prints seconds and tasks/s from the move to
# the file in processed/, the orchestrator's peak RSS (VmHWM) and RSS
# after, then the latency of /health, /stats, GET /tasks?status=queued,
# GET /tasks/{id} and GET /tasks?worker= with the N tasks stored
# (median of 20 calls each, curl's time_total).
#
#   bash bench/ingest.sh [N] BINARY...
#   bash bench/ingest.sh 1000000 /tmp/orquesta-before target/release/orquesta
set -euo pipefail
N=${1:-1000000}
shift
[ $# -gt 0 ] || { echo "usage: $0 [N] BINARY..." >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$1" gen --count "$N" --algorithm python --particles 100 --steps 100 --seed 1 \
  --prefix bench --output "$work/tasks.json" >/dev/null
echo "file: $N tasks, $(du -m "$work/tasks.json" | cut -f1) MB"

median() { sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]*1000}'; }
timed() { # URL → median ms of 20 calls
  for _ in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' "$1"; done | median
}

for bin in "$@"; do
  dir="$work/run"; rm -rf "$dir"; mkdir -p "$dir/task_queues"
  echo '{"workers": []}' > "$dir/config_workers.json"
  (cd "$dir" && TASK_FILE_MAX_BYTES=1073741824 exec "$bin" orchestrator --port 0 > log.txt 2>&1) &
  pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$dir/log.txt" 2>/dev/null && break; sleep 0.1; done
  url=$(grep -o 'http://127.0.0.1:[0-9]*' "$dir/log.txt" | head -1)
  opid=$pid
  cp "$work/tasks.json" "$dir/tasks.part"
  start=$(date +%s.%N)
  mv "$dir/tasks.part" "$dir/task_queues/tasks.json"
  until [ -n "$(ls "$dir/task_queues/processed" 2>/dev/null)" ]; do
    if [ -n "$(ls "$dir/task_queues/rejected" 2>/dev/null)" ]; then echo "rejected!"; break; fi
    sleep 0.02
  done
  end=$(date +%s.%N)
  sleep 1
  peak=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$opid/status")
  after=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$opid/status")
  secs=$(echo "$end - $start" | bc -l)
  printf '%s\n  ingest: %.2f s, %.0f tasks/s; RSS peak %s MB, after %s MB\n' \
    "$bin" "$secs" "$(echo "$N / $secs" | bc -l)" "$peak" "$after"
  printf '  /health %s ms, /stats %s ms, ?status=queued&limit=100 %s ms, /tasks/{id} %s ms, ?worker=w1 %s ms\n' \
    "$(timed "$url/health")" "$(timed "$url/stats")" "$(timed "$url/tasks?status=queued&limit=100")" \
    "$(timed "$url/tasks/bench_$(printf "%0${#N}d" $((N / 2)))")" "$(timed "$url/tasks?worker=w1&limit=100")"
  kill "$opid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
