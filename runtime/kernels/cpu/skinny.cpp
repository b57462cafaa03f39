// y (n, O) = u (n, K) times w (O, K) transposed, for few columns n: the weight streamed once from memory.
//
// The product of a learned-algebra layer at inference (runtime.methods.learned_fn): w is the compact weight
// (O, I*d), u the input combined with the layer's structure tensor ((rows*d) x (I*d)).  Each pass holds R weight
// rows (R*K values, cache resident) and walks the columns NC at a time, with R*NC vector accumulators of L lanes
// over k; the vector width and R follow the target's register file (GCC / Clang vector extensions, no
// intrinsics: the same source builds for AVX-512, AVX2, NEON and SSE).  Rows [o0, o1) per call, so the torch
// op (glue.cpp, `skinny`) threads over output rows.
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
inline void tile(const T* w, const T* u, T* y, i64 O, i64 K, i64 o, i64 j0) {
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
      y[(j0 + j) * O + o + r] = s;
    }
  }
}

template <typename T, int R>
inline void rows(const T* w, const T* u, T* y, i64 O, i64 K, i64 n, i64 o) {
  i64 j = 0;
  for (; j + kCols <= n; j += kCols) tile<T, R, kCols>(w, u, y, O, K, o, j);
  for (; j + 2 <= n; j += 2) tile<T, R, 2>(w, u, y, O, K, o, j);
  for (; j < n; ++j) tile<T, R, 1>(w, u, y, O, K, o, j);
}

template <typename T>
void skinny(const T* w, const T* u, T* y, i64 O, i64 K, i64 n, i64 o0, i64 o1) {
  i64 o = o0;
  for (; o + kRows <= o1; o += kRows) rows<T, kRows>(w, u, y, O, K, n, o);
  for (; o < o1; ++o) rows<T, 1>(w, u, y, O, K, n, o);
}

}  // namespace

extern "C" {
// ABI of this library (the glue refuses another): 1
int algebranets_skinny_abi() { return 1; }
void algebranets_skinny_f32(const float* w, const float* u, float* y, i64 O, i64 K, i64 n, i64 o0, i64 o1) {
  skinny<float>(w, u, y, O, K, n, o0, o1);
}
void algebranets_skinny_f64(const double* w, const double* u, double* y, i64 O, i64 K, i64 n, i64 o0, i64 o1) {
  skinny<double>(w, u, y, O, K, n, o0, o1);
}
}
