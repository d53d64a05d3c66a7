// addon.cc — the Node-API layer of the CUDA backend. It only moves pointers and shapes: it reads
// JS arguments (device pointers as BigInt, shapes as numbers/arrays, typed arrays for host
// transfers), calls one launcher of fluxserve_cuda.h chosen by dtype code or element width, and
// turns a non-zero return into a JS Error naming the call and the CUDA error. No math here.
// Why Node-API (C, not node-addon-api): ABI-stable across Node versions and no extra dependency.
#define NAPI_VERSION 8
#include <node_api.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>

#include "fluxserve_cuda.h"

namespace {

struct Args {
  napi_env env;
  napi_value v[32];
  size_t n = 32;
  const char* fn;
  bool bad = false;
  Args(napi_env e, napi_callback_info info, const char* name) : env(e), fn(name) {
    napi_get_cb_info(e, info, &n, v, nullptr, nullptr);
  }
  void fail(const std::string& msg) {
    if (!bad) napi_throw_error(env, nullptr, (std::string("fluxserve_cuda.") + fn + ": " + msg).c_str());
    bad = true;
  }
  napi_value at(size_t i) {
    if (i >= n) { fail("missing argument " + std::to_string(i)); return nullptr; }
    return v[i];
  }
  // A device pointer: BigInt, a number, or null/undefined/0 for "absent".
  void* ptr(size_t i) { return ptrOf(at(i)); }
  void* ptrOf(napi_value x) {
    if (!x) return nullptr;
    napi_valuetype t;
    napi_typeof(env, x, &t);
    if (t == napi_bigint) {
      uint64_t u = 0; bool lossless = true;
      napi_get_value_bigint_uint64(env, x, &u, &lossless);
      return (void*)(uintptr_t)u;
    }
    if (t == napi_number) { int64_t u = 0; napi_get_value_int64(env, x, &u); return (void*)(uintptr_t)u; }
    if (t == napi_null || t == napi_undefined) return nullptr;
    fail("an argument is not a pointer");
    return nullptr;
  }
  int64_t i64(size_t i) { return i64Of(at(i)); }
  int64_t i64Of(napi_value x) {
    int64_t r = 0;
    if (x && napi_get_value_int64(env, x, &r) != napi_ok) fail("an argument is not a number");
    return r;
  }
  bool isNullish(size_t i) {
    if (i >= n) return true;
    napi_valuetype t;
    napi_typeof(env, v[i], &t);
    return t == napi_null || t == napi_undefined;
  }
  // The `count` elements of an array argument (a shorter array is an error).
  std::vector<napi_value> arrayItems(size_t i, uint32_t count) {
    std::vector<napi_value> out;
    napi_value x = at(i);
    uint32_t len = 0;
    if (!x || napi_get_array_length(env, x, &len) != napi_ok || len < count) {
      fail("argument " + std::to_string(i) + " is not an array of " + std::to_string(count));
      return out;
    }
    for (uint32_t k = 0; k < count; k++) {
      napi_value e;
      napi_get_element(env, x, k, &e);
      out.push_back(e);
    }
    return out;
  }
  double f64(size_t i) {
    napi_value x = at(i);
    double r = 0;
    if (x && napi_get_value_double(env, x, &r) != napi_ok) fail("argument " + std::to_string(i) + " is not a number");
    return r;
  }
  std::vector<int64_t> arr(size_t i) {
    std::vector<int64_t> out;
    napi_value x = at(i);
    uint32_t len = 0;
    if (!x || napi_get_array_length(env, x, &len) != napi_ok) { fail("argument " + std::to_string(i) + " is not an array"); return out; }
    for (uint32_t k = 0; k < len; k++) {
      napi_value e; int64_t r = 0;
      napi_get_element(env, x, k, &e);
      napi_get_value_int64(env, e, &r);
      out.push_back(r);
    }
    return out;
  }
  // A typed array's bytes.
  void* bytes(size_t i, size_t* len) {
    napi_value x = at(i);
    bool is = false;
    if (x) napi_is_typedarray(env, x, &is);
    if (!is) { fail("argument " + std::to_string(i) + " is not a typed array"); *len = 0; return nullptr; }
    napi_typedarray_type tt; size_t n_el = 0; void* data = nullptr; napi_value ab; size_t off = 0;
    napi_get_typedarray_info(env, x, &tt, &n_el, &data, &ab, &off);
    size_t es = (tt == napi_int8_array || tt == napi_uint8_array || tt == napi_uint8_clamped_array) ? 1
              : (tt == napi_int16_array || tt == napi_uint16_array) ? 2
              : (tt == napi_float64_array || tt == napi_bigint64_array || tt == napi_biguint64_array) ? 8 : 4;
    *len = n_el * es;
    return data;
  }
  // The launcher's return code: 0 ok, else a cudaError_t.
  napi_value done(int rc) {
    if (bad) return nullptr;
    if (rc != 0) { fail(std::string(fxs_error_string(rc)) + " (CUDA error " + std::to_string(rc) + ")"); return nullptr; }
    napi_value u; napi_get_undefined(env, &u);
    return u;
  }
  int dt(size_t i, bool allow_i32 = false) {
    int64_t d = i64(i);
    if (d < 0 || d > (allow_i32 ? 4 : 3)) { fail("bad dtype code " + std::to_string(d)); return 0; }
    return (int)d;
  }
  int width(size_t i) {  // element bytes 4/2/1 -> table index 0/1/2
    int64_t w = i64(i);
    if (w == 4) return 0;
    if (w == 2) return 1;
    if (w == 1) return 2;
    fail("bad element width " + std::to_string(w));
    return 0;
  }
};

napi_value num(napi_env env, double d) { napi_value r; napi_create_double(env, d, &r); return r; }

#define TABLE4(fn) {fn##_f32, fn##_bf16, fn##_f16, fn##_f8e4m3}
#define TABLE_W(fn) {fn##_x32, fn##_x16, fn##_x8}

// ---- device and memory -------------------------------------------------------------------------
napi_value Init(napi_env env, napi_callback_info info) {
  Args a(env, info, "init");
  int count = 0;
  int rc = fxs_device_count(&count);
  if (rc != 0 || count == 0) {
    a.fail(rc != 0 ? std::string("no usable CUDA device: ") + fxs_error_string(rc) : "no CUDA device found");
    return nullptr;
  }
  int dev = a.n > 0 ? (int)a.i64(0) : 0;
  rc = fxs_init(dev);
  if (rc) return a.done(rc);
  char name[256]; int maj = 0, min = 0; size_t total = 0;
  rc = fxs_device_info(name, sizeof name, &maj, &min, &total);
  if (rc) return a.done(rc);
  napi_value o, s;
  napi_create_object(env, &o);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, o, "name", s);
  napi_set_named_property(env, o, "deviceCount", num(env, count));
  napi_set_named_property(env, o, "ccMajor", num(env, maj));
  napi_set_named_property(env, o, "ccMinor", num(env, min));
  napi_set_named_property(env, o, "totalMem", num(env, (double)total));
  napi_set_named_property(env, o, "cublasLt", num(env, fxs_has_cublaslt()));
  return o;
}

