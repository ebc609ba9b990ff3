#!/usr/bin/env bash
# Orquesta beside Ray and Dask on issue 12's workloads (tiny tasks: tasks/s;
# ~1.6 ms tasks: overhead per task), 2 workers x 1 slot each, all measured
# in the same run; prints every ratio. Re-run it to compare again.
# Orquesta runs the user's path (`bench cluster`: INFO logs, the file
# renamed into task_queues/ and copied in, alternately; the wall time to the
# last result on disk). ORQUESTA_BIN=path measures that build instead of
# building this checkout.
#
#   bench/peers.sh                 # 3 runs of each case, medians compared
#   bench/peers.sh --runs 5 --json # more runs, and every figure as JSON
#
# Needs python3 (with venv) and network access to PyPI the first time:
# Ray, Dask (distributed) and numpy go into a virtual environment outside
# the repository, ${XDG_CACHE_HOME:-~/.cache}/orquesta-bench-venv
# (ORQUESTA_BENCH_VENV to put it elsewhere), made once and reused.
# Ray is pinned to 2.60 (what issue 12 measured) when PyPI has it, else the
# newest 2.x; RAY_SPEC overrides (e.g. RAY_SPEC='ray==2.59.0').
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${ORQUESTA_BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/orquesta-bench-venv}
python=${PYTHON:-python3}

if ! "$venv/bin/python" -c 'import ray, distributed, numpy' 2>/dev/null; then
    echo "making $venv (pip install ray, dask[distributed], numpy; a few minutes)" >&2
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    if [ -n "${RAY_SPEC:-}" ]; then
        "$venv/bin/pip" install --quiet "$RAY_SPEC"
    elif ! "$venv/bin/pip" install --quiet 'ray==2.60.*'; then
        echo "ray 2.60 is not on PyPI for this Python; taking the newest ray 2.x" >&2
        "$venv/bin/pip" install --quiet 'ray==2.*'
    fi
    "$venv/bin/pip" install --quiet 'dask[distributed]' numpy
fi

# ORQUESTA_BIN: measure that build instead of building this checkout
binary=${ORQUESTA_BIN:-}
if [ -z "$binary" ]; then
    echo "building the release binary" >&2
    (cd "$repo" && cargo build --release --quiet)
    binary=${CARGO_TARGET_DIR:-$repo/target}/release/orquesta
fi

exec "$venv/bin/python" "$repo/bench/peers.py" --orquesta "$binary" "$@"
