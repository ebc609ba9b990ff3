#!/usr/bin/env bash
# The import rule of DESIGN.md ("Shape"), checked with grep: the
# orchestrator side and the worker side never import each other (both may
# use api::protocol, api::error, model, sim, config, util); sim/ imports
# nothing of the crate but itself; model/, util/ and config/ import neither
# side nor cli; only cli/ and main.rs import cli. Paths are matched by
# module name after `crate::`/`super::` (`crate::worker`,
# `super::executor`, `crate::actors::task_queue::X`) and inside
# `use crate::{…}` groups, multi-line ones included. Comments are skipped.
# Prints `file:line: <side> imports <module>` for each violation; exits 1.
set -uo pipefail  # not -e: a grep that finds nothing is the good case
cd "$(dirname "$0")/.."

# an actor is one file or one folder: actors/NAME.rs or actors/NAME/
actor_files() { local n; for n in "$@"; do
  find "src/actors/$n.rs" "src/actors/$n" -name '*.rs' 2>/dev/null; done; }
orch_files() { find src/orchestrator.rs src/api/orchestrator.rs src/api/prometheus.rs src/metrics/orchestrator.rs \
    src/api/files.rs src/api/purge.rs src/api/dashboard src/store -name '*.rs' 2>/dev/null
  actor_files file_watcher task_queue load_balancer worker_proxy results_store config_watcher retention activity \
    progress_poller; }
worker_files() { find src/worker.rs src/api/worker.rs src/api/worker_prometheus.rs src/metrics/worker.rs \
    -name '*.rs' 2>/dev/null
  actor_files executor simulation registrar; }
shared_files() { find src/model src/util src/config -name '*.rs' 2>/dev/null; }
sim_files() { find src/sim -name '*.rs' 2>/dev/null; }
not_cli_files() { find src -name '*.rs' -not -path 'src/cli/*' -not -path src/main.rs; }

ORCH='orchestrator|store|file_watcher|task_queue|load_balancer|worker_proxy|results_store|config_watcher|activity|progress_poller|dashboard'
WORK='worker|executor|simulation|held_results|registrar'

# One line per statement for `use … ;` (so groups spanning lines are seen
# whole), each prefixed with the line it starts on; comment lines dropped.
statements() {
  awk '{ t = $0; sub(/^[ \t]+/, "", t) }
       t ~ /^\/\// { next }
       open { buf = buf " " t; if (t ~ /;/) { print start ": " buf; open = 0 }; next }
       t ~ /^(pub(\([a-z]+\))? )?use / && t !~ /;/ { open = 1; start = NR; buf = t; next }
       { print NR ": " t }' "$1"
}

# check SIDE MODULES FILE…: a module of MODULES (a regex of names) as a
# path segment after crate:: or super::, or as a member of a crate::{…} or
# super::{…} group (nested groups and `as` renames included)
check() {
  local side=$1 mods=$2 f n text; shift 2
  for f in "$@"; do
    statements "$f" | grep -P "\b($mods)\b" | while IFS= read -r line; do
      n=${line%%:*} text=${line#*: }
      {
        grep -oP "\b(crate|super)::(\w+::)*($mods)\b" <<<"$text"
        grep -oP "\b(crate|super)::(\w+::)*\{\K.*" <<<"$text" |
          grep -oP "(?<=[{,\s:])($mods)\b(?=\s*(::|[,};]|\s+as\b))"
      } | sort -u | sed "s|^|$f:$n: $side imports |"
    done
  done
}

report=$(
  check "orchestrator side" "$WORK" $(orch_files)
  check "worker side" "$ORCH" $(worker_files)
  check "shared code" "$ORCH|$WORK|cli" $(shared_files)
  check "everything but cli/" "cli" $(not_cli_files)
  # sim/: a crate:: path must be crate::sim::… (no crate::{…} groups), and
  # src/sim/mod.rs has no super:: (that would be the crate)
  for f in $(sim_files); do
    statements "$f" | grep -P '\bcrate::(?!sim::)' | while IFS= read -r line; do
      grep -oP '\bcrate::(?!sim::)[\w:]*(\{[^;]*)?' <<<"${line#*: }" | sed "s|^|$f:${line%%:*}: sim imports |"
    done
  done
  statements src/sim/mod.rs | grep -oP '^\d+(?=: .*\bsuper::)' | sed 's|.*|src/sim/mod.rs:&: sim imports super (the crate)|'
)
if [ -n "$report" ]; then
  echo "$report"
  echo "import rule (DESIGN.md, Shape): $(echo "$report" | wc -l) violation(s)" >&2
  exit 1
fi
echo "import rule: ok"