// attentionKernel(): runs the wgmma attention self-check if it has not run yet (one host wait) and
// says whether the Hopper kernel is in use, and why not
napi_value AttentionKernel(napi_env env, napi_callback_info) {
  napi_value s;
  napi_create_string_utf8(env, fxs_attention_wgmma_check(), NAPI_AUTO_LENGTH, &s);
  return s;
}

// mark() -> BigInt; markWait(mark, release?)
napi_value Mark(napi_env env, napi_callback_info info) {
  Args a(env, info, "mark");
  void* m = nullptr;
  int rc = fxs_mark(&m);
  if (rc) return a.done(rc);
  napi_value r;
  napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)m, &r);
  return r;
}
napi_value MarkWait(napi_env env, napi_callback_info info) {
  Args a(env, info, "markWait");
  void* m = a.ptr(0);
  int release = a.n > 1 ? (int)a.i64(1) : 0;
  if (a.bad) return nullptr;
  return a.done(fxs_mark_wait(m, release));
}

// graphBegin(); graphEnd(abort) -> BigInt (0n when aborted); graphLaunch(g); graphDestroy(g)
napi_value GraphBegin(napi_env env, napi_callback_info info) { Args a(env, info, "graphBegin"); return a.done(fxs_graph_begin()); }
napi_value GraphEnd(napi_env env, napi_callback_info info) {
  Args a(env, info, "graphEnd");
  int abort = (int)a.i64(0);
  if (a.bad) return nullptr;
  void* g = nullptr;
  int rc = fxs_graph_end(abort, &g);
  if (rc) return a.done(rc);
  napi_value r;
  napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)g, &r);
  return r;
}
napi_value GraphLaunch(napi_env env, napi_callback_info info) { Args a(env, info, "graphLaunch"); void* g = a.ptr(0); return a.done(a.bad ? 0 : fxs_graph_launch(g)); }
napi_value GraphDestroy(napi_env env, napi_callback_info info) { Args a(env, info, "graphDestroy"); void* g = a.ptr(0); return a.done(a.bad ? 0 : fxs_graph_destroy(g)); }

