#!/usr/bin/env python3
"""Writes tests/lammps/reference.json: what LAMMPS (Debian's `lammps`,
binary `lmp`) computes for the system every Orquesta task runs, from
tests/lammps/in.lj2d. The simulation's unit tests (src/sim/lammps_tests.rs)
compare against this file; tests/integration/lammps.rs checks, where `lmp`
is installed, that LAMMPS still gives its step-0 values.

    python3 tests/lammps/reference.py            # runs lmp, several minutes

- step0: N = 20 x 20 and 32 x 32 at step 0 (`run 0`): the lattice's
  potential energy and pressure, equal to Orquesta's (same lattice, same
  temperature normalisation) up to rounding.
- relaxed: N = 32 x 32, 20,000 steps, one thermo row every 100 steps, four
  velocity seeds: the mean over the rows of the second half (step >= 10,000)
  of each seed. LAMMPS draws its velocities with its own generator, so only
  these equilibrium averages compare, within their spread over seeds.
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
COLUMNS = ["step", "temperature", "potential_energy", "kinetic_energy", "total_energy", "pressure"]
RELAXED = {"side": 32, "steps": 20000, "thermo_every": 100, "seeds": [11, 22, 33, 44]}


def thermo_rows(screen):
    """The rows of the thermo table LAMMPS prints (step temp pe ke etotal press)."""
    rows, inside = [], False
    for line in screen.splitlines():
        words = line.split()
        if words[:2] == ["Step", "Temp"]:
            inside = True
            continue
        if inside:
            try:
                values = [float(w) for w in words]
            except ValueError:
                inside = False
                continue
            if len(values) == len(COLUMNS):
                rows.append(dict(zip(COLUMNS, values)))
    return rows


def run_lammps(side, seed, steps):
    with tempfile.TemporaryDirectory() as work:
        screen = os.path.join(work, "screen.txt")
        subprocess.run(
            ["lmp", "-in", os.path.join(HERE, "in.lj2d"), "-var", "side", str(side), "-var", "seed",
             str(seed), "-var", "steps", str(steps), "-log", "none", "-screen", screen],
            check=True, cwd=work, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL)
        with open(screen) as f:
            return thermo_rows(f.read())


def second_half_means(rows, steps):
    half = [r for r in rows if 2 * r["step"] >= steps]
    return {k: sum(r[k] for r in half) / len(half) for k in COLUMNS[1:]} | {"rows": len(half)}


def main():
    version = subprocess.run(["lmp", "-h"], capture_output=True, text=True).stdout.splitlines()
    version = next((l.strip() for l in version if "Simulator" in l), "unknown")
    step0 = []
    for side in (20, 32):
        row = run_lammps(side, 87287, 0)[0]
        step0.append({"side": side} | {k: row[k] for k in COLUMNS[1:]})
    relaxed = dict(RELAXED, per_seed=[])
    for seed in RELAXED["seeds"]:
        rows = run_lammps(RELAXED["side"], seed, RELAXED["steps"])
        relaxed["per_seed"].append({"seed": seed} | second_half_means(rows, RELAXED["steps"]))
    out = {"lammps": version, "input": "tests/lammps/in.lj2d", "step0": step0, "relaxed": relaxed}
    with open(os.path.join(HERE, "reference.json"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
