// addon.cc — the Node-API layer of the CUDA backend. It only moves pointers and shapes: it reads
// JS arguments (napi_args.h), calls one launcher of fluxserve_cuda.h chosen by dtype code or
// element width, and turns a non-zero return into a JS Error naming the call and the CUDA error.
// No math here. The wrappers of the op table (src/tensor/cuda/op-table.ts) are generated into
// ops.gen.inc; the calls written here are those that answer with objects, strings or typed arrays.
// Why Node-API (C, not node-addon-api): ABI-stable across Node versions and no extra dependency.
#include "napi_args.h"

#include <stdio.h>
#include <string.h>

namespace {

using fxs_napi::Args;

struct OpExport {
  const char* name;
  napi_callback fn;
};

#include "ops.gen.inc"

void setNumber(napi_env env, napi_value o, const char* key, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  napi_set_named_property(env, o, key, v);
}

// init(device?) -> { name, deviceCount, ccMajor, ccMinor, totalMem, cublasLt }
napi_value Init(napi_env env, napi_callback_info info) {
  Args a(env, info, "init");
  int count = 0;
  int rc = fxs_device_count(&count);
  if (rc != 0 || count == 0) {
    return a.fail(rc != 0 ? std::string("no usable CUDA device: ") + fxs_error_string(rc) : "no CUDA device found");
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
  setNumber(env, o, "deviceCount", count);
  setNumber(env, o, "ccMajor", maj);
  setNumber(env, o, "ccMinor", min);
  setNumber(env, o, "totalMem", (double)total);
  setNumber(env, o, "cublasLt", fxs_has_cublaslt());
  return o;
}

// attentionKernel(): runs the wgmma attention self-check if it has not run yet (one host wait) and
// says whether the Hopper kernel is in use, and why not
napi_value AttentionKernel(napi_env env, napi_callback_info) {
  napi_value s;
  napi_create_string_utf8(env, fxs_attention_wgmma_check(), NAPI_AUTO_LENGTH, &s);
  return s;
}

napi_value MemStats(napi_env env, napi_callback_info) {
  size_t al = 0, re = 0, pk = 0;
  fxs_mem_stats(&al, &re, &pk);
  napi_value o;
  napi_create_object(env, &o);
  setNumber(env, o, "allocated", (double)al);
  setNumber(env, o, "reserved", (double)re);
  setNumber(env, o, "peakAllocated", (double)pk);
  setNumber(env, o, "hostWaits", (double)fxs_host_waits());
  setNumber(env, o, "markWaits", (double)fxs_mark_waits());
  setNumber(env, o, "graphLaunches", (double)fxs_graph_launches());
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

template <size_t N>
void exportAll(napi_env env, napi_value exports, const OpExport (&list)[N]) {
  for (const OpExport& f : list) {
    napi_value v;
    napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.fn, nullptr, &v);
    napi_set_named_property(env, exports, f.name, v);
  }
}

napi_value ModuleInit(napi_env env, napi_value exports) {
  const OpExport own[] = {
      {"init", Init}, {"attentionKernel", AttentionKernel}, {"memStats", MemStats}, {"resetPeak", ResetPeak},
      {"upload", Upload}, {"download", Download},
  };
  exportAll(env, exports, own);
  exportAll(env, exports, kTableOps);
  napi_value ver;
  napi_create_uint32(env, FXS_ADDON_ABI_VERSION, &ver);
  napi_set_named_property(env, exports, "abiVersion", ver);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, ModuleInit)
