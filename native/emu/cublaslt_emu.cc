// native/emu/cublaslt_emu.cc — cuBLASLt's matmul for the CPU emulator, written from the
// documentation comments of CUDA 13's cublasLt.h (see native/emu/cublasLt.h). It checks what the
// real library would refuse (inconsistent shapes, ld < rows, mismatched batch counts, fp8 operands
// not in the "TN" layout that Hopper's fp8 kernels require) and computes in fp32 in k order.
#include <stdlib.h>

#include <memory>
#include <new>

#include "common.cuh"
#include "cublasLt.h"

struct fxs_emu_lt_handle {
  int unused;
};
struct fxs_emu_lt_desc {
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
  int epi = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  int64_t bias_batch_stride = 0;
  int bias_type = -1;  // -1: same as D
  const float* a_scale = nullptr;
  const float* b_scale = nullptr;
};
struct fxs_emu_lt_layout {
  cudaDataType t;
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch = 1;
  int64_t stride = 0;
};
struct fxs_emu_lt_pref {
  size_t ws = 0;
};

namespace {

int dt_code(int t) {
  switch (t) {
    case CUDA_R_32F: return FXS_DT_F32;
    case CUDA_R_16BF: return FXS_DT_BF16;
    case CUDA_R_16F: return FXS_DT_F16;
    case CUDA_R_8F_E4M3: return FXS_DT_F8E4M3;
    default: return -1;
  }
}
size_t dt_bytes(int t) { return t == CUDA_R_32F ? 4 : t == CUDA_R_8F_E4M3 ? 1 : 2; }

void store(void* p, int dt, int64_t i, float v) {
  switch (dt) {
    case FXS_DT_F32: ((float*)p)[i] = v; break;
    case FXS_DT_BF16: ((uint16_t*)p)[i] = fxs::bf16_enc(v); break;
    case FXS_DT_F16: ((uint16_t*)p)[i] = fxs::f16_enc(v); break;
    default: ((uint8_t*)p)[i] = fxs::f8_enc(v); break;
  }
}

// Shapes of op(A) (m x k), op(B) (k x n) and D (m x n); false when they do not agree.
bool shapes(const fxs_emu_lt_desc* d, const fxs_emu_lt_layout* a, const fxs_emu_lt_layout* b, const fxs_emu_lt_layout* c,
            const fxs_emu_lt_layout* dl, uint64_t* m, uint64_t* n, uint64_t* k) {
  uint64_t am = d->ta == CUBLAS_OP_N ? a->rows : a->cols, ak = d->ta == CUBLAS_OP_N ? a->cols : a->rows;
  uint64_t bk = d->tb == CUBLAS_OP_N ? b->rows : b->cols, bn = d->tb == CUBLAS_OP_N ? b->cols : b->rows;
  if (ak != bk || dl->rows != am || dl->cols != bn) return false;
  if (c->rows != dl->rows || c->cols != dl->cols) return false;
  for (auto* l : {a, b, c, dl})
    if (l->ld < (int64_t)l->rows || l->batch < 1) return false;
  if (a->batch != dl->batch || b->batch != dl->batch || c->batch != dl->batch) return false;
  *m = am; *n = bn; *k = ak;
  return true;
}

cublasStatus_t supported(const fxs_emu_lt_desc* d, const fxs_emu_lt_layout* a, const fxs_emu_lt_layout* b,
                         const fxs_emu_lt_layout* c, const fxs_emu_lt_layout* dl) {
  uint64_t m, n, k;
  if (!shapes(d, a, b, c, dl, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
  if (dt_code(a->t) < 0 || dt_code(b->t) < 0 || dt_code(dl->t) < 0) return CUBLAS_STATUS_NOT_SUPPORTED;
  bool fp8 = a->t == CUDA_R_8F_E4M3 || b->t == CUDA_R_8F_E4M3;
  if (fp8 && !(d->ta == CUBLAS_OP_T && d->tb == CUBLAS_OP_N)) return CUBLAS_STATUS_NOT_SUPPORTED;  // fp8: TN only
  if (!fp8 && (a->t != b->t || a->t != dl->t)) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (fp8 && dl->t == CUDA_R_8F_E4M3) return CUBLAS_STATUS_NOT_SUPPORTED;  // not emulated: fp8 output
  if (!fp8 && (d->a_scale || d->b_scale)) return CUBLAS_STATUS_NOT_SUPPORTED;
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

extern "C++" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  *h = new fxs_emu_lt_handle{0};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t ct, cudaDataType_t scale) {
  if (ct != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  *d = new fxs_emu_lt_desc();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete d;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void* v, size_t n) {
  switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA: if (n != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE; d->ta = *(const cublasOperation_t*)v; break;
    case CUBLASLT_MATMUL_DESC_TRANSB: if (n != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE; d->tb = *(const cublasOperation_t*)v; break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: if (n != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE; d->epi = *(const int32_t*)v; break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: if (n != sizeof(void*)) return CUBLAS_STATUS_INVALID_VALUE; d->bias = *(const void* const*)v; break;
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE: if (n != sizeof(int64_t)) return CUBLAS_STATUS_INVALID_VALUE; d->bias_batch_stride = *(const int64_t*)v; break;
    case CUBLASLT_MATMUL_DESC_A_SCALE_POINTER: if (n != sizeof(void*)) return CUBLAS_STATUS_INVALID_VALUE; d->a_scale = *(const float* const*)v; break;
    case CUBLASLT_MATMUL_DESC_B_SCALE_POINTER: if (n != sizeof(void*)) return CUBLAS_STATUS_INVALID_VALUE; d->b_scale = *(const float* const*)v; break;
    case CUBLASLT_MATMUL_DESC_FAST_ACCUM: if (n != sizeof(int8_t)) return CUBLAS_STATUS_INVALID_VALUE; break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: if (n != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE; d->bias_type = *(const int32_t*)v; break;
    default: return CUBLAS_STATUS_INVALID_VALUE;
  }
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType t, uint64_t rows, uint64_t cols, int64_t ld) {
  *l = new fxs_emu_lt_layout{t, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a, const void* v, size_t n) {
  switch (a) {
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: if (n != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE; l->batch = *(const int32_t*)v; break;
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: if (n != sizeof(int64_t)) return CUBLAS_STATUS_INVALID_VALUE; l->stride = *(const int64_t*)v; break;
    default: return CUBLAS_STATUS_INVALID_VALUE;
  }
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  *p = new fxs_emu_lt_pref();
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t a,
                                                    const void* v, size_t n) {
  if (a != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES || n != sizeof(uint64_t)) return CUBLAS_STATUS_INVALID_VALUE;
  p->ws = *(const uint64_t*)v;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dl,
                                              cublasLtMatmulPreference_t, int req, cublasLtMatmulHeuristicResult_t res[],
                                              int* found) {
  *found = 0;
  if (req < 1) return CUBLAS_STATUS_INVALID_VALUE;
  cublasStatus_t st = supported(d, a, b, c, dl);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  memset(&res[0], 0, sizeof res[0]);
  res[0].state = CUBLAS_STATUS_SUCCESS;
  res[0].wavesCount = 1.f;
  *found = 1;
  return CUBLAS_STATUS_SUCCESS;
}

static cublasStatus_t matmul_now(cublasLtMatmulDesc_t d, const void* alpha_p, const void* A, cublasLtMatrixLayout_t la,
                                 const void* B, cublasLtMatrixLayout_t lb, const void* beta_p, const void* C,
                                 cublasLtMatrixLayout_t lc, void* D, cublasLtMatrixLayout_t ld);

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void* alpha_p, const void* A,
                              cublasLtMatrixLayout_t la, const void* B, cublasLtMatrixLayout_t lb, const void* beta_p,
                              const void* C, cublasLtMatrixLayout_t lc, void* D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t*, void*, size_t, cudaStream_t) {
  cublasStatus_t st = supported(d, la, lb, lc, ld);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  // Under stream capture the call is recorded the way cuBLASLt bakes it into the graph: the
  // descriptors and the host scalars as they are now; device pointers (scales, bias) read at replay.
  struct Baked {
    fxs_emu_lt_desc d;
    fxs_emu_lt_layout la, lb, lc, ld;
    float alpha, beta;
  };
  auto k = std::make_shared<Baked>(Baked{*d, *la, *lb, *lc, *ld, *(const float*)alpha_p, *(const float*)beta_p});
  if (fxs_emu::record_if_capturing([=]() {
        return matmul_now(&k->d, &k->alpha, A, &k->la, B, &k->lb, &k->beta, C, &k->lc, D, &k->ld) == CUBLAS_STATUS_SUCCESS
                   ? cudaSuccess
                   : cudaErrorLaunchFailure;
      }))
    return CUBLAS_STATUS_SUCCESS;
  return matmul_now(d, alpha_p, A, la, B, lb, beta_p, C, lc, D, ld);
}

static cublasStatus_t matmul_now(cublasLtMatmulDesc_t d, const void* alpha_p, const void* A, cublasLtMatrixLayout_t la,
                                 const void* B, cublasLtMatrixLayout_t lb, const void* beta_p, const void* C,
                                 cublasLtMatrixLayout_t lc, void* D, cublasLtMatrixLayout_t ld) {
  uint64_t m, n, k;
  shapes(d, la, lb, lc, ld, &m, &n, &k);
  int ea = d->epi;
  bool use_bias = ea == CUBLASLT_EPILOGUE_BIAS || ea == CUBLASLT_EPILOGUE_GELU_BIAS;
  bool gelu = ea == CUBLASLT_EPILOGUE_GELU || ea == CUBLASLT_EPILOGUE_GELU_BIAS;
  if (ea != CUBLASLT_EPILOGUE_DEFAULT && !use_bias && !gelu) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (use_bias && !d->bias) return CUBLAS_STATUS_INVALID_VALUE;
  float alpha = *(const float*)alpha_p, beta = *(const float*)beta_p;
  if (d->a_scale) alpha *= *d->a_scale;
  if (d->b_scale) alpha *= *d->b_scale;
  int adt = dt_code(la->t), bdt = dt_code(lb->t), cdt = dt_code(lc->t), ddt = dt_code(ld->t);
  int biasdt = d->bias_type < 0 ? ddt : dt_code(d->bias_type);
  for (int32_t bt = 0; bt < ld->batch; bt++) {
    const char* Ab = (const char*)A + (size_t)(bt * la->stride) * dt_bytes(la->t);
    const char* Bb = (const char*)B + (size_t)(bt * lb->stride) * dt_bytes(lb->t);
    const char* Cb = (const char*)C + (size_t)(bt * lc->stride) * dt_bytes(lc->t);
    char* Db = (char*)D + (size_t)(bt * ld->stride) * dt_bytes(ld->t);
    for (uint64_t j = 0; j < n; j++)
      for (uint64_t i = 0; i < m; i++) {
        float acc = 0.f;
        for (uint64_t p = 0; p < k; p++) {
          int64_t ia = d->ta == CUBLAS_OP_N ? (int64_t)(i + p * la->ld) : (int64_t)(p + i * la->ld);
          int64_t ib = d->tb == CUBLAS_OP_N ? (int64_t)(p + j * lb->ld) : (int64_t)(j + p * lb->ld);
          acc = fmaf(fxs::ldx(Ab, adt, ia), fxs::ldx(Bb, bdt, ib), acc);
        }
        float v = alpha * acc;
        if (beta != 0.f) v += beta * fxs::ldx(Cb, cdt, (int64_t)(i + j * lc->ld));
        if (use_bias) v += fxs::ldx(d->bias, biasdt, (int64_t)(bt * d->bias_batch_stride + i));
        if (gelu) v = fxs::act_apply(FXS_ACT_GELU_TANH, v);
        store(Db, ddt, (int64_t)(i + j * ld->ld), v);
      }
  }
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C++"
