// torch ops around the generated CPU kernels (generated/<Name>/<Name>_cpu.cpp): torch.ops.algebranets_cpu.*
//
//   dense(algebra, weight, x, bias?, variant=-1) -> y     weight (out, in, d), x (B, in, d) -> (B, out, d)
//   bsr(algebra, crow, col, values, x, bias?, variant=-1) -> y
//                                                         block-CSR: crow (out+1,) int64, col (nnz,) int32/int64,
//                                                         values (nnz, d); x (B, in, d) -> (B, out, d)
//
//   learned(weight, structure, x, bias?) -> y             a layer over a learned algebra: weight (O, I, d),
//                                                         structure (d, d, d), x (N, I*d) -> (N, O*d)
//                                                         (learned.cpp: the learned layers' inference kernel)
//   pack(algebra, weight) -> packed                       weight (out, in, d) -> (groups, blocks, rows, d, lanes)
//   unpack(algebra, packed, out, in) -> weight            the inverse
//   planar(algebra, packed, x, bias?, out, in) -> y       x (B, in*d) -> (B, out*d), the packed weight's kernels
//
// y[b, o] = sum_i w[o, i] * x[b, i] + bias[o], the weight the left factor.  The kernels of each algebra live in
// their own shared library; runtime.kernels.cpu loads it and registers its entry points here under the algebra's key
// (`algebranets_cpu_register`).  `prep` runs over the input elements and `rows` over the output rows, both with
// at::parallel_for, so the thread count is torch's (torch.set_num_threads).  Written against the C ABI version
// below, which the generated code reports through <Name>_cpu_abi().
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

constexpr int kAbi = 2;
typedef long long i64;

template <typename T>
struct Entry {
  int (*variant)(int sparse, i64 batch, int requested);
  i64 (*work)(int sparse, int variant, i64 batch, i64 in);
  void (*prep)(int sparse, int variant, const T* x, i64 sb, i64 si, i64 sj, i64 batch, i64 in, T* work, i64 i0,
               i64 i1);
  i64 (*rows)(int variant, const T* w, const i64* crow, const int* col, const T* work, const T* bias, T* y,
              i64 out, i64 in, i64 batch, i64 o0, i64 o1);       // returns the column indices outside [0, in)
  i64 (*packed_size)(i64 out, i64 in, int* rows_per_group, int* lanes);
  void (*pack)(int unpack, const T* src, i64 out, i64 in, T* dst, i64 g0, i64 g1);
};

struct Kernels {
  int dim = 0;
  Entry<float> f32{};
  Entry<double> f64{};
};

std::mutex registry_mutex;
std::map<std::string, Kernels>& registry() {
  static std::map<std::string, Kernels> r;
  return r;
}

Kernels lookup(const std::string& key) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  auto it = registry().find(key);
  TORCH_CHECK(it != registry().end(), "algebranets_cpu: the kernels of algebra '", key,
              "' are not loaded in this process; runtime.kernels.cpu.load_kernels('", key, "') compiles and loads them");
  return it->second;
}

// grain sizes: a task gets at least this many weight components (rows) or activation components (prep)
constexpr i64 kRowGrain = 1 << 16;
constexpr i64 kPrepGrain = 1 << 14;

template <typename T>
at::Tensor run(const Entry<T>& k, int dim, const at::Tensor& w, const at::Tensor* crow, const at::Tensor* col,
               const at::Tensor& x, const std::optional<at::Tensor>& bias, i64 out, int64_t requested) {
  const i64 batch = x.size(0), in = x.size(1);
  const int sparse = crow != nullptr;
  at::Tensor y = at::empty({batch, out, dim}, w.options());
  if (batch == 0 || out == 0) return y;
  const int variant = k.variant(sparse, batch, (int)requested);
  TORCH_CHECK(variant >= 0, "algebranets_cpu: kernel variant ", requested, " is not available for this algebra");
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  const i64 n = k.work(sparse, variant, batch, in);
  at::Tensor work = at::empty({n > 0 ? n : 1}, w.options());
  const T* xp = x.const_data_ptr<T>();
  T* wp = work.mutable_data_ptr<T>();
  const i64 sb = x.stride(0), si = x.stride(1), sj = x.stride(2);
  const i64 per_elem = batch * dim;
  at::parallel_for(0, in, (kPrepGrain + per_elem - 1) / per_elem, [&](int64_t i0, int64_t i1) {
    k.prep(sparse, variant, xp, sb, si, sj, batch, in, wp, i0, i1);
  });
  const i64 nnz_row = sparse ? (col->numel() + out - 1) / out : in;
  const i64 per_row = (nnz_row > 0 ? nnz_row : 1) * dim * (batch < 8 ? batch : 8);
  const T* wt = w.const_data_ptr<T>();
  const i64* cr = sparse ? reinterpret_cast<const i64*>(crow->const_data_ptr<int64_t>()) : nullptr;
  const int* cl = sparse ? col->const_data_ptr<int>() : nullptr;
  const T* bp = b.defined() ? b.const_data_ptr<T>() : nullptr;
  T* yp = y.mutable_data_ptr<T>();
  std::atomic<i64> bad{0};
  at::parallel_for(0, out, (kRowGrain + per_row - 1) / per_row, [&](int64_t o0, int64_t o1) {
    bad += k.rows(variant, wt, cr, cl, wp, bp, yp, out, in, batch, o0, o1);
  });
  TORCH_CHECK(bad.load() == 0, "algebranets_cpu.bsr: ", bad.load(), " column indices lie outside [0, ", in, ")");
  return y;
}

