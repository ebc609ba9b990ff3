#!/usr/bin/env bash
# Runs schemathesis (an independent client, from PyPI) against a live
# orchestrator started with a token on port 0 in a temporary folder: every
# answer must match the OpenAPI document it serves at GET /openapi.json
# (statuses, content types, bodies), input the document calls invalid must
# be refused with a 4xx, none may be a 5xx, and a route must refuse a
# request without the token. The orchestrator must still be up at the end.
# Under CI (CI set) a missing schemathesis is a failure; elsewhere the run
# is skipped, saying so.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${CARGO_TARGET_DIR:-target}/release/orquesta"
if [ ! -x "$bin" ]; then
  echo "error: $bin is missing: run cargo build --release first" >&2
  exit 1
fi
bin="$(cd "$(dirname "$bin")" && pwd)/orquesta"
if ! command -v schemathesis >/dev/null 2>&1; then
  if [ -n "${CI:-}" ]; then
    echo "error: schemathesis is not installed (pip install schemathesis)" >&2
    exit 1
  fi
  echo "SKIP: schemathesis is not installed (pip install schemathesis); outside CI the API check is skipped" >&2
  exit 0
fi

dir=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

token="schemathesis-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
# no workers: the orchestrator runs alone (joins are what schemathesis sends)
echo '{"workers": []}' >"$dir/config_workers.json"
(cd "$dir" && ORQUESTA_TOKEN="$token" RUST_LOG=warn exec "$bin" orchestrator --port 0) >"$dir/orchestrator.log" 2>&1 &
pid=$!

url=""
for _ in $(seq 1 300); do
  url=$(sed -n 's/.*listening on \(https\?:\/\/[0-9.:]*\).*/\1/p' "$dir/orchestrator.log" | head -n1)
  [ -n "$url" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "error: the orchestrator stopped before it listened:" >&2
    cat "$dir/orchestrator.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "error: no 'listening on' line from the orchestrator in 30 s:" >&2
  cat "$dir/orchestrator.log" >&2
  exit 1
fi
echo "orchestrator at $url (folder $dir)"

# /events is a stream without end: it is in the document, not in this run
set +e
# run from the temporary folder: schemathesis keeps its state (.schemathesis/) where it runs
(cd "$dir" && timeout 600 schemathesis run "$url/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection,ignored_auth \
  --max-examples 30 \
  --request-timeout 20 \
  --exclude-path /events \
  --seed "${SCHEMATHESIS_SEED:-1}" \
  -H "Authorization: Bearer $token")
status=$?
set -e

if ! kill -0 "$pid" 2>/dev/null; then
  echo "error: the orchestrator is no longer running after schemathesis:" >&2
  tail -n 50 "$dir/orchestrator.log" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "error: schemathesis found problems (exit $status); the orchestrator's log ends with:" >&2
  tail -n 30 "$dir/orchestrator.log" >&2
  exit "$status"
fi
echo "schemathesis: nothing found, and the orchestrator is still up"