napi_value Malloc(napi_env env, napi_callback_info info) {
  Args a(env, info, "malloc");
  int64_t bytes = a.i64(0);
  if (a.bad) return nullptr;
  void* p = nullptr;
  int rc = fxs_malloc((size_t)bytes, &p);
  if (rc) return a.done(rc);
  napi_value r;
  napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)p, &r);
  return r;
}
napi_value Free(napi_env env, napi_callback_info info) { Args a(env, info, "free"); void* p = a.ptr(0); return a.done(a.bad ? 0 : fxs_free(p)); }
napi_value EmptyCache(napi_env env, napi_callback_info info) { Args a(env, info, "emptyCache"); return a.done(fxs_empty_cache()); }
napi_value Synchronize(napi_env env, napi_callback_info info) { Args a(env, info, "synchronize"); return a.done(fxs_synchronize()); }
napi_value MemStats(napi_env env, napi_callback_info info) {
  size_t al = 0, re = 0, pk = 0;
  fxs_mem_stats(&al, &re, &pk);
  napi_value o;
  napi_create_object(env, &o);
  napi_set_named_property(env, o, "allocated", num(env, (double)al));
  napi_set_named_property(env, o, "reserved", num(env, (double)re));
  napi_set_named_property(env, o, "peakAllocated", num(env, (double)pk));
  napi_set_named_property(env, o, "hostWaits", num(env, (double)fxs_host_waits()));
  napi_set_named_property(env, o, "markWaits", num(env, (double)fxs_mark_waits()));
  napi_set_named_property(env, o, "graphLaunches", num(env, (double)fxs_graph_launches()));
  return o;
}
napi_value ResetPeak(napi_env env, napi_callback_info) { fxs_reset_peak(); napi_value u; napi_get_undefined(env, &u); return u; }

