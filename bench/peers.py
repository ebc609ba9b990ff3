#!/usr/bin/env python3
"""Orquesta beside Ray and Dask on issue 12's two dispatch workloads, all
measured in the same run, with every ratio printed.

- trivial: TASKS tiny tasks (a 2-D Lennard-Jones fluid, N = 16, one step)
  submitted at once on 2 workers x 1 slot, until every result is back:
  tasks/s.
- ms: ~1.6 ms tasks (N = 100, the step count calibrated here so one
  task takes ~1.6 ms): overhead per task = (wall - sum(exec) / slots) /
  tasks, where exec is what each task measured around its own simulation,
  exactly as `orquesta bench cluster ms` computes it from its results.

Ray runs `ray.init(num_cpus=WORKERS)` with tasks of `num_cpus=1`; Dask a
`LocalCluster` of WORKERS processes x 1 thread. Both are warmed up (their
worker processes started and the function shipped) before the clock
starts, as Orquesta's bench starts its workers before dropping the file.
The Python task is numpy, all pairs (N is 100 at most): what matters here
is the cost around a task of a known length, not the kernel's speed.

Run it through bench/peers.sh, which makes the virtual environment and
builds the release binary first.
"""

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def lennard_jones(n, steps, seed, density=0.5, temperature=1.0, dt=0.005, rc=2.5):
    """The seed's system (square lattice, periodic box of side
    sqrt(N / density), LJ 12-6 cut and shifted at rc, velocity Verlet) in
    numpy; returns its own execution time and the final energy per
    particle."""
    started = time.perf_counter()
    side = math.sqrt(n / density)
    kx = math.ceil(math.sqrt(n))
    ky = math.ceil(n / kx)
    s = np.arange(n)
    pos = np.stack([(s % kx) * (side / kx), (s // kx) * (side / ky)], axis=1)
    vel = np.random.default_rng(seed).random((n, 2)) - 0.5
    vel -= vel.mean(axis=0)
    vel *= math.sqrt(temperature / ((vel**2).sum() / (2 * n - 2)))
    rc2 = rc * rc
    shift = 4.0 * (rc**-12 - rc**-6)

    def forces(p):
        d = p[:, None, :] - p[None, :, :]
        d -= side * np.round(d / side)
        r2 = (d**2).sum(axis=-1)
        np.fill_diagonal(r2, np.inf)
        inside = r2 < rc2
        inv2 = np.where(inside, 1.0 / r2, 0.0)
        inv6 = inv2**3
        f = (48.0 * inv6 * inv6 - 24.0 * inv6) * inv2
        u = 0.5 * np.sum(np.where(inside, 4.0 * (inv6 * inv6 - inv6) - shift, 0.0))
        return (f[:, :, None] * d).sum(axis=1), u

    force, potential = forces(pos)
    for _ in range(steps):
        vel += 0.5 * dt * force
        pos += dt * vel
        pos %= side
        force, potential = forces(pos)
        vel += 0.5 * dt * force
    energy = (potential + 0.5 * (vel**2).sum()) / n
    return time.perf_counter() - started, float(energy)


def calibrate_steps(n, target_ms):
    """Steps of an N-particle run that take ~target_ms of CPU here (median
    of several timings). CPU time, not wall: on a shared machine a wall
    timing counts the time others held the core, and the task would be
    sized far too short."""
    probe = 20

    def cpu_seconds(seed):
        t0 = time.process_time()
        lennard_jones(n, probe, seed)
        return time.process_time() - t0

    times = sorted(cpu_seconds(i) for i in range(15))
    per_step = times[len(times) // 2] / probe
    return max(1, round(target_ms / 1e3 / per_step))


def figures(case, walls, execs, tasks, slots):
    """One run list's summary, in the shape `orquesta bench cluster --json`
    prints."""
    rates = [tasks / w for w in walls]
    overheads = [(w - e / slots) / tasks * 1e6 for w, e in zip(walls, execs)]
    spread = lambda v: {"median": statistics.median(v), "min": min(v), "max": max(v)}
    return {
        "case": case,
        "tasks": tasks,
        "tasks_per_second": spread(rates),
        "overhead_us_per_task": spread(overheads),
        "exec_ms_per_task": spread([e / tasks * 1e3 for e in execs]),
        "wall_seconds": spread(walls),
    }


def run_ray(workloads, workers, runs):
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    task = ray.remote(num_cpus=1)(lennard_jones)
    # warm up: the worker processes started and the function shipped
    ray.get([task.remote(16, 1, i) for i in range(50)])
    out = {}
    for case, (n, steps, tasks) in workloads.items():
        walls, execs = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            results = ray.get([task.remote(n, steps, i) for i in range(tasks)])
            walls.append(time.perf_counter() - t0)
            execs.append(sum(r[0] for r in results))
        out[case] = figures(case, walls, execs, tasks, workers)
    ray.shutdown()
    return {"name": "Ray " + ray.__version__, **out}


def run_dask(workloads, workers, runs):
    import dask
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    client.gather(client.map(lennard_jones, [16] * 50, [1] * 50, range(50), pure=False))
    out = {}
    for case, (n, steps, tasks) in workloads.items():
        walls, execs = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            futures = client.map(lennard_jones, [n] * tasks, [steps] * tasks, range(tasks), pure=False)
            results = client.gather(futures)
            walls.append(time.perf_counter() - t0)
            execs.append(sum(r[0] for r in results))
        out[case] = figures(case, walls, execs, tasks, workers)
    # Dask logs a heartbeat's closed connection as an error while it
    # stops its own workers; that is its shutdown, not a failed run
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    client.close()
    cluster.close()
    return {"name": "Dask " + dask.__version__, **out}


def run_orquesta(binary, workloads, workers, runs):
    """Orquesta on the user's path (`bench cluster`: INFO logs, the file
    renamed into task_queues/ and, alternately, copied in, the wall time to
    the last result on disk): two columns, rename first."""
    renamed, copied = {}, {}
    for case, (_, _, tasks) in workloads.items():
        cmd = [
            binary, "bench", "cluster", case, "--json", "--drop", "both",
            "--workers", str(workers), "--slots", "1",
            "--tasks", str(tasks), "--runs", str(runs),
        ]
        # its own folder, so no .env of the current one is read
        done = subprocess.run(cmd, cwd=tempfile.gettempdir(), capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"error: {' '.join(cmd)} failed:\n{done.stderr}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        renamed[case] = figures
        copied[case] = {**figures, **figures["by_drop"]["copy"]}
    return [{"name": "Orquesta rename", **renamed}, {"name": "Orquesta copy", **copied}]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orquesta", required=True, help="the orquesta binary (release build)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3, help="runs of each case; medians are compared")
    ap.add_argument("--trivial-tasks", type=int, default=10_000)
    ap.add_argument("--ms-tasks", type=int, default=500)
    ap.add_argument("--ms-target", type=float, default=1.6, help="milliseconds per Python ms task")
    ap.add_argument("--json", action="store_true", help="also print every figure as one JSON object")
    args = ap.parse_args()

    steps = calibrate_steps(100, args.ms_target)
    python_workloads = {"trivial": (16, 1, args.trivial_tasks), "ms": (100, steps, args.ms_tasks)}
    print(f"{args.workers} workers x 1 slot, {args.runs} runs each (medians compared); "
          f"Python ms task: N=100, {steps} steps (calibrated to ~{args.ms_target} ms here)", flush=True)
    systems = []
    for label, run in (("Orquesta", None), ("Ray", run_ray), ("Dask", run_dask)):
        print(f"running {label}...", file=sys.stderr, flush=True)
        if run is None:
            systems.extend(run_orquesta(args.orquesta, python_workloads, args.workers, args.runs))
        else:
            systems.append(run(python_workloads, args.workers, args.runs))

    orq, peers = systems[0], systems[2:]

    def med(s, case, key):
        figure = s[case].get(key)
        return figure["median"] if isinstance(figure, dict) else None

    head = f"{'':<34}" + "".join(f"{s['name']:>17}" for s in systems)
    print()
    print(head)
    rows = [
        ("trivial tasks/s", "trivial", "tasks_per_second", "{:.0f}"),
        ("trivial wall s", "trivial", "wall_seconds", "{:.2f}"),
        ("trivial orchestrator µs/task", "trivial", "orchestrator_cpu_us_per_task", "{:.0f}"),
        ("ms overhead µs/task", "ms", "overhead_us_per_task", "{:.0f}"),
        ("ms exec ms/task (measured)", "ms", "exec_ms_per_task", "{:.3f}"),
        ("ms wall s", "ms", "wall_seconds", "{:.3f}"),
        ("ms drop to first start ms", "ms", "first_start_ms", "{:.1f}"),
    ]
    for label, case, key, fmt in rows:
        cells = (med(s, case, key) for s in systems)
        print(f"{label:<34}" + "".join(f"{'-' if v is None else fmt.format(v):>17}" for v in cells))
    print("(Orquesta: the wall time ends with the last result on disk; the peers' when the "
          "driver holds the last result in memory)")
    print()
    ratios = {}
    for p in peers:
        short = p["name"].split()[0]
        speed = med(orq, "trivial", "tasks_per_second") / med(p, "trivial", "tasks_per_second")
        less = med(p, "ms", "overhead_us_per_task") / med(orq, "ms", "overhead_us_per_task")
        ratios[short] = {"trivial_tasks_per_second": speed, "ms_overhead": less}
        print(f"Orquesta (rename) / {short:<5} trivial tasks/s: {speed:5.2f}x   "
              f"ms overhead: {short} {med(p, 'ms', 'overhead_us_per_task'):.0f} µs vs Orquesta "
              f"{med(orq, 'ms', 'overhead_us_per_task'):.0f} µs = {less:.2f}x less in Orquesta")
    if args.json:
        print(json.dumps({"systems": systems, "ratios": ratios, "python_ms_steps": steps}))


if __name__ == "__main__":
    main()
