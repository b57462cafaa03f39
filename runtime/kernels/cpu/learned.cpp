// The learned-algebra layers' inference product (runtime.methods.learned_fn), with the layer's structure tensor
// taken at run time:
//
//   prep:    u[(m, k), (i, a)] = sum_j T[a, j, k] x[m, i, j]        x (N, I, d), T (d, d, d) -> u (N*d, I*d)
//   skinny:  y[col, o] = sum_c u[col, c] w[o, c] (+ bias)          w (O, K) the compact weight, u (n, K), few n
//
// skinny streams the weight once: each pass holds R weight rows (R*K values, cache resident) and walks the
// columns NC at a time with R*NC vector accumulators over c; the vector width and R follow the target's register
// file (GCC / Clang vector extensions, no intrinsics: the same source builds for AVX-512, AVX2, NEON and SSE).
// Column j of the product is element j / dk, component j % dk of the output, stored at (j / dk)*O*dk + o*dk +
// j % dk: dk = d gives the layer's (N, O, d) layout directly, dk = 1 a plain (n, O) matrix.  Rows [o0, o1) and
// input elements [i0, i1) per call, so the torch ops (glue.cpp: `skinny`, `learned`) thread over them.
#include <cstdint>

typedef long long i64;

namespace {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
constexpr int kRows = 4;            // 32 vector registers: 16 accumulators + 4 u + 4 w
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
constexpr int kRows = 2;            // 16 registers: 8 accumulators + 4 u + 2 w
#elif defined(__aarch64__)
constexpr int kVectorBytes = 16;
constexpr int kRows = 4;            // NEON: 32 registers
#else
constexpr int kVectorBytes = 16;
constexpr int kRows = 2;
#endif
constexpr int kCols = 4;

template <typename T>
struct Vec;            // one vector register of T (GCC / Clang vector extension: portable, no intrinsics)
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(kVectorBytes)));
};
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(kVectorBytes)));
};

template <typename V, typename T>
inline V load(const T* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));     // unaligned load
  return v;
}

template <typename T, int R, int NC>
inline void tile(const T* w, const T* u, const T* bias, T* y, i64 O, i64 K, i64 dk, i64 o, i64 j0) {
  typedef typename Vec<T>::type V;
  constexpr int L = kVectorBytes / sizeof(T);
  V acc[R][NC];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NC; ++j) acc[r][j] = V{};
  i64 c = 0;
  for (; c + L <= K; c += L) {
    V uv[NC];
    for (int j = 0; j < NC; ++j) uv[j] = load<V>(u + (j0 + j) * K + c);
    for (int r = 0; r < R; ++r) {
      const V wv = load<V>(w + (o + r) * K + c);
      for (int j = 0; j < NC; ++j) acc[r][j] += wv * uv[j];
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < NC; ++j) {
      T s = 0;
      for (int l = 0; l < L; ++l) s += acc[r][j][l];
      for (i64 t = c; t < K; ++t) s += w[(o + r) * K + t] * u[(j0 + j) * K + t];
      const i64 col = j0 + j, comp = col % dk;
      if (bias) s += bias[(o + r) * dk + comp];
      y[(col / dk) * O * dk + (o + r) * dk + comp] = s;
    }
  }
}

template <typename T, int R>
inline void rows(const T* w, const T* u, const T* bias, T* y, i64 O, i64 K, i64 n, i64 dk, i64 o) {
  i64 j = 0;
  for (; j + kCols <= n; j += kCols) tile<T, R, kCols>(w, u, bias, y, O, K, dk, o, j);
  for (; j + 2 <= n; j += 2) tile<T, R, 2>(w, u, bias, y, O, K, dk, o, j);
  for (; j < n; ++j) tile<T, R, 1>(w, u, bias, y, O, K, dk, o, j);
}

template <typename T>
void skinny(const T* w, const T* u, const T* bias, T* y, i64 O, i64 K, i64 n, i64 dk, i64 o0, i64 o1) {
  i64 o = o0;
  for (; o + kRows <= o1; o += kRows) rows<T, kRows>(w, u, bias, y, O, K, n, dk, o);
  for (; o < o1; ++o) rows<T, 1>(w, u, bias, y, O, K, n, dk, o);
}

// u (N*d, I*d) for input elements [i0, i1): D the dimension when known at compile time (unrolled), else 0
template <typename T, int D>
void prep(const T* x, const T* Ts, T* u, i64 N, i64 I, i64 d_rt, i64 i0, i64 i1) {
  const i64 d = D ? D : d_rt;
  const i64 K = I * d;
  for (i64 m = 0; m < N; ++m) {
    for (i64 i = i0; i < i1; ++i) {
      const T* xe = x + (m * I + i) * d;
      for (i64 k = 0; k < d; ++k) {
        T* ue = u + (m * d + k) * K + i * d;
        for (i64 a = 0; a < d; ++a) {
          T s = 0;
          for (i64 j = 0; j < d; ++j) s += Ts[(a * d + j) * d + k] * xe[j];
          ue[a] = s;
        }
      }
    }
  }
}

template <typename T>
void prep_any(const T* x, const T* Ts, T* u, i64 N, i64 I, i64 d, i64 i0, i64 i1) {
  switch (d) {
    case 2: prep<T, 2>(x, Ts, u, N, I, d, i0, i1); break;
    case 4: prep<T, 4>(x, Ts, u, N, I, d, i0, i1); break;
    case 8: prep<T, 8>(x, Ts, u, N, I, d, i0, i1); break;
    default: prep<T, 0>(x, Ts, u, N, I, d, i0, i1);
  }
}

}  // namespace

extern "C" {
// ABI of this library (the glue refuses another): 2
int algebranets_learned_abi() { return 2; }
void algebranets_skinny_f32(const float* w, const float* u, const float* bias, float* y, i64 O, i64 K, i64 n, i64 dk,
                            i64 o0, i64 o1) {
  skinny<float>(w, u, bias, y, O, K, n, dk, o0, o1);
}
void algebranets_skinny_f64(const double* w, const double* u, const double* bias, double* y, i64 O, i64 K, i64 n,
                            i64 dk, i64 o0, i64 o1) {
  skinny<double>(w, u, bias, y, O, K, n, dk, o0, o1);
}
void algebranets_prep_f32(const float* x, const float* T, float* u, i64 N, i64 I, i64 d, i64 i0, i64 i1) {
  prep_any<float>(x, T, u, N, I, d, i0, i1);
}
void algebranets_prep_f64(const double* x, const double* T, double* u, i64 N, i64 I, i64 d, i64 i0, i64 i1) {
  prep_any<double>(x, T, u, N, I, d, i0, i1);
}
}