// upload(ptr, byteOffset, typedArray) / download(ptr, byteOffset, typedArray)
napi_value Upload(napi_env env, napi_callback_info info) {
  Args a(env, info, "upload");
  char* p = (char*)a.ptr(0); int64_t off = a.i64(1); size_t len = 0; void* h = a.bytes(2, &len);
  if (a.bad) return nullptr;
  return a.done(fxs_upload(p + off, h, len));
}
napi_value Download(napi_env env, napi_callback_info info) {
  Args a(env, info, "download");
  char* p = (char*)a.ptr(0); int64_t off = a.i64(1); size_t len = 0; void* h = a.bytes(2, &len);
  if (a.bad) return nullptr;
  return a.done(fxs_download(h, p + off, len));
}
napi_value Memset0(napi_env env, napi_callback_info info) {
  Args a(env, info, "memset0");
  void* p = a.ptr(0); int64_t n = a.i64(1);
  if (a.bad) return nullptr;
  return a.done(fxs_memset0(p, (size_t)n));
}
napi_value CopyBytes(napi_env env, napi_callback_info info) {
  Args a(env, info, "copyBytes");
  void* d = a.ptr(0); void* s = a.ptr(1); int64_t n = a.i64(2);
  if (a.bad) return nullptr;
  return a.done(fxs_copy_bytes(d, s, (size_t)n));
}

