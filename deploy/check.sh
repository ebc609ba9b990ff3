#!/usr/bin/env bash
# Checks the examples under deploy/ with whatever tools this machine has.
#
#   deploy/check.sh kubernetes [FILE]   every YAML document of the manifest:
#                                       structure Orquesta needs (PyYAML), and
#                                       the Kubernetes schema (kubernetes-validate,
#                                       `pip install kubernetes-validate`) if present
#   deploy/check.sh systemd [BIN [DIR]] `systemd-analyze verify` of both units (of DIR,
#                                       default deploy/systemd), with ExecStart pointed
#                                       at BIN (default: orquesta on the PATH); any
#                                       warning about them fails
#   deploy/check.sh keda [FILE]         the KEDA ScaledObject against KEDA's own
#                                       schema (the PyPI package
#                                       cloudcoil-models-keda, pinned in .ci/run):
#                                       every field known, the required ones there,
#                                       and the target and query Orquesta needs
#   deploy/check.sh scripts             shellcheck of the Slurm script and this one
#                                       (apt-get install shellcheck)
#
# Exit status: 0 checked and fine, 1 a problem (printed), 77 skipped because
# a tool is missing (the reason is printed), 2 bad usage. With the variable
# CI set (as .ci/run sets it) a missing tool is a problem, never a skip:
# exit 1, and the schema check of the manifest is required too. The Rust
# tests in tests/integration/deploy.rs run it, and check the Slurm script
# themselves.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)

skip() {
  if [ -n "${CI+set}" ]; then
    echo "FAIL: $* (CI is set: a missing tool fails the check)"
    exit 1
  fi
  echo "SKIP: $*"
  exit 77
}