void check_common(const Kernels& k, const at::Tensor& w, const at::Tensor& x, const std::optional<at::Tensor>& bias,
                  i64 out, const char* who) {
  const int d = k.dim;
  TORCH_CHECK(w.device().is_cpu() && x.device().is_cpu(), who, ": CPU tensors expected");
  TORCH_CHECK(w.scalar_type() == at::kFloat || w.scalar_type() == at::kDouble, who,
              ": float32 or float64 weights expected, got ", w.scalar_type());
  TORCH_CHECK(x.scalar_type() == w.scalar_type(), who, ": x is ", x.scalar_type(), " but the weights are ",
              w.scalar_type());
  TORCH_CHECK(x.dim() == 3 && x.size(2) == d, who, ": x must be (B, in, ", d, "), got ", x.sizes());
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == w.scalar_type() && bias->device().is_cpu(), who,
                ": bias must be a CPU tensor of the weights' dtype");
    TORCH_CHECK(bias->dim() == 2 && bias->size(0) == out && bias->size(1) == d, who, ": bias must be (", out, ", ",
                d, "), got ", bias->sizes());
  }
}

// The row pointers are well formed (the kernels check each column index themselves and skip and count any
// outside [0, in), so no column is read out of bounds).
void check_crow(const int64_t* crow, i64 out, i64 nnz) {
  TORCH_CHECK(crow[0] == 0 && crow[out] == nnz, "algebranets_cpu.bsr: crow must start at 0 and end at nnz = ", nnz,
              ", got ", crow[0], " and ", crow[out]);
  bool ok = true;
  for (i64 o = 0; o < out; ++o) ok &= crow[o] <= crow[o + 1];
  TORCH_CHECK(ok, "algebranets_cpu.bsr: crow must be non-decreasing");
}

// int64 column indices as the kernels' int32 ones; an index that does not fit becomes -1 (counted as outside)
at::Tensor int32_columns(const at::Tensor& col) {
  if (col.scalar_type() == at::kInt) return col.contiguous();
  const at::Tensor c = col.contiguous();
  at::Tensor out = at::empty({c.numel()}, c.options().dtype(at::kInt));
  const int64_t* src = c.const_data_ptr<int64_t>();
  int* dst = out.mutable_data_ptr<int>();
  for (i64 q = 0; q < c.numel(); ++q) dst[q] = src[q] >= 0 && src[q] <= INT_MAX ? (int)src[q] : -1;
  return out;
}

at::Tensor dense(c10::string_view algebra, const at::Tensor& weight, const at::Tensor& x,
                 const std::optional<at::Tensor>& bias, int64_t variant) {
  const Kernels k = lookup(std::string(algebra));
  TORCH_CHECK(weight.dim() == 3 && weight.size(2) == k.dim, "algebranets_cpu.dense: weight must be (out, in, ",
              k.dim, "), got ", weight.sizes());
  const i64 out = weight.size(0);
  check_common(k, weight, x, bias, out, "algebranets_cpu.dense");
  TORCH_CHECK(x.size(1) == weight.size(1), "algebranets_cpu.dense: x has ", x.size(1),
              " elements per row but the weight has in = ", weight.size(1));
  TORCH_CHECK(variant != 3, "algebranets_cpu.dense: the planar variant runs on a packed weight (algebranets_cpu.pack, "
              "then algebranets_cpu.planar)");
  const at::Tensor w = weight.contiguous();
  if (w.scalar_type() == at::kFloat) return run<float>(k.f32, k.dim, w, nullptr, nullptr, x, bias, out, variant);
  return run<double>(k.f64, k.dim, w, nullptr, nullptr, x, bias, out, variant);
}

