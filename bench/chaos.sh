#!/usr/bin/env bash
# A longer, heavier chaos run than the one in `cargo test`: CHAOS_TASKS small
# tasks (default 2000) on three configured workers that are SIGKILLed and
# restarted over and over, one frozen with SIGSTOP and resumed, and the
# orchestrator SIGKILLed twice, right after a membership change (it comes
# back on the same port). Every round also changes the membership, chosen
# by a seeded SplitMix: a worker joins with --join (from its own folder),
# a configured worker is drained and resumed, a joined worker is removed
# (DELETE /workers/{id}, then SIGTERM), a joined worker is SIGKILLed and
# joins again at a new port, or config_workers.json is edited (a joined
# worker named in it, or a capacity changed) and restored two rounds
# later. The first six changes are two joins and then the other four
# kinds, so every run makes each.
#
# The test prints the seed (CHAOS_SEED=… replays the same membership
# changes) and each change; this script keeps the seed and the line:
#   CHAOS RESULT: F faults survived (K worker SIGKILLs, 1 SIGSTOP, 2 orchestrator
#   SIGKILLs, M membership changes: …); L lost, D duplicated out of N tasks
# It fails unless every task is recorded exactly once in results/, /stats
# counts N completed and none failed, and every joined worker still running
# is listed up as joined at the end.
#
#   bench/chaos.sh [TASKS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CHAOS_TASKS=${1:-${CHAOS_TASKS:-2000}}
cargo test --release --test integration chaos_long -- --ignored --nocapture 2>&1 \
  | grep -E "chaos seed|CHAOS RESULT|panicked|test result" 