kubernetes() {
  local file=${1:-$here/kubernetes/orquesta.yaml}
  command -v python3 >/dev/null 2>&1 || skip "python3 is not installed (needed to parse the YAML)"
  python3 -c 'import yaml' 2>/dev/null ||
    skip "python3 has no PyYAML module (pip install pyyaml, or apt-get install python3-yaml)"
  python3 - "$file" <<'PY' || exit 1
import sys, yaml

path = sys.argv[1]
problems = []
def need(cond, what):
    if not cond:
        problems.append(what)

with open(path) as f:
    docs = [d for d in yaml.safe_load_all(f) if d is not None]
by_kind = {}
for i, d in enumerate(docs):
    where = f"document {i + 1}"
    if not isinstance(d, dict):
        problems.append(f"{where}: expected a mapping, found {type(d).__name__}")
        continue
    for key in ("apiVersion", "kind"):
        need(isinstance(d.get(key), str) and d[key], f"{where}: {key} is missing")
    name = (d.get("metadata") or {}).get("name")
    need(isinstance(name, str) and name, f"{where}: metadata.name is missing")
    by_kind.setdefault(d.get("kind"), {})[name] = d

def container(dep, name):
    spec = dep["spec"]["template"]["spec"]
    cs = [c for c in spec.get("containers", []) if c.get("name") == name]
    need(len(cs) == 1, f"{dep['metadata']['name']}: expected one container {name!r}")
    return cs[0] if cs else {}

deps = by_kind.get("Deployment", {})
svcs = by_kind.get("Service", {})
pvcs = by_kind.get("PersistentVolumeClaim", {})
orch, worker, svc = deps.get("orquesta-orchestrator"), deps.get("orquesta-worker"), svcs.get("orquesta")
need(orch is not None, "no Deployment orquesta-orchestrator")
need(worker is not None, "no Deployment orquesta-worker")
need(svc is not None, "no Service orquesta")

for dep in filter(None, (orch, worker)):
    n = dep["metadata"]["name"]
    need(dep.get("apiVersion") == "apps/v1", f"{n}: apiVersion should be apps/v1")
    labels = dep["spec"]["template"]["metadata"].get("labels", {})
    sel = dep["spec"].get("selector", {}).get("matchLabels", {})
    need(sel and all(labels.get(k) == v for k, v in sel.items()),
         f"{n}: selector.matchLabels {sel} does not match the pod labels {labels}")
    for c in dep["spec"]["template"]["spec"].get("containers", []):
        need(bool(c.get("image")), f"{n}/{c.get('name')}: no image")
        need(isinstance(c.get("args"), list) and all(isinstance(a, str) for a in c["args"]),
             f"{n}/{c.get('name')}: args must be a list of strings (quote numbers)")
        rp = c.get("readinessProbe", {}).get("httpGet", {})
        need(rp.get("path") == "/health", f"{n}/{c.get('name')}: readinessProbe is not GET /health")

service_port = None
if svc is not None and orch is not None:
    ports = svc["spec"].get("ports", [])
    need(len(ports) == 1, "Service orquesta: expected one port")
    service_port = ports[0].get("port") if ports else None
    pod_labels = orch["spec"]["template"]["metadata"].get("labels", {})
    sel = svc["spec"].get("selector", {})
    need(sel and all(pod_labels.get(k) == v for k, v in sel.items()),
         f"Service orquesta: selector {sel} does not select the orchestrator's pods {pod_labels}")

if orch is not None:
    need(orch["spec"].get("replicas") == 1, "orquesta-orchestrator: replicas must be 1 (one per database)")
    need(orch["spec"].get("strategy", {}).get("type") == "Recreate",
         "orquesta-orchestrator: strategy must be Recreate (the database lock)")
    c = container(orch, "orchestrator")
    args = c.get("args", [])
    need(args[:1] == ["orchestrator"], f"orchestrator: args should start with 'orchestrator', found {args[:1]}")
    need("--host" in args and args[args.index("--host") + 1] == "0.0.0.0", "orchestrator: --host 0.0.0.0 is missing")
    port = args[args.index("--port") + 1] if "--port" in args else None
    cport = [p.get("containerPort") for p in c.get("ports", [])]
    need(port is not None and int(port) in cport, f"orchestrator: --port {port} is not a containerPort {cport}")
    need(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/health",
         "orchestrator: livenessProbe is not GET /health")
    oenv = {e.get("name"): e for e in c.get("env", [])}
    need(oenv.get("ORQUESTA_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "orquesta-token",
         "orchestrator: ORQUESTA_TOKEN must come from the Secret orquesta-token (it binds 0.0.0.0)")
    claims = [v.get("persistentVolumeClaim", {}).get("claimName")
              for v in orch["spec"]["template"]["spec"].get("volumes", [])]
    need(any(cl in pvcs for cl in claims), f"orchestrator: no volume from a PersistentVolumeClaim of this file ({claims})")
    mounts = {m.get("mountPath") for m in c.get("volumeMounts", [])}
    need(c.get("workingDir") in mounts, "orchestrator: its workingDir (data/, task_queues/, …) is not on the volume")

if worker is not None:
    c = container(worker, "worker")
    args = c.get("args", [])
    need(args[:1] == ["worker"], f"worker: args should start with 'worker', found {args[:1]}")
    join = args[args.index("--join") + 1] if "--join" in args else None
    want = f"http://orquesta:{service_port}"
    need(join == want, f"worker: --join should be {want} (the Service), found {join}")
    adv = args[args.index("--advertise") + 1] if "--advertise" in args else ""
    wport = args[args.index("--port") + 1] if "--port" in args else None
    need(adv == f"$(POD_IP):{wport}", f"worker: --advertise should be $(POD_IP):{wport}, found {adv!r}")
    env = {e.get("name"): e for e in c.get("env", [])}
    need(env.get("POD_IP", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP",
         "worker: POD_IP must come from the downward API (status.podIP)")
    grace = worker["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    need(env.get("ORQUESTA_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "orquesta-token",
         "worker: ORQUESTA_TOKEN must come from the Secret orquesta-token (it binds 0.0.0.0)")
    drain = int(env.get("WORKER_DRAIN_TIMEOUT", {}).get("value", 30))
    need(grace > drain, f"worker: terminationGracePeriodSeconds {grace} must exceed WORKER_DRAIN_TIMEOUT {drain}")
    need("preStop" in c.get("lifecycle", {}), "worker: no preStop hook")

for p in problems:
    print(f"{path}: {p}")
if problems:
    sys.exit(1)
print(f"{path}: {len(docs)} documents, structure ok")
PY
  if command -v kubernetes-validate >/dev/null 2>&1; then
    kubernetes-validate --strict --quiet "$file" || exit 1
    echo "$file: schema ok (kubernetes-validate --strict)"
  elif [ -n "${CI+set}" ]; then
    echo "FAIL: $file: schema not checked: kubernetes-validate is not installed" \
         "(pip install kubernetes-validate; CI is set: a missing tool fails the check)"
    exit 1
  else
    echo "$file: schema not checked: kubernetes-validate is not installed (pip install kubernetes-validate);" \
         "kubeconform and kubeval are single binaries from GitHub, not in the package registries"
  fi
}

systemd() {
  local bin=${1:-$(command -v orquesta || true)} dir=${2:-$here/systemd}
  command -v systemd-analyze >/dev/null 2>&1 || skip "systemd-analyze is not installed (apt-get install systemd)"
  [ -x "$bin" ] || skip "no orquesta binary to point ExecStart at (pass its path)"
  local tmp out rc unit
  tmp=$(mktemp -d) || exit 1
  trap 'rm -rf "$tmp"' RETURN
  cp "$dir"/orquesta-orchestrator.service "$dir"/orquesta-worker@.service "$tmp"/ || exit 1
  sed -i "s#/usr/local/bin/orquesta#$bin#g" "$tmp"/*.service
  for unit in orquesta-orchestrator.service orquesta-worker@check1.service; do
    out=$(systemd-analyze verify "$tmp/$unit" 2>&1)
    rc=$?
    # unknown keys and bad values are only warnings: fail on any line about ours
    if [ $rc -ne 0 ] || grep -q -e "$tmp" -e 'orquesta' <<<"$out"; then
      echo "$unit: systemd-analyze verify:"
      echo "$out"
      exit 1
    fi
    echo "$unit: systemd-analyze verify ok"
  done
}

keda() {
  local file=${1:-$here/kubernetes/keda.yaml}
  command -v python3 >/dev/null 2>&1 || skip "python3 is not installed (needed to parse the YAML)"
  python3 -c 'import yaml' 2>/dev/null || skip "python3 has no PyYAML module (pip install pyyaml)"
  python3 -c 'import cloudcoil.models.keda.v1alpha1' 2>/dev/null ||
    skip "KEDA's schema is not installed (pip install cloudcoil-models-keda==2.16.1.0)"
  python3 - "$file" <<'PY' || exit 1
import sys, yaml
from pydantic import BaseModel, ValidationError
from cloudcoil.models.keda import v1alpha1 as keda

path = sys.argv[1]
problems = []

def strict(raw, model, where):
    """Every key of raw must be a field of the model KEDA's schema made."""
    if isinstance(model, BaseModel) and isinstance(raw, dict):
        fields = {(f.alias or n): n for n, f in type(model).model_fields.items()}
        fields.update({n: n for n in type(model).model_fields})
        for key, value in raw.items():
            if key not in fields:
                problems.append(f"{where}.{key}: not a field of KEDA's {type(model).__name__}")
            else:
                strict(value, getattr(model, fields[key]), f"{where}.{key}")
    elif isinstance(model, list) and isinstance(raw, list):
        for i, (r, m) in enumerate(zip(raw, model)):
            strict(r, m, f"{where}[{i}]")

with open(path) as f:
    docs = [d for d in yaml.safe_load_all(f) if d is not None]
objects = [d for d in docs if isinstance(d, dict) and d.get("kind") == "ScaledObject"]
if len(objects) != 1:
    problems.append(f"expected one ScaledObject, found {len(objects)}")
for d in objects:
    if d.get("apiVersion") != "keda.sh/v1alpha1":
        problems.append(f"apiVersion: expected keda.sh/v1alpha1, found {d.get('apiVersion')!r}")
    try:
        so = keda.ScaledObject.model_validate(d)
    except ValidationError as e:
        problems.append(f"KEDA's schema refuses it: {e}")
        continue
    strict({k: v for k, v in d.items() if k not in ("apiVersion", "kind")}, so, "ScaledObject")
    spec = d.get("spec", {})
    target = spec.get("scaleTargetRef", {})
    if target.get("name") != "orquesta-worker" or target.get("kind", "Deployment") != "Deployment":
        problems.append("scaleTargetRef should be the Deployment orquesta-worker")
    if spec.get("minReplicaCount") != 0:
        problems.append("minReplicaCount should be 0 (no worker while nothing is queued)")
    triggers = spec.get("triggers", [])
    prom = [t for t in triggers if t.get("type") == "prometheus"]
    if not prom or 'orquesta_tasks{status="queued"}' not in prom[0].get("metadata", {}).get("query", ""):
        problems.append('the prometheus trigger should query orquesta_tasks{status="queued"}')
if problems:
    for p in problems:
        print(f"FAIL: {path}: {p}")
    sys.exit(1)
print(f"{path}: ScaledObject ok (KEDA schema, strict)")
PY
}

scripts() {
  command -v shellcheck >/dev/null 2>&1 || skip "shellcheck is not installed (apt-get install shellcheck)"
  shellcheck "$here/slurm/orquesta-workers.sbatch" "$here/check.sh" || exit 1
  echo "slurm/orquesta-workers.sbatch, check.sh: shellcheck ok"
}

case ${1:-} in
  kubernetes) shift; kubernetes "$@" ;;
  systemd) shift; systemd "$@" ;;
  keda) shift; keda "$@" ;;
  scripts) scripts ;;
  *) echo "usage: $0 kubernetes [FILE] | keda [FILE] | systemd [BIN [DIR]] | scripts" >&2; exit 2 ;;
esac