at::Tensor bsr(c10::string_view algebra, const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values,
               const at::Tensor& x, const std::optional<at::Tensor>& bias, int64_t variant) {
  const Kernels k = lookup(std::string(algebra));
  TORCH_CHECK(crow.dim() == 1 && crow.numel() >= 1 && crow.scalar_type() == at::kLong && crow.device().is_cpu(),
              "algebranets_cpu.bsr: crow must be a 1-D int64 CPU tensor (out + 1,)");
  TORCH_CHECK(col.dim() == 1 && (col.scalar_type() == at::kInt || col.scalar_type() == at::kLong) &&
                  col.device().is_cpu(),
              "algebranets_cpu.bsr: col must be a 1-D int32 or int64 CPU tensor (nnz,)");
  TORCH_CHECK(values.dim() == 2 && values.size(1) == k.dim && values.size(0) == col.numel(),
              "algebranets_cpu.bsr: values must be (nnz, ", k.dim, ") with nnz = col.numel() = ", col.numel(),
              ", got ", values.sizes());
  const i64 out = crow.numel() - 1;
  check_common(k, values, x, bias, out, "algebranets_cpu.bsr");
  TORCH_CHECK(x.size(1) < (i64(1) << 31), "algebranets_cpu.bsr: at most 2^31 - 1 input elements");
  const at::Tensor cr = crow.contiguous();
  check_crow(cr.const_data_ptr<int64_t>(), out, col.numel());
  const at::Tensor cl = int32_columns(col);
  const at::Tensor v = values.contiguous();
  if (v.scalar_type() == at::kFloat) return run<float>(k.f32, k.dim, v, &cr, &cl, x, bias, out, variant);
  return run<double>(k.f64, k.dim, v, &cr, &cl, x, bias, out, variant);
}

// The packed (planar) layout of an (out, in) weight: (groups, blocks, rows per group, d, lanes) for dtype T
template <typename T>
std::vector<int64_t> packed_shape(const Entry<T>& k, int dim, i64 out, i64 in) {
  int rows = 0, lanes = 0;
  k.packed_size(out, in, &rows, &lanes);
  return {(out + rows - 1) / rows, (in + lanes - 1) / lanes, rows, dim, lanes};
}

template <typename T>
at::Tensor pack_run(const Entry<T>& k, int dim, const at::Tensor& src, i64 out, i64 in, bool unpack) {
  const std::vector<int64_t> shape = packed_shape(k, dim, out, in);
  at::Tensor dst = unpack ? at::empty({out, in, dim}, src.options()) : at::empty(shape, src.options());
  const T* s = src.const_data_ptr<T>();
  T* d = dst.mutable_data_ptr<T>();
  const i64 per_group = std::max<i64>(1, shape[2] * in * dim);
  at::parallel_for(0, shape[0], (kRowGrain + per_group - 1) / per_group, [&](int64_t g0, int64_t g1) {
    k.pack(unpack ? 1 : 0, s, out, in, d, g0, g1);
  });
  return dst;
}

void check_float_cpu(const at::Tensor& t, const char* who) {
  TORCH_CHECK(t.device().is_cpu() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble), who,
              ": float32 or float64 CPU tensors expected, got ", t.scalar_type(), " on ", t.device());
}

// the compact weight (out, in, d) packed for the planar variant of this process's kernels
at::Tensor pack(c10::string_view algebra, const at::Tensor& weight) {
  const Kernels k = lookup(std::string(algebra));
  check_float_cpu(weight, "algebranets_cpu.pack");
  TORCH_CHECK(weight.dim() == 3 && weight.size(2) == k.dim, "algebranets_cpu.pack: weight must be (out, in, ", k.dim,
              "), got ", weight.sizes());
  const at::Tensor w = weight.contiguous();
  if (w.scalar_type() == at::kFloat) return pack_run<float>(k.f32, k.dim, w, w.size(0), w.size(1), false);
  return pack_run<double>(k.f64, k.dim, w, w.size(0), w.size(1), false);
}

// A packed weight's layout must be this process's (another target, another algebra or sizes: refused)
void check_packed(const Kernels& k, const at::Tensor& packed, i64 out, i64 in, const char* who) {
  check_float_cpu(packed, who);
  const std::vector<int64_t> want = packed.scalar_type() == at::kFloat ? packed_shape(k.f32, k.dim, out, in)
                                                                    : packed_shape(k.f64, k.dim, out, in);
  TORCH_CHECK(packed.sizes() == at::IntArrayRef(want), who, ": the packed weight is ", packed.sizes(),
              " but these kernels pack an (", out, ", ", in, ") weight as ", at::IntArrayRef(want),
              " (packed for another target, algebra or size: pack it again)");
}