// ---- ops: argument order mirrors the launcher, with the main dtype code first ------------------
napi_value Gemm(napi_env env, napi_callback_info info) {
  Args a(env, info, "gemm");
  static decltype(&fxs_gemm_f32) T[] = TABLE4(fxs_gemm);
  int d = a.dt(0);
  auto rc = T[d](a.ptr(1), a.ptr(2), a.dt(3), a.ptr(4), a.i64(5), a.i64(6), a.i64(7), a.i64(8), (int)a.i64(9),
                 a.i64(10), a.i64(11), a.i64(12), a.ptr(13), a.dt(14), (float)a.f64(15), (int)a.i64(16));
  return a.done(rc);
}
// attnPrep(dt, [x0, L0, C0, col0, qs0, qsDt0, ks0, ksDt0], [..segment 1 or empty..], pe, peBatched, q, k, v, B, H, Ltot, Dh, eps)
napi_value AttnPrep(napi_env env, napi_callback_info info) {
  Args a(env, info, "attnPrep");
  static decltype(&fxs_attn_prep_f32) T[] = TABLE4(fxs_attn_prep);
  int d = a.dt(0);
  FxsAttnSeg seg[2] = {};
  int nseg = 0;
  for (int s = 0; s < 2; s++) {
    if (a.isNullish(1 + s)) continue;
    std::vector<napi_value> el = a.arrayItems(1 + s, 8);
    if (a.bad) return nullptr;
    FxsAttnSeg& g = seg[nseg++];
    g.x = a.ptrOf(el[0]); g.L = a.i64Of(el[1]); g.C = a.i64Of(el[2]); g.col = a.i64Of(el[3]);
    g.qs = a.ptrOf(el[4]); g.qs_dtype = (int)a.i64Of(el[5]); g.ks = a.ptrOf(el[6]); g.ks_dtype = (int)a.i64Of(el[7]);
  }
  if (a.bad) return nullptr;
  auto rc = T[d](seg[0], seg[1], nseg, (const float*)a.ptr(3), (int)a.i64(4), a.ptr(5), a.ptr(6), a.ptr(7), a.i64(8), a.i64(9),
                 a.i64(10), a.i64(11), (float)a.f64(12));
  return a.done(rc);
}
napi_value GeluConcat(napi_env env, napi_callback_info info) {
  Args a(env, info, "geluConcat");
  static decltype(&fxs_gelu_concat_f32) T[] = TABLE4(fxs_gelu_concat);
  int d = a.dt(0);
  if (a.bad) return nullptr;
  auto rc = T[d](a.ptr(1), a.ptr(2), a.ptr(3), a.i64(4), a.i64(5), a.i64(6), a.i64(7), a.i64(8), a.ptr(9));
  return a.done(rc);
}
napi_value AbsMax(napi_env env, napi_callback_info info) {
  Args a(env, info, "absMax");
  static decltype(&fxs_absmax_f32) T[] = TABLE4(fxs_absmax);
  int d = a.dt(0);
  if (a.bad) return nullptr;
  float m = 0.f;
  int rc = T[d](a.ptr(1), a.i64(2), &m);
  if (rc) return a.done(rc);
  return num(env, (double)m);
}
napi_value LinearFp8In(napi_env env, napi_callback_info info) {
  Args a(env, info, "linearFp8In");
  static decltype(&fxs_linear_fp8in_f32) T[] = TABLE4(fxs_linear_fp8in);
  int d = a.dt(0);
  if (a.bad) return nullptr;
  auto rc = T[d](a.ptr(1), a.ptr(2), a.ptr(3), a.i64(4), a.i64(5), a.i64(6), a.ptr(7), a.dt(8), (float)a.f64(9),
                 (int)a.i64(10), a.ptr(11));
  return a.done(rc);
}
napi_value Attention(napi_env env, napi_callback_info info) {
  Args a(env, info, "attention");
  static decltype(&fxs_attention_f32) T[] = TABLE4(fxs_attention);
  int d = a.dt(0);
  if (a.bad) return nullptr;
  auto rc = T[d](a.ptr(1), a.ptr(2), a.ptr(3), a.ptr(4), a.dt(5), a.i64(6), a.i64(7), a.ptr(8), a.i64(9), a.i64(10),
                 a.i64(11), a.i64(12), a.i64(13), a.i64(14), (float)a.f64(15), (int)a.i64(16));
  return a.done(rc);
}
napi_value LayerNorm(napi_env env, napi_callback_info info) {
  Args a(env, info, "layerNorm");
  static decltype(&fxs_layer_norm_f32) T[] = TABLE4(fxs_layer_norm);
  int d = a.dt(0);
  auto rc = T[d](a.ptr(1), a.ptr(2), a.dt(3), a.ptr(4), a.dt(5), a.ptr(6), a.i64(7), a.i64(8), (float)a.f64(9));
  return a.done(rc);
}
napi_value RmsNorm(napi_env env, napi_callback_info info) {
  Args a(env, info, "rmsNorm");
  static decltype(&fxs_rms_norm_f32) T[] = TABLE4(fxs_rms_norm);
  int d = a.dt(0);
  auto rc = T[d](a.ptr(1), a.ptr(2), a.dt(3), a.ptr(4), a.i64(5), a.i64(6), (float)a.f64(7));
  return a.done(rc);
}
napi_value GroupNorm(napi_env env, napi_callback_info info) {
  Args a(env, info, "groupNorm");
  static decltype(&fxs_group_norm_f32) T[] = TABLE4(fxs_group_norm);
  int d = a.dt(0);
  auto rc = T[d](a.ptr(1), a.ptr(2), a.dt(3), a.ptr(4), a.dt(5), a.ptr(6), a.i64(7), a.i64(8), a.i64(9), a.i64(10),
                 (float)a.f64(11), (int)a.i64(12));
  return a.done(rc);
}
napi_value ModLayerNorm(napi_env env, napi_callback_info info) {
  Args a(env, info, "modulatedLayerNorm");
  static decltype(&fxs_modulated_layer_norm_f32) T[] = TABLE4(fxs_modulated_layer_norm);
  int d = a.dt(0);
  auto rc = T[d](a.ptr(1), a.ptr(2), a.dt(3), a.ptr(4), a.dt(5), a.ptr(6), a.i64(7), a.i64(8), a.i64(9), (float)a.f64(10),
                 a.ptr(11));
  return a.done(rc);
}
napi_value GatedResidual(napi_env env, napi_callback_info info) {
  Args a(env, info, "gatedResidual");
  static decltype(&fxs_gated_residual_f32) T[] = TABLE4(fxs_gated_residual);
  int d = a.dt(0);
  auto rc = T[d](a.ptr(1), a.ptr(2), a.dt(3), a.ptr(4), a.ptr(5), a.i64(6), a.i64(7), a.i64(8));
  return a.done(rc);
}
// binary(dt, op, a, b, bDt, out, dims[], strideA[], strideB[])
napi_value Binary(napi_env env, napi_callback_info info) {
  Args a(env, info, "binary");
  static decltype(&fxs_binary_f32) T[] = TABLE4(fxs_binary);
  int d = a.dt(0);
  std::vector<int64_t> dims = a.arr(6), sa = a.arr(7), sb = a.arr(8);
  if (a.bad) return nullptr;
  if (dims.size() != sa.size() || dims.size() != sb.size()) { a.fail("dims/strides lengths differ"); return nullptr; }
  auto rc = T[d]((int)a.i64(1), a.ptr(2), a.ptr(3), a.dt(4), a.ptr(5), (int)dims.size(), dims.data(), sa.data(), sb.data());
  return a.done(rc);
}
napi_value Affine(napi_env env, napi_callback_info info) {
  Args a(env, info, "affine");
  static decltype(&fxs_affine_f32) T[] = TABLE4(fxs_affine);
  int d = a.dt(0);
  return a.done(T[d](a.ptr(1), a.ptr(2), a.i64(3), a.f64(4), a.f64(5)));
}
napi_value Activation(napi_env env, napi_callback_info info) {
  Args a(env, info, "activation");
  static decltype(&fxs_activation_f32) T[] = TABLE4(fxs_activation);
  int d = a.dt(0);
  return a.done(T[d](a.ptr(1), a.ptr(2), a.i64(3), (int)a.i64(4)));
}
napi_value Softmax(napi_env env, napi_callback_info info) {
  Args a(env, info, "softmax");
  static decltype(&fxs_softmax_f32) T[] = TABLE4(fxs_softmax);
  int d = a.dt(0);
  return a.done(T[d](a.ptr(1), a.ptr(2), a.i64(3), a.i64(4)));
}
napi_value Rope(napi_env env, napi_callback_info info) {
  Args a(env, info, "rope");
  static decltype(&fxs_rope_f32) T[] = TABLE4(fxs_rope);
  int d = a.dt(0);
  return a.done(T[d](a.ptr(1), (const float*)a.ptr(2), (int)a.i64(3), a.ptr(4), a.i64(5), a.i64(6), a.i64(7), a.i64(8)));
}
napi_value Conv2d(napi_env env, napi_callback_info info) {
  Args a(env, info, "conv2d");
  static decltype(&fxs_conv2d_f32) T[] = TABLE4(fxs_conv2d);
  int d = a.dt(0);
  auto rc = T[d](a.ptr(1), a.ptr(2), a.dt(3), a.ptr(4), a.dt(5), a.ptr(6), a.i64(7), a.i64(8), a.i64(9), a.i64(10),
                 a.i64(11), a.i64(12), a.i64(13), a.i64(14), a.i64(15), a.i64(16), a.i64(17), a.i64(18), a.i64(19));
  return a.done(rc);
}
// cast(srcDt, dstDt, x, y, n)
napi_value Cast(napi_env env, napi_callback_info info) {
  Args a(env, info, "cast");
  static decltype(&fxs_cast_to_f32) T[] = {fxs_cast_to_f32, fxs_cast_to_bf16, fxs_cast_to_f16, fxs_cast_to_f8e4m3, fxs_cast_to_i32};
  int s = a.dt(0, true), d = a.dt(1, true);
  return a.done(T[d](a.ptr(2), s, a.ptr(3), a.i64(4)));
}

