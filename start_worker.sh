#!/usr/bin/env bash
# Starts a worker node: the seed's recommended way.
#
#   export WORKER_ID=worker1
#   export WORKER_PORT=5001
#   ./start_worker.sh                      # extra flags go to `orquesta worker`
#
# WORKER_ID and WORKER_PORT may also come from .env in this folder. The
# binary is ORQUESTA_BIN if set, otherwise this checkout's release build
# (built first if cargo is here), otherwise `orquesta` on the PATH.
set -euo pipefail
cd "$(dirname "$0")"

bin=${ORQUESTA_BIN:-}
if [ -z "$bin" ]; then
  if command -v cargo >/dev/null 2>&1 && [ -f Cargo.toml ]; then
    cargo build --release --quiet
    bin=target/release/orquesta
  elif command -v orquesta >/dev/null 2>&1; then
    bin=orquesta
  else
    echo "error: no orquesta binary: install Rust (cargo) or set ORQUESTA_BIN" >&2
    exit 1
  fi
fi
echo "starting worker ${WORKER_ID:-(id from .env or default)} on port ${WORKER_PORT:-(port from .env or 5001)}" >&2
exec "$bin" worker "$@"