at::Tensor unpack(c10::string_view algebra, const at::Tensor& packed, int64_t out, int64_t in) {
  const Kernels k = lookup(std::string(algebra));
  check_packed(k, packed, out, in, "algebranets_cpu.unpack");
  const at::Tensor p = packed.contiguous();
  if (p.scalar_type() == at::kFloat) return pack_run<float>(k.f32, k.dim, p, out, in, true);
  return pack_run<double>(k.f64, k.dim, p, out, in, true);
}

// y (B, out*d) = the packed weight of an (out, in) layer times x (B, in*d) (+ bias) with the planar variant
at::Tensor planar(c10::string_view algebra, const at::Tensor& packed, const at::Tensor& x,
                  const std::optional<at::Tensor>& bias, int64_t out, int64_t in) {
  const Kernels k = lookup(std::string(algebra));
  TORCH_CHECK(x.dim() == 2 && x.size(1) == in * k.dim, "algebranets_cpu.planar: x must be (B, ", in * k.dim,
              ") = (B, in*d), got ", x.sizes());
  check_packed(k, packed, out, in, "algebranets_cpu.planar");
  const at::Tensor x3 = x.view({x.size(0), in, k.dim});
  check_common(k, packed, x3, bias, out, "algebranets_cpu.planar");
  const at::Tensor p = packed.contiguous();
  at::Tensor y = p.scalar_type() == at::kFloat ? run<float>(k.f32, k.dim, p, nullptr, nullptr, x3, bias, out, 3)
                                               : run<double>(k.f64, k.dim, p, nullptr, nullptr, x3, bias, out, 3);
  return y.view({x.size(0), out * k.dim});
}

template <typename T>
struct Learned {       // learned.cpp's entry points for T (registered by runtime.kernels.cpu.ops.load_learned)
  void (*skinny)(const T* w, const T* u, const T* bias, T* y, i64 O, i64 K, i64 n, i64 dk, i64 o0, i64 o1);
  void (*prep)(const T* x, const T* structure, T* u, i64 N, i64 I, i64 d, i64 i0, i64 i1);
};
std::atomic<bool> learned_loaded{false};
Learned<float> learned_f32{};
Learned<double> learned_f64{};

template <typename T>
at::Tensor learned_run(const Learned<T>& k, const at::Tensor& w, const at::Tensor& st, const at::Tensor& x,
                       const std::optional<at::Tensor>& bias) {
  const i64 O = w.size(0), I = w.size(1), d = w.size(2), N = x.size(0), K = I * d;
  at::Tensor u = at::empty({N * d, K}, w.options());            // the input combined with the structure
  at::Tensor y = at::empty({N, O * d}, w.options());
  if (O == 0 || N == 0) return y;
  const T* xp = x.const_data_ptr<T>();
  const T* tp = st.const_data_ptr<T>();
  T* up = u.mutable_data_ptr<T>();
  at::parallel_for(0, I, std::max<i64>(1, kPrepGrain / std::max<i64>(1, N * d * d)),
                   [&](i64 i0, i64 i1) { k.prep(xp, tp, up, N, I, d, i0, i1); });
  const at::Tensor b = bias ? bias->contiguous() : at::Tensor();
  const T* bp = bias ? b.const_data_ptr<T>() : nullptr;
  const T* wp = w.const_data_ptr<T>();
  T* yp = y.mutable_data_ptr<T>();
  at::parallel_for(0, O, std::max<i64>(1, kRowGrain / std::max<i64>(1, K)),   // the weight's rows, (N, O, d) out
                   [&](i64 o0, i64 o1) { k.skinny(wp, up, bp, yp, O, K, N * d, d, o0, o1); });
  return y;
}