// ---- layout: element width (bytes) first --------------------------------------------------------
napi_value Copy2d(napi_env env, napi_callback_info info) {
  Args a(env, info, "copy2d");
  static decltype(&fxs_copy2d_x32) T[] = TABLE_W(fxs_copy2d);
  int w = a.width(0);
  return a.done(T[w](a.ptr(1), a.i64(2), a.i64(3), a.ptr(4), a.i64(5), a.i64(6), a.i64(7), a.i64(8)));
}
napi_value Permute(napi_env env, napi_callback_info info) {
  Args a(env, info, "permute");
  static decltype(&fxs_permute_x32) T[] = TABLE_W(fxs_permute);
  int w = a.width(0);
  std::vector<int64_t> dims = a.arr(4), st = a.arr(5);
  if (a.bad) return nullptr;
  if (dims.size() != st.size()) { a.fail("dims/strides lengths differ"); return nullptr; }
  return a.done(T[w](a.ptr(1), a.ptr(2), a.i64(3), (int)dims.size(), dims.data(), st.data()));
}
napi_value SplitHeads(napi_env env, napi_callback_info info) {
  Args a(env, info, "splitHeads");
  static decltype(&fxs_split_heads_x32) T[] = TABLE_W(fxs_split_heads);
  int w = a.width(0);
  return a.done(T[w](a.ptr(1), a.ptr(2), a.i64(3), a.i64(4), a.i64(5), a.i64(6), a.i64(7), a.i64(8)));
}
napi_value Upsample(napi_env env, napi_callback_info info) {
  Args a(env, info, "upsampleNearest");
  static decltype(&fxs_upsample_nearest_x32) T[] = TABLE_W(fxs_upsample_nearest);
  int w = a.width(0);
  return a.done(T[w](a.ptr(1), a.ptr(2), a.i64(3), a.i64(4), a.i64(5), a.i64(6)));
}
napi_value Embedding(napi_env env, napi_callback_info info) {
  Args a(env, info, "embedding");
  static decltype(&fxs_embedding_x32) T[] = TABLE_W(fxs_embedding);
  int w = a.width(0);
  return a.done(T[w](a.ptr(1), (const int32_t*)a.ptr(2), a.ptr(3), a.i64(4), a.i64(5)));
}

