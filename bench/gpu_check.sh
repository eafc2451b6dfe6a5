#!/usr/bin/env bash
# The GPU check (target: under 8 minutes on one GPU). What the CPU rehearsals cannot show, on the GPU lent:
#   1. rehearsals: every method's rehearsal (tests/paper/test_<method>_paper.py::test_rehearsal_*: the
#      table's scale=paper configuration with only sizes and sources shrunk) with hardware=gpu in place of
#      the rehearsal's hardware=cpu (tests/paper/gpu_rehearsal.py swaps that test-side override only);
#   2. bench: the H2O and SBCL benchmarks, short (bench/h2o_speed.py --quick, bench/sbcl_epoch.py);
#   3. parallel: smoke runs with hardware=ddp (sbcl, diffusion_cls, mera, ifd) and hardware=fsdp (ifd)
#      over every visible GPU.
# One line per check, with the peak memory of the busiest GPU while it ran (nvidia-smi, CUDA context included):
#   gpu_check <name> PASS|RAN|FAIL <seconds>s peak=<MiB>MiB <detail>
# RAN (rehearsals only): every run.py the rehearsal started exited 0 on the GPU, but a later assertion of the
# CPU test failed (the detail quotes it; e.g. one that expects hardware.accelerator == "cpu").
# Without CUDA it prints one SKIP line and exits 0, so it is safe anywhere; it never decides a CI run.
# Usage (from the repository root): bash bench/gpu_check.sh [python] [--dry-run]
#   --dry-run          print the commands it would run (one "gpu_check plan" line each), run nothing
#   GPU_CHECK_PARTS    which parts, default "rehearsals bench parallel"
#   GPU_CHECK_TIMEOUT  seconds allowed per check, default 240
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
ARGS=()
for a in "$@"; do
  if [ "$a" = "--dry-run" ]; then DRY=1; else ARGS+=("$a"); fi
done
PY="${ARGS[0]:-${PYTHON:-.venv/bin/python}}"
[ -x "$PY" ] || PY=python3
PARTS="${GPU_CHECK_PARTS:-rehearsals bench parallel}"
LIMIT="${GPU_CHECK_TIMEOUT:-240}"
export WANDB_MODE=disabled HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

if [ $DRY -eq 0 ] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check SKIP: no CUDA device visible to torch ($PY)"
  exit 0
fi
OUT="$(mktemp -d)"
if [ $DRY -eq 0 ]; then
  "$PY" -c "import torch; print('gpu_check device', torch.cuda.device_count(), 'x', torch.cuda.get_device_name(0), 'torch', torch.__version__, 'cuda', torch.version.cuda)"
fi
failures=0
START=$(date +%s)

MON=""
mem_start() {  # poll every GPU's used memory into $1 while a check runs
  MON=""
  : >"$1"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 >"$1" 2>/dev/null &
    MON=$!
  fi
}
mem_stop() {  # echo the peak MiB of the busiest GPU seen in $1
  if [ -n "$MON" ]; then
    kill "$MON" 2>/dev/null
    wait "$MON" 2>/dev/null
  fi
  awk 'BEGIN{m=0} $1+0>m{m=$1+0} END{print m}' "$1"
}
elapsed() {  # seconds since $1 (date +%s%N), one decimal
  local tenths=$((($(date +%s%N) - $1) / 100000000))
  echo "$((tenths / 10)).$((tenths % 10))"
}

# measured <name> <cmd...>: prints the plan under --dry-run (and returns 1); otherwise runs cmd with its
# output in $OUT/<name>.log while polling GPU memory, and sets rc, secs and peak for the caller.
measured() {
  local name="$1" t0
  shift
  if [ $DRY -eq 1 ]; then
    echo "gpu_check plan $name: $*"
    return 1
  fi
  t0=$(date +%s%N)
  mem_start "$OUT/$name.mem"
  "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  peak=$(mem_stop "$OUT/$name.mem")
  secs=$(elapsed "$t0")
}

