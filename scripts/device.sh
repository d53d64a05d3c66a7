#!/usr/bin/env bash
# The device session's one command (docs/gpu.md has the exact `run` call). Runs from the repo root
# on the GPU machine with dist/ (built here by `npx tsc -p .`) and .device/ (node.xz, see below)
# carried; writes every log to $OUT (or ./out-device when $OUT is unset). Steps, each logged and
# timed, none stopping the next:
#   0. environment: nvidia-smi, nvcc, python/torch, whether node exists
#   1. node: the image's own if present, else the carried .device/node.xz unpacked to /tmp
#   2. build the addon with cuBLASLt from the Python nvidia.cublas package (falls back to the
#      carried build/ if the build fails)
#   3. op tests on every backend (the CUDA backend registers, so each op test runs on it too)
#   4. reference check on the GPU (FLUXSERVE_BACKEND=cuda)
#   5. bench placeholder (GEMM/attention timings, allocator peak)
# Later phases, each its own `run` call (one call is capped at 600 s) on the still-warm machine
# (the build/ from the first call is reused; rebuilt if absent). Argument = phase:
#   ops (default)  steps 0-5 above
#   compare        6. scripts/device/random_flux.py: random full-size FLUX.1-dev (bf16) into
#                     $FXS_RANDOM_DIR (default /tmp/flux-random, 23.8 GB) + inputs + PyTorch
#                     references (bf16, and f32 on the same weights) -> random-flux.log, meta.json
#                  7. scripts/gpu-compare.mjs: our bf16 forward on cuda vs both -> compare.log
#                  8. the same with f32 activations/weights (47.6 GB) -> compare-f32.log (if time is left)
#   predict        9. scripts/gpu-random-predict.mjs: 1024x1024, 28 steps, random full-size
#                     FLUX-dev + T5-XXL + CLIP-L + AE built in-process -> predict.log
#   bench-torch   10. scripts/device/bench_torch.py: the PyTorch reference (BFL Flux module from
#                     .ref/bfl/src, carried) eager + torch.compile -> /tmp/torch-rows.jsonl, bench-torch.log
#   bench         11. dist/bench/flux-gpu.js: our per-step / e2e / memory / go_fast quality, merged
#                     with the reference rows -> bench-table.md (docs/performance.md), bench.log
# Every step has a timeout; a phase stops starting steps when its 580 s budget is used up.
PHASE="${1:-ops}"
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out-device}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
step() { # step NAME LOGFILE cmd...
  local name="$1" log="$OUT/$2"; shift 2
  local t0=$SECONDS
  "$@" > "$log" 2>&1
  local rc=$?
  note "[$name] rc=$rc $((SECONDS - t0))s (log: $(basename "$log"))"
  return $rc
}

{
  echo "== uname"; uname -a
  echo "== nvidia-smi"; nvidia-smi 2>&1 | head -20
  echo "== nvcc"; command -v nvcc && nvcc --version | tail -2
  echo "== python/torch"; python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" 2>&1
  echo "== nvidia.cublas"; python3 -c "import nvidia.cublas as m; print(list(m.__path__))" 2>&1
  echo "== node on the image"; command -v node && node -v || echo "no node on PATH"
  echo "== nproc"; nproc
} > "$OUT/env.txt" 2>&1
note "phase: $PHASE"
note "env: $(grep -A1 '== node on the image' "$OUT/env.txt" | tail -1)"

# 1. node
NODE=""
if command -v node >/dev/null 2>&1; then NODE=$(command -v node); fi
if [ -z "$NODE" ] && [ -f .device/node.xz ]; then
  xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node && NODE=/tmp/node
fi
if [ -z "$NODE" ] && [ -f .device/node ]; then NODE=.device/node; fi
if [ -z "$NODE" ] || ! "$NODE" -v >/dev/null 2>&1; then
  note "no usable node (neither on the image nor carried as .device/node.xz); only the native build can run"
  NODE=""
fi
[ -n "$NODE" ] && note "node: $NODE $("$NODE" -v)"
export PATH="$(dirname "${NODE:-/usr/bin/node}"):$PATH"

# Node's headers: the carried copy (.device/include/node) when the image has none
[ -d .device/include/node ] && export NODE_INCLUDE_DIR="${NODE_INCLUDE_DIR:-$PWD/.device/include/node}"

# 2. build (later phases reuse the first call's build on the warm machine)
[ "$PHASE" = bench-torch ] && FXS_SKIP_BUILD=1  # PyTorch only
if [ "$PHASE" != ops ] && [ -f build/fluxserve_cuda.node ] && [ -z "${FXS_REBUILD:-}" ]; then
  note "reusing build/fluxserve_cuda.node"; FXS_SKIP_BUILD=1
fi
[ -f build/fluxserve_cuda.node ] && cp build/fluxserve_cuda.node /tmp/fluxserve_cuda.carried.node
if [ "${FXS_SKIP_BUILD:-0}" = 1 ]; then note "build skipped (FXS_SKIP_BUILD=1, local dry run)"; : > "$OUT/build.log"
else step build build.log env JOBS=16 bash scripts/build-native.sh; fi
if [ ! -f build/fluxserve_cuda.node ] && [ -f /tmp/fluxserve_cuda.carried.node ]; then
  cp /tmp/fluxserve_cuda.carried.node build/fluxserve_cuda.node
  note "build failed; using the carried addon (no cuBLASLt)"
fi
grep -E "cuBLASLt|wrote" "$OUT/build.log" | tee -a "$SUMMARY"

