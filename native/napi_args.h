// napi_args.h — how addon.cc reads a call's JS arguments: device pointers (BigInt, a number, or
// null/undefined for "absent"), numbers, arrays, typed arrays and attnPrep's segments, and how it
// answers (undefined, a BigInt pointer, a number, or a JS Error naming the call). Any failure is
// thrown once and makes `bad` true; a wrapper checks `bad` before it calls its launcher.
#pragma once
#define NAPI_VERSION 8
#include <node_api.h>

#include <stdint.h>

#include <string>
#include <vector>

#include "fluxserve_cuda.h"

namespace fxs_napi {

struct Args {
  napi_env env;
  napi_value v[32];
  size_t n = 32;
  const char* fn;
  bool bad = false;
  Args(napi_env e, napi_callback_info info, const char* name) : env(e), fn(name) {
    napi_get_cb_info(e, info, &n, v, nullptr, nullptr);
  }
  // Throws (once) a JS Error naming the call; returns nullptr, the wrapper's result then.
  napi_value fail(const std::string& msg) {
    if (!bad) napi_throw_error(env, nullptr, (std::string("fluxserve_cuda.") + fn + ": " + msg).c_str());
    bad = true;
    return nullptr;
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
  // Results handed back to JS: a device pointer as a BigInt, a number.
  napi_value pointer(void* p) {
    napi_value r;
    napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)p, &r);
    return r;
  }
  napi_value number(double d) {
    napi_value r;
    napi_create_double(env, d, &r);
    return r;
  }
  // attnPrep's segments at positions i and i + 1: each [x, L, C, col, qs, qsDt, ks, ksDt] or
  // null; fills seg with the present ones and returns how many.
  int attnSegs(size_t i, FxsAttnSeg seg[2]) {
    int nseg = 0;
    for (size_t s = 0; s < 2; s++) {
      if (isNullish(i + s)) continue;
      std::vector<napi_value> el = arrayItems(i + s, 8);
      if (bad) return 0;
      FxsAttnSeg& g = seg[nseg++];
      g.x = ptrOf(el[0]); g.L = i64Of(el[1]); g.C = i64Of(el[2]); g.col = i64Of(el[3]);
      g.qs = ptrOf(el[4]); g.qs_dtype = (int)i64Of(el[5]); g.ks = ptrOf(el[6]); g.ks_dtype = (int)i64Of(el[7]);
    }
    return nseg;
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

}  // namespace fxs_napi