rehearsal() {  # rehearsal <method>: tests/paper/test_<method>_paper.py's rehearsal, on the GPU
  local m="$1" log rc secs peak
  log="$OUT/rehearsal-$m.jsonl"
  local cmd=(env REPROLAB_REHEARSAL_HARDWARE=gpu "REPROLAB_REHEARSAL_LOG=$log" timeout "$LIMIT" "$PY" -m pytest
    -q -x -p no:cacheprovider -p tests.paper.gpu_rehearsal -m slow -k rehearsal "tests/paper/test_${m}_paper.py")
  [ $DRY -eq 1 ] || : >"$log"
  measured "rehearsal-$m" "${cmd[@]}" || return 0
  local verdict
  verdict=$("$PY" -m tests.paper.gpu_rehearsal "$log" "$OUT/rehearsal-$m.log" "$rc")
  case "$verdict" in FAIL*) failures=$((failures + 1)) ;; esac
  echo "gpu_check rehearsal-$m ${verdict%% *} ${secs}s peak=${peak}MiB ${verdict#* }"
}

bench() {  # bench <name> <script args...>: a benchmark, short; PASS when it exits 0
  local name="$1" rc secs peak
  shift
  local cmd=(timeout "$LIMIT" "$PY" "$@" --json "$OUT/$name.json")
  measured "$name" "${cmd[@]}" || return 0
  if [ $rc -eq 0 ]; then
    echo "gpu_check $name PASS ${secs}s peak=${peak}MiB $(grep -v '^\s*$' "$OUT/$name.log" | tail -1 | cut -c1-140)"
  else
    failures=$((failures + 1))
    echo "gpu_check $name FAIL ${secs}s peak=${peak}MiB rc=$rc: $(grep -v '^\s*$' "$OUT/$name.log" | tail -1 | cut -c1-140)"
  fi
}

smoke() {  # smoke <name> <run.py overrides...>: a smoke run; PASS when it wrote results.json
  local name="$1" dir rc secs peak
  shift
  dir="$OUT/$name"
  local cmd=(timeout "$LIMIT" "$PY" run.py "$@" scale=smoke logger=none "hydra.run.dir=$dir")
  measured "$name" "${cmd[@]}" || return 0
  if [ $rc -eq 0 ] && [ -f "$dir/results.json" ]; then
    local metrics
    metrics=$("$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print(' '.join(f'{k}={v:.4g}' for k,v in list(r['metrics'].items())[:3]))" "$dir/results.json")
    echo "gpu_check $name PASS ${secs}s peak=${peak}MiB $metrics"
  else
    failures=$((failures + 1))
    echo "gpu_check $name FAIL ${secs}s peak=${peak}MiB rc=$rc: $(grep -v '^\s*$' "$OUT/$name.log" | tail -1 | cut -c1-160)"
  fi
}

for part in $PARTS; do
  case "$part" in
    rehearsals)
      for f in tests/paper/test_*_paper.py; do
        f="${f#tests/paper/test_}"
        rehearsal "${f%_paper.py}"
      done
      ;;
    bench)
      bench h2o-speed bench/h2o_speed.py --quick
      bench sbcl-epoch bench/sbcl_epoch.py --epochs 2 --repeats 1
      ;;
    parallel)
      for method in sbcl diffusion_cls mera ifd; do
        smoke "$method-ddp" "method=$method" hardware=ddp
      done
      smoke ifd-fsdp method=ifd hardware=fsdp
      ;;
    *) echo "gpu_check: unknown part '$part' in GPU_CHECK_PARTS (valid: rehearsals bench parallel)" >&2 ;;
  esac
done

if [ $DRY -eq 1 ]; then
  rmdir "$OUT"
  exit 0
fi
echo "gpu_check done: $failures failed in $(($(date +%s) - START))s (target under 480s); logs in $OUT"
exit 0