T_PHASE=$SECONDS
left() { echo $((580 - (SECONDS - T_PHASE))); }
# budget CAP: the smaller of CAP and what is left of the phase's 580 s (0 when < 30 s are left)
budget() { local l; l=$(left); [ "$l" -lt 30 ] && { echo 0; return; }; [ "$1" -lt "$l" ] && echo "$1" || echo "$l"; }
RDIR="${FXS_RANDOM_DIR:-/tmp/flux-random}"

if [ "$PHASE" = compare ]; then
  B=$(budget 330); [ "$B" -gt 0 ] && step random-flux random-flux.log timeout "$B" python3 scripts/device/random_flux.py --dir "$RDIR"
  cat "$OUT/random-flux.log" | tail -8 | tee -a "$SUMMARY"; cp "$RDIR/meta.json" "$OUT/meta.json" 2>/dev/null
  df -h "$RDIR" | tail -1 | tee -a "$SUMMARY"
  if [ -n "$NODE" ] && [ -f "$RDIR/ref-bf16.safetensors" ]; then
    B=$(budget 200); [ "$B" -gt 0 ] && step compare compare.log env FLUXSERVE_BACKEND=cuda timeout "$B" "$NODE" scripts/gpu-compare.mjs "$RDIR"
    grep -vE '^\{' "$OUT/compare.log" | tail -12 | tee -a "$SUMMARY"
    B=$(budget 200); [ "$B" -gt 60 ] && step compare-f32 compare-f32.log env FLUXSERVE_BACKEND=cuda timeout "$B" "$NODE" scripts/gpu-compare.mjs "$RDIR" --dtype f32
    [ -f "$OUT/compare-f32.log" ] && grep -vE '^\{' "$OUT/compare-f32.log" | tail -12 | tee -a "$SUMMARY"
  fi
  note "done"; exit 0
fi
if [ "$PHASE" = bench-torch ]; then
  # 10. PyTorch reference (issue 7): the public BFL Flux module (.ref/bfl/src, carried; see docs/performance.md)
  #     with random bf16 weights, eager and torch.compile, dev and schnell, 1024² and 512²
  B=$(budget 570); step bench-torch bench-torch.log env PYTHONUNBUFFERED=1 timeout "$B" python3 scripts/device/bench_torch.py \
    --impl bfl --bfl-src .ref/bfl/src --out /tmp/torch-rows.jsonl --budget $((B - 60))
  cp /tmp/torch-rows.jsonl "$OUT/torch-rows.jsonl" 2>/dev/null
  grep -vE '^\{' "$OUT/bench-torch.log" | tail -14 | tee -a "$SUMMARY"
  note "done"; exit 0
fi
if [ "$PHASE" = bench ]; then
  # 11. our bench (bench/flux-gpu.ts) with the reference rows of phase bench-torch merged into one table
  if [ -n "$NODE" ]; then
    B=$(budget 570); step bench bench.log env FLUXSERVE_BACKEND=cuda FXS_REQUIRE_CUBLASLT=1 timeout "$B" "$NODE" dist/bench/flux-gpu.js \
      --torch /tmp/torch-rows.jsonl --out "$OUT/bench-table.md" --json "$OUT/bench-rows.jsonl" --budget $((B - 90))
    tail -30 "$OUT/bench.log" | tee -a "$SUMMARY"
  fi
  note "done"; exit 0
fi
if [ "$PHASE" = predict ]; then
  if [ -n "$NODE" ]; then
    B=$(budget 570); step predict predict.log env FLUXSERVE_BACKEND=cuda timeout "$B" "$NODE" scripts/gpu-random-predict.mjs --size 1024 --steps 28
    tail -16 "$OUT/predict.log" | tee -a "$SUMMARY"
  fi
  note "done"; exit 0
fi

if [ -n "$NODE" ] && [ -d dist/src ]; then
  # the dist/ carried was compiled here; addon load check first
  step load load.log "$NODE" -e "import('./dist/src/tensor/cuda/index.js').then(m=>{const b=m.loadCudaBackend(); console.log(b ? 'loaded: '+m.cudaDeviceDescription()+'; wgmma attention: '+m.cudaAttentionKernel() : 'NOT loaded: '+m.cudaUnavailableReason()); process.exit(b?0:1)})"
  cat "$OUT/load.log" | tee -a "$SUMMARY"
  # 3. op tests (every backend; failures name the backend in brackets)
  step op-tests op-tests.log env FXS_REQUIRE_CUBLASLT=1 "$NODE" scripts/run-tests.mjs dist/test/tensor/ dist/test/models/textenc-parity dist/test/models/fp8 dist/test/models/vae-autocast
  grep -E "^ℹ (tests|pass|fail)|✖" "$OUT/op-tests.log" | head -40 | tee -a "$SUMMARY"
  # 4. reference check on the GPU
  step reference-check reference-check.log env FLUXSERVE_BACKEND=cuda "$NODE" scripts/gpu-check.mjs reference-check test/fixtures/bfl-tiny-a
  tail -5 "$OUT/reference-check.log" | tee -a "$SUMMARY"
  # 5. bench placeholder
  step bench bench.log env FLUXSERVE_BACKEND=cuda timeout 240 "$NODE" scripts/gpu-check.mjs bench
  cat "$OUT/bench.log" | tee -a "$SUMMARY"
else
  note "skipped node steps (node: '${NODE}', dist/: $([ -d dist/src ] && echo present || echo missing))"
fi
note "done"
