#!/usr/bin/env bash
# The Windows check (called by .ci/run after the main tests): cross-builds
# orquesta.exe with MinGW and runs it under Wine, as the seed's Windows
# users would:
#   1. `orquesta.exe sim` prints the same physics as the Linux binary, bit for
#      bit (every field but the timings and the memory figures);
#   2. `orquesta.exe up` with the example config_workers.json, the example
#      task file dropped into task_queues/: all 10 results written once, each
#      the same physics as the Linux `orquesta sim` of that task; then
#      Ctrl-C stops `up` and its workers, and `up` killed outright takes its
#      workers with it (the Job Object).
# Tools come from Debian's packages (MinGW, Wine, jq) and rustup (the
# target). Under CI (CI=true) a missing MinGW or Wine is a failure; only a
# failed download of the Rust target skips, saying so. Ends with one line:
# "windows: PASS", "windows: FAIL: why" or "windows: SKIP: why".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export CARGO_TERM_COLOR=never

TARGET=x86_64-pc-windows-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
EXAMPLE_TASKS=tareas_manuales_ejemplo.json
started=$SECONDS

in_ci() { [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; }
say() { echo "windows: [$((SECONDS - started)) s] $*"; }
fail() {
  echo "windows: FAIL: $*"
  exit 1
}
skip() {
  echo "windows: SKIP: $*"
  exit 0
}
# a missing tool fails under CI and skips elsewhere
missing() {
  if in_ci; then fail "$1 (required under CI)"; else skip "$1 (outside CI: skipped)"; fi
}

# waits until "$@" succeeds, polling, for at most $1 seconds
wait_for() {
  local limit=$1
  shift
  local deadline=$((SECONDS + limit))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

# --- tools -------------------------------------------------------------------
find_wine() {
  local w
  for w in "$(command -v wine64 2>/dev/null)" /usr/lib/wine/wine64 /usr/lib64/wine/wine64 "$(command -v wine 2>/dev/null)"; do
    if [ -n "$w" ] && [ -x "$w" ]; then
      echo "$w"
      return 0
    fi
  done
  return 1
}
have_tools() {
  command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 && find_wine >/dev/null && command -v jq >/dev/null 2>&1
}
# shellcheck source=.ci/apt.sh
. .ci/apt.sh
if ! have_tools && command -v apt-get >/dev/null 2>&1; then
  say "installing MinGW, Wine and jq from Debian's packages"
  apt_install gcc-mingw-w64-x86-64 wine64 jq || say "apt-get could not install them"
fi
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || missing "MinGW (x86_64-w64-mingw32-gcc, Debian package gcc-mingw-w64-x86-64) is not installed"
WINE=$(find_wine) || missing "Wine (Debian package wine64) is not installed"
command -v jq >/dev/null 2>&1 || missing "jq (Debian package jq) is not installed"
WINESERVER=$(dirname "$WINE")/wineserver
[ -x "$WINESERVER" ] || WINESERVER=$(command -v wineserver || echo wineserver)

# the Rust standard library for the target: the only thing whose failed
# download may skip this step
if ! [ -d "$(rustc --print target-libdir --target "$TARGET" 2>/dev/null)" ]; then
  say "adding the Rust target $TARGET"
  if ! command -v rustup >/dev/null 2>&1 || ! timeout 600 rustup target add "$TARGET" >/dev/null 2>&1; then
    skip "the Rust target $TARGET could not be downloaded (rustup target add $TARGET); the Windows step did not run"
  fi
fi

# --- build -------------------------------------------------------------------
say "cargo build --release --target $TARGET"
cargo build --release --target "$TARGET" || fail "orquesta.exe does not build for $TARGET"
say "cargo build --release (the Linux binary to compare with)"
cargo build --release || fail "the Linux binary does not build"
EXE=$TARGET_DIR/$TARGET/release/orquesta.exe
LINUX=$TARGET_DIR/release/orquesta
[ -f "$EXE" ] || fail "no $EXE after the build"

work=$(mktemp -d)
up_pid=
cleanup() {
  [ -n "$up_pid" ] && kill -KILL "$up_pid" 2>/dev/null
  # ends every process of this Wine prefix (ours alone), then its server
  WINEPREFIX=$work/prefix "$WINESERVER" -k >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/bin"
cp "$EXE" "$work/bin/orquesta.exe"
# Debian's Wine 8.0 has no bcryptprimitives.dll (Rust's std imports
# ProcessPrng from it): a stand-in beside the .exe, for this test only
x86_64-w64-mingw32-gcc -shared -O2 -Wall -Werror -o "$work/bin/bcryptprimitives.dll" \
  .ci/windows/bcryptprimitives.c -ladvapi32 || fail "the ProcessPrng stand-in DLL does not build"

export WINEPREFIX=$work/prefix WINEDEBUG=-all
# orquesta.exe under Wine, its \r\n (if any) made \n
wexe() { timeout 300 "$WINE" "$work/bin/orquesta.exe" "$@" | tr -d '\r'; }

say "Wine: $("$WINE" --version 2>/dev/null); starting orquesta.exe (the first start makes the Wine prefix)"
version=$(wexe --version 2>/dev/null) || fail "orquesta.exe --version does not run under Wine"
[ "$version" = "$("$LINUX" --version)" ] || fail "orquesta.exe --version says '$version', the Linux binary '$("$LINUX" --version)'"
say "$version runs under Wine"

# --- 1. the same physics, bit for bit ----------------------------------------
# the fields that are timings or memory figures: all others must be equal
physics() {
  sed -E 's/"execution_time":[^,]*,//; s/"memory_used":"[^"]*",//; s/"memory_bytes":[0-9]+,//; s/"particle_steps_per_second":[^,]*,//'
}
compared=0
while read -r args; do
  [ -n "$args" ] || continue
  # shellcheck disable=SC2086 # the arguments are split on purpose
  linux=$("$LINUX" sim $args --compact) || fail "orquesta sim $args fails on Linux"
  # shellcheck disable=SC2086
  windows=$(wexe sim $args --compact) || fail "orquesta.exe sim $args fails under Wine"
  if [ "$(physics <<<"$linux")" != "$(physics <<<"$windows")" ]; then
    echo "linux:   $linux"
    echo "windows: $windows"
    fail "orquesta sim $args: the physics differs between Linux and Windows"
  fi
  compared=$((compared + 1))
done <<'CASES'
-n 100 -s 500 --seed 123 -a python -t 1
-n 200 -s 800 --seed 456 -a cython -t 2
-n 500 -s 1000 --seed 1011 -a optimized -t 1
-n 500 -s 1000 --seed 1011 -a optimized -t 4
-n 300 -s 200 --seed 18446744073709551615 -a reference --density 0.8 --temperature 1.5 --dt 0.002 --cutoff 3.0 -t 1
-n 2000 -s 50 --seed 7 -a optimized -t 2
CASES
say "sim: $compared runs print the same physics on Linux and Windows"

# --- 2. the seed's workflow: up, drop the example file, 10 results -----------
# a free TCP port of 127.0.0.1 (nothing answers on it now)
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || {
      echo "$p"
      return
    }
  done
}
cluster=$work/cluster
mkdir -p "$cluster/task_queues"
# the example workers file as it is, but on free ports (5001 and 5002 may be
# taken on a shared machine; the orchestrator takes any free port)
port1=$(free_port)
port2=$(free_port)
while [ "$port2" = "$port1" ]; do port2=$(free_port); done
sed -e "s/\"port\": 5001/\"port\": $port1/" -e "s/\"port\": 5002/\"port\": $port2/" config_workers.json \
  >"$cluster/config_workers.json"
grep -q "\"port\": $port2" "$cluster/config_workers.json" || fail "config_workers.json no longer names ports 5001 and 5002"

(cd "$cluster" && ORCHESTRATOR_PORT=0 exec "$WINE" "$work/bin/orquesta.exe" up >up.out 2>up.err) &
up_pid=$!
up_alive() { kill -0 "$up_pid" 2>/dev/null; }
show_up() {
  echo "--- up's terminal:"
  tr -d '\r' <"$cluster/up.out" | tail -n 30
  tr -d '\r' <"$cluster/up.err" | tail -n 30
  echo "--- logs/elastic_orchestrator.log:"
  tail -n 30 "$cluster/logs/elastic_orchestrator.log" 2>/dev/null
}
both_workers_up() {
  up_alive || return 0 # stop waiting: it ended
  [ "$(grep -c '^worker worker[12] up at' "$cluster/up.out" 2>/dev/null)" = 2 ]
}
if ! wait_for 180 both_workers_up || ! up_alive; then
  show_up
  fail "orquesta.exe up did not start its two workers within 180 s"
fi
say "up: the orchestrator and workers worker1, worker2 are up"

# dropped as a user's copy would land: written beside, renamed in
cp "$EXAMPLE_TASKS" "$cluster/task_queues/.$EXAMPLE_TASKS.tmp"
mv "$cluster/task_queues/.$EXAMPLE_TASKS.tmp" "$cluster/task_queues/$EXAMPLE_TASKS"

expected=$(jq -r '.tasks[].task_id' "$EXAMPLE_TASKS" | sort)
[ "$(wc -l <<<"$expected")" = 10 ] || fail "$EXAMPLE_TASKS no longer holds 10 tasks"
# the task ids of every result written so far, one line each, sorted
result_ids() { cat "$cluster"/results/task_results_*.json 2>/dev/null | jq -r '.[].task_id' 2>/dev/null | sort; }
all_results() {
  up_alive || return 0
  [ "$(result_ids | sort -u)" = "$expected" ]
}
if ! wait_for 300 all_results || ! up_alive; then
  show_up
  fail "the 10 results of $EXAMPLE_TASKS were not all written within 300 s (have: $(result_ids | tr '\n' ' '))"
fi
# written once: no id twice, in any results file
[ "$(result_ids)" = "$expected" ] || fail "a result was written twice: $(result_ids | uniq -d | tr '\n' ' ')"
ls "$cluster/task_queues/processed/"*"_$EXAMPLE_TASKS" >/dev/null 2>&1 ||
  fail "$EXAMPLE_TASKS was not moved to task_queues/processed/"
[ -z "$(ls -A "$cluster/task_queues/rejected" 2>/dev/null)" ] || fail "something was rejected: $(ls "$cluster/task_queues/rejected")"
[ ! -e "$cluster/task_queues/$EXAMPLE_TASKS" ] || fail "$EXAMPLE_TASKS is still in task_queues/"
say "up: 10 results written once, the file moved to processed/"

# each result's physics is what Linux computes for that task: the fields a
# result shares with `sim`'s output (not when or where it ran), less timings
strip_timings='{task_id, algorithm, parameters, result} | del(.execution_time, .result.metrics.memory_used,
  .result.metrics.memory_bytes, .result.metrics.particle_steps_per_second, .result.metrics.threads)'
while read -r id n s seed alg; do
  linux=$("$LINUX" sim -n "$n" -s "$s" --seed "$seed" -a "$alg" --task-id "$id" --compact | jq -cS "$strip_timings")
  windows=$(cat "$cluster"/results/task_results_*.json | jq -cS ".[] | select(.task_id == \"$id\") | $strip_timings")
  if [ "$linux" != "$windows" ]; then
    echo "linux:   $linux"
    echo "windows: $windows"
    fail "task $id: the result written under Windows differs from the Linux sim"
  fi
done < <(jq -r '.tasks[] | [.task_id, .parameters.num_particles, .parameters.num_steps, .parameters.seed, .algorithm] | @tsv' "$EXAMPLE_TASKS")
say "up: every result has the physics of the Linux sim of its task"

# Ctrl-C (Wine turns SIGINT into a console Ctrl-C): up stops its workers and
# ends. (Wine 8 cannot send Ctrl-Break to a process group, so here up takes
# its fallback and ends the workers at once, saying so; Windows drains them.)
kill -INT "$up_pid"
up_gone() { ! up_alive; }
wait_for 120 up_gone || {
  show_up
  fail "orquesta.exe up did not stop within 120 s of Ctrl-C"
}
wait "$up_pid"
status=$?
up_pid=
port_closed() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$port1" "$port2"; do
  wait_for 30 port_closed "$port" || fail "a worker still answers on port $port after up stopped"
done
say "up: Ctrl-C stopped it (exit status $status) and its workers"

# killed outright (taskkill /F): the Job Object ends its workers with it
(cd "$cluster" && ORCHESTRATOR_PORT=0 exec "$WINE" "$work/bin/orquesta.exe" up >up.out 2>up.err) &
up_pid=$!
if ! wait_for 180 both_workers_up || ! up_alive; then
  show_up
  fail "orquesta.exe up did not start its two workers again within 180 s"
fi
kill -KILL "$up_pid"
wait "$up_pid" 2>/dev/null
up_pid=
for port in "$port1" "$port2"; do
  wait_for 30 port_closed "$port" || fail "a worker outlived up killed outright (port $port still answers): the Job Object did not end it"
done
say "up: killed outright, its workers ended with it (Job Object)"

echo "windows: PASS (orquesta.exe built for $TARGET, run under $("$WINE" --version 2>/dev/null) in $((SECONDS - started)) s)"
