#!/usr/bin/env bash
# The hostile-neighbour soak of issue 11: for HOSTILE_SECONDS (default 120)
# a two-worker cluster runs a batch of HOSTILE_TASKS (default 2000) real
# tasks while other threads throw trickling bodies, bodies of 8–40 MB,
# malformed and half-written files, FIFO and /dev/zero symlink swaps, a
# symlink planted in rejected/ and poison tasks at it, and issue 22's
# attacks: requests a page of another origin or a rebinding name would send
# to both servers, second orchestrators on the folder, id takeovers, joins
# past MAX_WORKERS, lying workers, results over MAX_RESULT_BYTES, bodies of
# 5,000 and 140,000 bad tasks, unread /events streams. It prints
#   HOSTILE RESULT: … slow connections, … huge bodies, … page requests
#   refused, … lying workers (… caught, … attempts taken back), …;
#   batch of N tasks in S s: L lost, D duplicated; peak RSS …
# and fails unless the batch finished with 0 lost and 0 duplicated, every
# attack was refused or taken back, every process stayed up under 1 GiB
# (the orchestrator within 200 MiB of where it began), and nothing outside
# the project changed.
#
#   bench/hostile.sh [SECONDS] [TASKS]
set -euo pipefail
cd "$(dirname "$0")/.."
export HOSTILE_SECONDS=${1:-${HOSTILE_SECONDS:-120}}
export HOSTILE_TASKS=${2:-${HOSTILE_TASKS:-2000}}
cargo test --release --test integration hostile_neighbour_soak -- --ignored --nocapture 2>&1 \
  | grep -E -A3 "HOSTILE RESULT|panicked|test result"
