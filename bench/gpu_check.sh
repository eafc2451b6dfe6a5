#!/usr/bin/env bash
# The GPU check: every method's smoke run on the GPU it is given (hardware=gpu), then data-parallel over
# every visible GPU where the method supports it (hardware=ddp). One line per check:
#   gpu_check <name> PASS|FAIL <seconds>s <metric or error>
# Without CUDA it prints one SKIP line and exits 0, so it is safe anywhere; it never decides a CI run.
# Usage (from the repository root): bash bench/gpu_check.sh [python]
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${1:-${PYTHON:-.venv/bin/python}}"
[ -x "$PY" ] || PY=python3
export WANDB_MODE=disabled HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check SKIP: no CUDA device visible to torch ($PY)"
  exit 0
fi
"$PY" -c "import torch; print('gpu_check device', torch.cuda.device_count(), 'x', torch.cuda.get_device_name(0), 'torch', torch.__version__, 'cuda', torch.version.cuda)"

OUT="$(mktemp -d)"
failures=0
check() {  # check <name> <run.py overrides...>
  local name="$1"; shift
  local dir="$OUT/$name" t0 t1 rc
  t0=$(date +%s%N)
  "$PY" run.py "$@" scale=smoke logger=none "hydra.run.dir=$dir" >"$OUT/$name.log" 2>&1
  rc=$?
  t1=$(date +%s%N)
  local tenths=$(((t1 - t0) / 100000000)) secs
  secs="$((tenths / 10)).$((tenths % 10))"
  if [ $rc -eq 0 ] && [ -f "$dir/results.json" ]; then
    local metrics
    metrics=$("$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print(' '.join(f'{k}={v:.4g}' for k,v in list(r['metrics'].items())[:3]))" "$dir/results.json")
    echo "gpu_check $name PASS ${secs}s $metrics"
  else
    failures=$((failures + 1))
    echo "gpu_check $name FAIL ${secs}s rc=$rc: $(grep -v '^\s*$' "$OUT/$name.log" | tail -1 | cut -c1-160)"
  fi
}

for method in erc sac h2o ifd alpagasus sbcl diffusion_cls chain scool mera instructzero; do
  check "$method-gpu" "method=$method" hardware=gpu
done
check "sbcl-gpu-bf16" method=sbcl hardware=gpu hardware.precision=bf16-mixed
for method in sbcl diffusion_cls mera ifd; do
  check "$method-ddp" "method=$method" hardware=ddp
done
check "ifd-fsdp" method=ifd hardware=fsdp

echo "gpu_check done: $failures failed; logs in $OUT"
exit 0