// y (N, O*d) = the layer over a learned algebra at inference: weight (O, I, d), structure (d, d, d), x (N, I*d)
at::Tensor learned(const at::Tensor& weight, const at::Tensor& structure, const at::Tensor& x,
                   const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(learned_loaded.load(), "algebranets_cpu.learned: the kernel is not loaded in this process; "
              "runtime.kernels.cpu.learned_ready() compiles and loads it");
  TORCH_CHECK(weight.device().is_cpu() && x.device().is_cpu(), "algebranets_cpu.learned: CPU tensors only");
  TORCH_CHECK(weight.scalar_type() == x.scalar_type() &&
                  (weight.scalar_type() == at::kFloat || weight.scalar_type() == at::kDouble),
              "algebranets_cpu.learned: weight and input must both be float32 or both float64");
  TORCH_CHECK(weight.dim() == 3, "algebranets_cpu.learned: weight must be (O, I, d), got ", weight.sizes());
  const i64 O = weight.size(0), I = weight.size(1), d = weight.size(2);
  TORCH_CHECK(structure.dim() == 3 && structure.size(0) == d && structure.size(1) == d && structure.size(2) == d &&
                  structure.scalar_type() == weight.scalar_type() && structure.device().is_cpu(),
              "algebranets_cpu.learned: structure must be (", d, ", ", d, ", ", d, ") of the weight's dtype, got ",
              structure.sizes());
  TORCH_CHECK(x.dim() == 2 && x.size(1) == I * d, "algebranets_cpu.learned: x must be (N, ", I * d, "), got ",
              x.sizes());
  TORCH_CHECK(!bias || (bias->sizes() == at::IntArrayRef({O, d}) && bias->scalar_type() == weight.scalar_type() &&
                        bias->device().is_cpu()),
              "algebranets_cpu.learned: bias must be (", O, ", ", d, ") of the weight's dtype");
  const at::Tensor w = weight.contiguous(), st = structure.contiguous(), xc = x.contiguous();
  if (w.scalar_type() == at::kFloat) return learned_run<float>(learned_f32, w, st, xc, bias);
  return learned_run<double>(learned_f64, w, st, xc, bias);
}

}  // namespace

// Register learned.cpp's entry points built for this machine's target: fns = {skinny, prep} for f32, then f64.
// Returns 0, or -1 for another ABI.
extern "C" int algebranets_cpu_register_learned(int abi, void* const* fns) {
  if (abi != 2) return -1;
  learned_f32 = {reinterpret_cast<decltype(learned_f32.skinny)>(fns[0]),
                 reinterpret_cast<decltype(learned_f32.prep)>(fns[1])};
  learned_f64 = {reinterpret_cast<decltype(learned_f64.skinny)>(fns[2]),
                 reinterpret_cast<decltype(learned_f64.prep)>(fns[3])};
  learned_loaded.store(true);
  return 0;
}

// Register the entry points of one algebra's kernel library under `key`: fns = {variant, work, prep, rows,
// packed_size, pack} for
// f32, then the same for f64.  Returns 0, or -1 when the library was generated for another ABI.
extern "C" int algebranets_cpu_register(const char* key, int abi, int dim, void* const* fns) {
  if (abi != kAbi) return -1;
  Kernels k;
  k.dim = dim;
  k.f32 = {reinterpret_cast<decltype(k.f32.variant)>(fns[0]), reinterpret_cast<decltype(k.f32.work)>(fns[1]),
           reinterpret_cast<decltype(k.f32.prep)>(fns[2]), reinterpret_cast<decltype(k.f32.rows)>(fns[3]),
           reinterpret_cast<decltype(k.f32.packed_size)>(fns[4]), reinterpret_cast<decltype(k.f32.pack)>(fns[5])};
  k.f64 = {reinterpret_cast<decltype(k.f64.variant)>(fns[6]), reinterpret_cast<decltype(k.f64.work)>(fns[7]),
           reinterpret_cast<decltype(k.f64.prep)>(fns[8]), reinterpret_cast<decltype(k.f64.rows)>(fns[9]),
           reinterpret_cast<decltype(k.f64.packed_size)>(fns[10]), reinterpret_cast<decltype(k.f64.pack)>(fns[11])};
  std::lock_guard<std::mutex> lock(registry_mutex);
  registry()[key] = k;
  return 0;
}

extern "C" int algebranets_cpu_abi() { return kAbi; }

TORCH_LIBRARY(algebranets_cpu, m) {
  m.set_python_module("runtime.kernels.cpu.ops");
  m.def("dense(str algebra, Tensor weight, Tensor x, Tensor? bias, int variant=-1) -> Tensor");
  m.def("bsr(str algebra, Tensor crow, Tensor col, Tensor values, Tensor x, Tensor? bias, int variant=-1) -> Tensor");
  m.def("learned(Tensor weight, Tensor structure, Tensor x, Tensor? bias) -> Tensor");
  m.def("pack(str algebra, Tensor weight) -> Tensor");
  m.def("unpack(str algebra, Tensor packed, int out, int in_) -> Tensor");
  m.def("planar(str algebra, Tensor packed, Tensor x, Tensor? bias, int out, int in_) -> Tensor");
}

TORCH_LIBRARY_IMPL(algebranets_cpu, CPU, m) {
  m.impl("dense", &dense);
  m.impl("bsr", &bsr);
  m.impl("learned", &learned);
  m.impl("pack", &pack);
  m.impl("unpack", &unpack);
  m.impl("planar", &planar);
}