napi_value ModuleInit(napi_env env, napi_value exports) {
  struct { const char* name; napi_callback fn; } fns[] = {
      {"init", Init}, {"attentionKernel", AttentionKernel}, {"mark", Mark}, {"markWait", MarkWait}, {"graphBegin", GraphBegin}, {"graphEnd", GraphEnd}, {"graphLaunch", GraphLaunch}, {"graphDestroy", GraphDestroy}, {"malloc", Malloc}, {"free", Free}, {"emptyCache", EmptyCache}, {"synchronize", Synchronize},
      {"memStats", MemStats}, {"resetPeak", ResetPeak}, {"upload", Upload}, {"download", Download},
      {"memset0", Memset0}, {"copyBytes", CopyBytes}, {"gemm", Gemm}, {"linearFp8In", LinearFp8In}, {"absMax", AbsMax}, {"attnPrep", AttnPrep}, {"geluConcat", GeluConcat}, {"attention", Attention},
      {"layerNorm", LayerNorm}, {"rmsNorm", RmsNorm}, {"groupNorm", GroupNorm}, {"modulatedLayerNorm", ModLayerNorm},
      {"gatedResidual", GatedResidual}, {"binary", Binary}, {"affine", Affine}, {"activation", Activation},
      {"softmax", Softmax}, {"rope", Rope}, {"conv2d", Conv2d}, {"cast", Cast}, {"copy2d", Copy2d},
      {"permute", Permute}, {"splitHeads", SplitHeads}, {"upsampleNearest", Upsample}, {"embedding", Embedding},
  };
  for (auto& f : fns) {
    napi_value v;
    napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.fn, nullptr, &v);
    napi_set_named_property(env, exports, f.name, v);
  }
  napi_value ver;
  napi_create_uint32(env, 3, &ver);  // 2: linearFp8In; 3: memStats().hostWaits/markWaits/graphLaunches, attentionKernel(), mark()/markWait(), graph*(), amax pointers of modulatedLayerNorm/geluConcat/linearFp8In
  napi_set_named_property(env, exports, "abiVersion", ver);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, ModuleInit)
