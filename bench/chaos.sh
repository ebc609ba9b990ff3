#!/usr/bin/env bash
# A longer, heavier chaos run than the one in `cargo test`: CHAOS_TASKS small
# tasks (default 2000) on three workers that are SIGKILLed and restarted
# over and over, one frozen with SIGSTOP and resumed, and the orchestrator
# SIGKILLed twice. Prints how many faults it survived and how many tasks
# were lost or recorded twice out of N (both must be 0).
#
#   bench/chaos.sh [TASKS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CHAOS_TASKS=${1:-${CHAOS_TASKS:-2000}}
cargo test --release --test integration chaos_long -- --ignored --nocapture 2>&1 \
  | grep -E "CHAOS RESULT|panicked|test result" 
