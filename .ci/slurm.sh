#!/usr/bin/env bash
# A single-node Slurm on this machine for the allocation tests
# (tests/integration/allocation.rs): munged, slurmctld and slurmd from
# Debian's slurm-wlm and munge packages, one partition holding this host,
# no cgroups (proctrack/linuxproc), no accounting. Idempotent: a Slurm that
# already answers with an idle or mixed node is left alone. Exits non-zero,
# saying why, when Slurm cannot be started.
set -euo pipefail

fail() {
  echo "error: $*" >&2
  exit 1
}

for tool in munged slurmctld slurmd sinfo sbatch; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing (apt-get install slurm-wlm munge)"
done

node_ready() {
  sinfo --noheader -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)'
}
if node_ready; then
  echo "slurm: already running ($(sinfo --noheader -o '%N %t' | head -1))"
  exit 0
fi

host=$(hostname -s)
# what slurmd sees on this machine: CPUs and memory in MB
cpus=$(nproc)
mem_mb=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
conf_dir=/etc/slurm
mkdir -p "$conf_dir" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat >"$conf_dir/slurm.conf" <<CONF
# written by .ci/slurm.sh: a single-node test cluster
ClusterName=orquesta-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=30
KillWait=5
InactiveLimit=0
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
# slurm.conf must not have cgroup.conf demands: none are set above
chown munge:munge /run/munge 2>/dev/null || true

if ! pgrep -x munged >/dev/null 2>&1; then
  [ -s /etc/munge/munge.key ] || fail "/etc/munge/munge.key is missing (reinstall munge, or run mungekey)"
  if id munge >/dev/null 2>&1; then
    su -s /bin/sh munge -c "munged" || fail "munged did not start"
  else
    munged --force || fail "munged did not start"
  fi
fi
# stale daemons from an earlier configuration: restart them on this one
for d in slurmctld slurmd; do
  if pgrep -x "$d" >/dev/null 2>&1; then
    scontrol shutdown >/dev/null 2>&1 || true
    break
  fi
done
for _ in $(seq 50); do
  pgrep -x slurmctld >/dev/null 2>&1 || pgrep -x slurmd >/dev/null 2>&1 || break
  sleep 0.2
done
slurmctld || fail "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
slurmd || fail "slurmd did not start (see /var/log/slurm/slurmd.log)"

# the node comes up as idle within seconds; a node stuck down is resumed
for i in $(seq 150); do
  if node_ready; then
    echo "slurm: ready ($(sinfo --noheader -o '%N %t %c CPUs'))"
    exit 0
  fi
  if [ $((i % 25)) -eq 0 ]; then
    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  fi
  sleep 0.2
done
sinfo >&2 || true
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
fail "the Slurm node did not become idle within 30 s"
