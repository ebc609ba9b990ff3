#!/usr/bin/env bash
# Runs LAMMPS (`lmp`, one thread) and `orquesta sim` (optimized kernel, one
# thread and all threads) on the same 2-D Lennard-Jones system and prints
# particle-steps per second for both and their ratio.
#
#   bench/lammps_vs_orquesta.sh [N:STEPS ...]     default: 10000:2000 100000:200
#   ORQUESTA=path/to/orquesta bench/lammps_vs_orquesta.sh ...   (no build)
#   ROUNDS=5 ORQUESTA_BASE=/tmp/old-orquesta bench/lammps_vs_orquesta.sh 10000:5000
#
# One-thread figures are particle-steps per CPU second (user + system time
# of the whole process, from /usr/bin/time), so that a machine shared with
# other work still compares the two fairly; the all-threads figure is
# orquesta's own wall-clock rate (CPU time cannot show a parallel speed-up).
# With ROUNDS=R each case runs R times, LAMMPS and orquesta alternated
# (and ORQUESTA_BASE, another binary, e.g. a build before a change, in the
# same rounds), and the medians are printed.
#
# Both run the same physics at density 0.5 (LJ cut at 2.5, shifted, dt 0.005,
# skin 0.3 in LAMMPS). LAMMPS' `lattice sq` region is a × b sites: a perfect
# square N gets a = b = sqrt(N), exactly orquesta's start. Any other N gets
# the a × b = N closest to square (100000 -> 250 × 400), a rectangular box at
# the same density: the per-particle cost is the same, so the particle-steps
# per second compare fairly with orquesta's square box of N particles. An N
# whose closest factors are further apart than 1:4 (e.g. a prime) is refused.
#
# Installs Debian's `lammps` package if `lmp` is missing (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v lmp >/dev/null 2>&1; then
  echo "installing LAMMPS (Debian package lammps)..." >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq lammps >/dev/null
fi
# ORQUESTA=path/to/orquesta measures that binary instead of building one
if [ -n "${ORQUESTA:-}" ]; then
  ORQ=$ORQUESTA
else
  cargo build --release --quiet
  ORQ=target/release/orquesta
fi
ALL=$(nproc)

cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(10000:2000 100000:200)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

lattice_sides() { # N -> "a b" with a * b = N, a <= b, as close to square as can be
  python3 - "$1" <<'PY'
import math, sys
n = int(sys.argv[1])
a = next(d for d in range(math.isqrt(n), 0, -1) if n % d == 0)
b = n // a
if b > 4 * a:
    sys.exit(f"N = {n}: the closest factors are {a} x {b}, too far from square for a fair "
             "comparison; pick an N with two close factors (e.g. 250 x 400 = 100000)")
print(a, b)
PY
}

lammps_rate() { # N STEPS -> particle-steps/s
  local n=$1 steps=$2 sides a b
  sides=$(lattice_sides "$n") || exit 2
  read -r a b <<<"$sides"
  cat >"$work/in.lj2d" <<LMP
units lj
dimension 2
boundary p p p
atom_style atomic
lattice sq 0.5
region box block 0 $a 0 $b -0.5 0.5
create_box 1 box
create_atoms 1 box
mass 1 1.0
velocity all create 1.0 87287 loop geom
pair_style lj/cut 2.5
pair_modify shift yes
pair_coeff 1 1 1.0 1.0 2.5
neighbor 0.3 bin
fix 1 all nve
fix 2 all enforce2d
timestep 0.005
thermo $steps
run $steps
LMP
  (cd "$work" && OMP_NUM_THREADS=1 /usr/bin/time -f "%U %S" -o "$work/cpu.txt" \
    lmp -in in.lj2d -log none -screen "$work/out.txt" >/dev/null)
  per_cpu_second "$n" "$steps"
}

per_cpu_second() { # N STEPS -> particle-steps per CPU second of the last timed run
  awk -v n="$1" -v s="$2" 'END {printf "%.0f\n", n * s / ($1 + $2)}' "$work/cpu.txt"
}

orquesta_rate() { # BINARY N STEPS -> particle-steps per CPU second, one thread
  /usr/bin/time -f "%U %S" -o "$work/cpu.txt" \
    "$1" sim --particles "$2" --steps "$3" --seed 87287 --algorithm optimized --threads 1 --compact >/dev/null
  per_cpu_second "$2" "$3"
}

orquesta_wall_rate() { # N STEPS THREADS -> particle-steps/s, wall clock
  "$ORQ" sim --particles "$1" --steps "$2" --seed 87287 --algorithm optimized --threads "$3" --compact \
    | python3 -c "import json,sys; print(round(json.load(sys.stdin)['result']['metrics']['particle_steps_per_second']))"
}

median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

ROUNDS=${ROUNDS:-1}
BASE=${ORQUESTA_BASE:-}
printf '%-9s %-6s %16s %16s %9s %16s %9s' N steps "LAMMPS ps/CPU-s" "orquesta 1 thr" ratio "orquesta ${ALL} thr" ratio
[ -z "$BASE" ] || printf ' %16s %9s' "base 1 thr" ratio
printf '\n'
for c in "${cases[@]}"; do
  n=${c%%:*}; steps=${c##*:}
  ls=(); os=(); bs=()
  for _ in $(seq "$ROUNDS"); do
    ls+=("$(lammps_rate "$n" "$steps")")
    os+=("$(orquesta_rate "$ORQ" "$n" "$steps")")
    [ -z "$BASE" ] || bs+=("$(orquesta_rate "$BASE" "$n" "$steps")")
  done
  l=$(median "${ls[@]}"); o1=$(median "${os[@]}")
  oa=$(orquesta_wall_rate "$n" "$steps" "$ALL")
  printf '%-9s %-6s %16s %16s %8.2fx %16s %8s' "$n" "$steps" "$l" "$o1" \
    "$(python3 -c "print($o1/$l)")" "$oa" "(wall)"
  if [ -n "$BASE" ]; then
    b=$(median "${bs[@]}")
    printf ' %16s %8.2fx' "$b" "$(python3 -c "print($b/$l)")"
  fi
  printf '\n'
  [ "$ROUNDS" -eq 1 ] || echo "  rounds: LAMMPS ${ls[*]}; orquesta ${os[*]}${BASE:+; base ${bs[*]}}"
done
