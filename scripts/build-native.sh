#!/usr/bin/env bash
# Builds the CUDA backend's Node-API addon: native/*.cu + native/addon.cc -> build/fluxserve_cuda.node
#
#   npm run build:native                      # from the repo root
#   CUBLASLT_DIR=/path/to/cublas npm run build:native
#
# Without nvcc it prints a note and exits 0 (the CPU backend is used); it is deliberately not part
# of `npm ci`/`prepare`. cuBLASLt is used when its header and library are found in $CUBLASLT_DIR,
# the CUDA toolkit, or the Python `nvidia.cublas` package (pip's nvidia-cublas); otherwise the
# portable tiled GEMM is compiled alone. Env: NVCC, CUDA_ARCHS (default "80 89 90a"),
# FXS_NO_CUBLASLT=1 (force the fallback), NODE_INCLUDE_DIR, JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."

NVCC="${NVCC:-}"
if [ -z "$NVCC" ]; then
  if command -v nvcc >/dev/null 2>&1; then NVCC=$(command -v nvcc)
  elif [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then NVCC="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
  fi
fi
if [ -z "$NVCC" ]; then
  echo "CUDA toolkit not found; the CPU backend will be used"
  exit 0
fi
CUDA_ROOT=$(cd "$(dirname "$NVCC")/.." && pwd)

# Node's headers (node_api.h ships with node as include/node/node_api.h)
NODE_INC="${NODE_INCLUDE_DIR:-}"
if [ -z "$NODE_INC" ]; then
  NODE_BIN=$(node -p "process.execPath" 2>/dev/null || true)
  for d in "${NODE_BIN:+$(dirname "$(dirname "$NODE_BIN")")/include/node}" \
           "$(npm config get nodedir 2>/dev/null || true)/include/node" \
           /usr/include/node /usr/local/include/node; do
    if [ -n "$d" ] && [ -f "$d/node_api.h" ]; then NODE_INC="$d"; break; fi
  done
fi
if [ -z "$NODE_INC" ] || [ ! -f "$NODE_INC/node_api.h" ]; then
  echo "build-native: node_api.h not found (set NODE_INCLUDE_DIR to Node's include/node folder)" >&2
  exit 1
fi

# cuBLASLt: a folder holding include/cublasLt.h and lib/libcublasLt.so*
LT_INC="" LT_LIB=""
find_lt() {
  local base="$1"
  [ -n "$base" ] || return 1
  local inc lib
  for inc in "$base/include" "$base"; do [ -f "$inc/cublasLt.h" ] && break; inc=""; done
  [ -n "$inc" ] || return 1
  for lib in "$base/lib" "$base/lib64" "$base/lib/x86_64-linux-gnu" "$base"; do
    ls "$lib"/libcublasLt.so* >/dev/null 2>&1 && break; lib=""
  done
  [ -n "$lib" ] || return 1
  LT_INC="$inc" LT_LIB="$lib"
}
if [ "${FXS_NO_CUBLASLT:-0}" != 1 ]; then
  PY_CUBLAS=$( (python3 -c "import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))" 2>/dev/null) || true)
  if [ -z "$PY_CUBLAS" ]; then
    PY_CUBLAS=$(ls -d /usr/lib/python3*/site-packages/nvidia/cublas /usr/local/lib/python3*/*-packages/nvidia/cublas \
      /opt/*/.venv/lib/python3*/site-packages/nvidia/cublas 2>/dev/null | head -1 || true)
  fi
  # nvidia/cublas may also be a namespace package without __file__; try site-packages paths then
  if [ -z "$PY_CUBLAS" ]; then
    PY_CUBLAS=$( (python3 -c "import nvidia.cublas as m; print(list(m.__path__)[0])" 2>/dev/null) || true)
  fi
  find_lt "${CUBLASLT_DIR:-}" || find_lt "$CUDA_ROOT" || find_lt "$CUDA_ROOT/targets/x86_64-linux" || find_lt "$PY_CUBLAS" || true
fi

ARCHS="${CUDA_ARCHS:-80 89 90a}"
GENCODE=()
for a in $ARCHS; do GENCODE+=(-gencode "arch=compute_${a},code=sm_${a}"); done
GENCODE+=(-gencode "arch=compute_90,code=compute_90")  # PTX for GPUs newer than the list

OUT=build
OBJ=$OUT/obj
mkdir -p "$OBJ"
DEFS=(-DNODE_GYP_MODULE_NAME=fluxserve_cuda)
LINK_LT=()
if [ -n "$LT_INC" ]; then
  DEFS+=(-DFLUXSERVE_HAVE_CUBLASLT -I"$LT_INC")
  LT_SO=$(ls "$LT_LIB"/libcublasLt.so* | sort | head -1)
  # link against the versioned file itself when there is no unversioned libcublasLt.so (pip wheels)
  # (nvcc itself refuses a file named *.so.13 as an input: hand it to the host linker)
  if [ -e "$LT_LIB/libcublasLt.so" ]; then LINK_LT=(-L"$LT_LIB" -lcublasLt); else LINK_LT=(-Xlinker "$LT_SO"); fi
  LINK_LT+=(-Xlinker -rpath -Xlinker "$LT_LIB")
  echo "build-native: cuBLASLt from $LT_LIB"
else
  echo "build-native: cuBLASLt not found; building the portable tiled GEMM only"
fi

NVFLAGS=(-std=c++17 -O3 -Xcompiler -fPIC -Xcompiler -fvisibility=hidden --expt-relaxed-constexpr "${GENCODE[@]}" "${DEFS[@]}")
echo "build-native: $("$NVCC" --version | tail -1) ; archs: $ARCHS ; node headers: $NODE_INC"

JOBS="${JOBS:-$(nproc 2>/dev/null || echo 4)}"
pids=()
fail=0
objs=()  # exactly what this build compiles (a stale object of a removed file must not be linked)
for f in native/*.cu; do
  o="$OBJ/$(basename "${f%.cu}").o"
  objs+=("$o")
  "$NVCC" "${NVFLAGS[@]}" -c "$f" -o "$o" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then wait "${pids[0]}" || fail=1; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ $fail = 0 ] || { echo "build-native: a kernel file failed to compile" >&2; exit 1; }

"$NVCC" -std=c++17 -O2 -Xcompiler -fPIC -Xcompiler -fvisibility=hidden "${DEFS[@]}" -I"$NODE_INC" -c native/addon.cc -o "$OBJ/addon.o"
# -cudart static: the addon needs no libcudart.so at run time, only the driver (libcuda.so)
"$NVCC" -shared -cudart static "${GENCODE[@]}" -o "$OUT/fluxserve_cuda.node" "${objs[@]}" "$OBJ/addon.o" "${LINK_LT[@]}" -lpthread -ldl -lrt
echo "build-native: wrote $OUT/fluxserve_cuda.node ($( [ -n "$LT_INC" ] && echo with || echo without ) cuBLASLt)"
