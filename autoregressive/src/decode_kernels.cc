// Decode-step kernels of the AR network (see decode_kernels.h).
#include "decode_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

// GCC only (the kernels use `#pragma GCC target` regions); other compilers take the ATen path.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WFM_AR_AVX2 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define WFM_AR_AVX2 0
#endif

namespace wfm::ar::decode {

bool Available() {
#if WFM_AR_AVX2
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

void RmsNorm(const float* x, const float* weight, double eps, int64_t n, float* y) {
  float ss = 0.f;  // fp32 sum of squares, as x.square().mean() in float
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float r = 1.f / std::sqrt(ss / static_cast<float>(n) + static_cast<float>(eps));
  if (weight == nullptr) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * r;
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * r * weight[i];
  }
}

void Rotary(float* x, const float* cos, const float* sin, int64_t d, bool interleaved) {
  if (interleaved) {
    for (int64_t i = 0; i < d; i += 2) {
      const float a = x[i], b = x[i + 1];
      x[i] = a * cos[i] - b * sin[i];
      x[i + 1] = b * cos[i + 1] + a * sin[i + 1];
    }
  } else {
    const int64_t h = d / 2;
    for (int64_t i = 0; i < h; ++i) {
      const float a = x[i], b = x[i + h];
      x[i] = a * cos[i] - b * sin[i];
      x[i + h] = b * cos[i + h] + a * sin[i + h];
    }
  }
}

#if WFM_AR_AVX2
namespace {

bool HaveAvx512Bf16() {  // CPUID.(7,1):EAX bit 5 = AVX512_BF16; avx512f implies the OS saves the zmm state
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 5) & 1u) != 0;
  }();
  return ok;
}

// bf16 weights with AVX512_BF16 dot products (vdpbf16ps: 32 products per instruction, fp32 accumulation). The fp32
// input is split as x = hi + lo (two bf16 parts, ~16 significant bits together), so the result stays within
// ~1e-5 relative of the fp32-input dot product over the same bf16 weights. K % 32 == 0.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void GemvBf16Avx512(
    const float* x, const uint16_t* w, float* out, int64_t m_rows, int64_t k_dim, int64_t stride, int64_t r0,
    int64_t r1) {
  const int64_t kc = k_dim / 32;
  std::vector<uint16_t> xs(static_cast<size_t>(2 * m_rows * k_dim));  // [M, K/32, {hi, lo}, 32] bf16
  for (int64_t m = 0; m < m_rows; ++m)
    for (int64_t k = 0; k < k_dim; k += 32) {
      const __m512 a = _mm512_loadu_ps(x + m * k_dim + k), b = _mm512_loadu_ps(x + m * k_dim + k + 16);
      const __m512bh hi = _mm512_cvtne2ps_pbh(b, a);  // [a, b] rounded to bf16
      __m512i hb;
      std::memcpy(&hb, &hi, sizeof(hb));
      const __m512 ha = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(hb)), 16));
      const __m512 hb2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(hb, 1)), 16));
      const __m512bh lo = _mm512_cvtne2ps_pbh(_mm512_sub_ps(b, hb2), _mm512_sub_ps(a, ha));
      uint16_t* at = xs.data() + 2 * (m * k_dim + k);
      std::memcpy(at, &hi, 64);
      std::memcpy(at + 32, &lo, 64);
    }
#define WFM_BH(p) ((__m512bh)_mm512_loadu_si512(p))  // 32 bf16 at p
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const uint16_t *w0 = w + r * k_dim, *w1 = w0 + k_dim, *w2 = w1 + k_dim, *w3 = w2 + k_dim;
    for (int64_t m = 0; m < m_rows; ++m) {
      const uint16_t* xm = xs.data() + 2 * m * k_dim;
      __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t c = 0; c < kc; ++c) {
        const __m512bh hi = WFM_BH(xm + 64 * c), lo = WFM_BH(xm + 64 * c + 32);
        const __m512bh v0 = WFM_BH(w0 + 32 * c), v1 = WFM_BH(w1 + 32 * c), v2 = WFM_BH(w2 + 32 * c),
                       v3 = WFM_BH(w3 + 32 * c);
        a0 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a0, v0, hi), v0, lo);
        a1 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a1, v1, hi), v1, lo);
        a2 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a2, v2, hi), v2, lo);
        a3 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a3, v3, hi), v3, lo);
      }
      float* o = out + m * stride + r;
      o[0] = _mm512_reduce_add_ps(a0), o[1] = _mm512_reduce_add_ps(a1);
      o[2] = _mm512_reduce_add_ps(a2), o[3] = _mm512_reduce_add_ps(a3);
    }
  }
  for (; r < r1; ++r)
    for (int64_t m = 0; m < m_rows; ++m) {
      const uint16_t* xm = xs.data() + 2 * m * k_dim;
      __m512 a = _mm512_setzero_ps();
      for (int64_t c = 0; c < kc; ++c) {
        const __m512bh v = WFM_BH(w + r * k_dim + 32 * c);
        a = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a, v, WFM_BH(xm + 64 * c)), v, WFM_BH(xm + 64 * c + 32));
      }
      out[m * stride + r] = _mm512_reduce_add_ps(a);
    }
#undef WFM_BH
}

bool HaveAvx512() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl");
  return ok;
}

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl")
// AVX-512: 16 lanes, fewer conversion / FMA instructions per weight than AVX2 for int8 and for the cache-resident
// layer weights (same products, fp32 accumulation). K % 16 == 0.
namespace avx512 {
using Vec = __m512;
constexpr int64_t kLanes = 16;
inline Vec VZero() { return _mm512_setzero_ps(); }
inline Vec VLoadX(const float* p) { return _mm512_loadu_ps(p); }
inline Vec LoadW(const float* p) { return _mm512_loadu_ps(p); }
inline Vec LoadW(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
inline Vec VFma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline float VSum(Vec v) { return _mm512_reduce_add_ps(v); }
inline void Store4(float* o, const float* sc, Vec a0, Vec a1, Vec a2, Vec a3) {
  o[0] = sc[0] * VSum(a0), o[1] = sc[1] * VSum(a1), o[2] = sc[2] * VSum(a2), o[3] = sc[3] * VSum(a3);
}
#include "gemv_tile.inc"  // Gemv
}  // namespace avx512
#pragma GCC pop_options

}  // namespace

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace {

// Sums of the 8 lanes of a0..a3 -> [sum a0, sum a1, sum a2, sum a3].
inline __m128 Hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

// AVX2: 8 lanes; weights of every type converted exactly to fp32. K % 8 == 0.
namespace avx2 {
using Vec = __m256;
constexpr int64_t kLanes = 8;
inline Vec VZero() { return _mm256_setzero_ps(); }
inline Vec VLoadX(const float* p) { return _mm256_loadu_ps(p); }
inline Vec LoadW(const float* p) { return _mm256_loadu_ps(p); }
inline Vec LoadW(const uint16_t* p) {  // bfloat16 bits -> the upper half of a float
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
inline Vec LoadW(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
inline Vec VFma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline float VSum(Vec v) {
  const Vec z = _mm256_setzero_ps();
  return _mm_cvtss_f32(Hsum4(v, z, z, z));
}
inline void Store4(float* o, const float* sc, Vec a0, Vec a1, Vec a2, Vec a3) {
  _mm_storeu_ps(o, _mm_mul_ps(_mm_loadu_ps(sc), Hsum4(a0, a1, a2, a3)));
}
#include "gemv_tile.inc"  // Gemv
}  // namespace avx2

// out[0:d] = sum_j p[j] * v[j, 0:d] for j < n, d % 8 == 0; up to 32 output values kept in registers per pass.
void WeightedSum(const float* p, const float* v, int64_t n, int64_t d, float* out) {
  for (int64_t c = 0; c < d; c += 32) {
    const int64_t w = std::min<int64_t>(32, d - c);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    if (w == 32) {
      for (int64_t j = 0; j < n; ++j) {
        const __m256 pj = _mm256_broadcast_ss(p + j);
        const float* vj = v + j * d + c;
        a0 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj), a0);
        a1 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8), a1);
        a2 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 16), a2);
        a3 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 24), a3);
      }
      _mm256_storeu_ps(out + c, a0), _mm256_storeu_ps(out + c + 8, a1);
      _mm256_storeu_ps(out + c + 16, a2), _mm256_storeu_ps(out + c + 24, a3);
    } else {
      for (int64_t e = 0; e < w; e += 8) {
        __m256 a = _mm256_setzero_ps();
        for (int64_t j = 0; j < n; ++j) a = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j), _mm256_loadu_ps(v + j * d + c + e), a);
        _mm256_storeu_ps(out + c + e, a);
      }
    }
  }
}

}  // namespace

void GemvRows(const float* x, const void* w, WeightType type, const float* scale, float* out, int64_t m_rows,
              int64_t k_dim, int64_t out_stride, int64_t r0, int64_t r1) {
  switch (type) {
    case WeightType::kFloat32:
      if (k_dim % 16 == 0 && HaveAvx512())
        return avx512::Gemv(x, static_cast<const float*>(w), scale, out, m_rows, k_dim, out_stride, r0, r1);
      return avx2::Gemv(x, static_cast<const float*>(w), scale, out, m_rows, k_dim, out_stride, r0, r1);
    case WeightType::kBFloat16:
      if (k_dim % 32 == 0 && HaveAvx512Bf16())
        return GemvBf16Avx512(x, static_cast<const uint16_t*>(w), out, m_rows, k_dim, out_stride, r0, r1);
      return avx2::Gemv(x, static_cast<const uint16_t*>(w), scale, out, m_rows, k_dim, out_stride, r0, r1);
    case WeightType::kInt8:
      if (k_dim % 16 == 0 && HaveAvx512())
        return avx512::Gemv(x, static_cast<const int8_t*>(w), scale, out, m_rows, k_dim, out_stride, r0, r1);
      return avx2::Gemv(x, static_cast<const int8_t*>(w), scale, out, m_rows, k_dim, out_stride, r0, r1);
  }
}

void AttendCached(const float* q, const float* k, const float* v, int64_t rep, int64_t n, int64_t d, float* scores,
                  float* out) {
  avx2::Gemv(q, k, nullptr, scores, rep, d, n, 0, n);  // [rep, n]: every cached key read once for the rep heads
  for (int64_t r = 0; r < rep; ++r) {
    float* s = scores + r * n;
    const float mx = *std::max_element(s, s + n);
    float sum = 0.f;
    for (int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - mx));
    const float inv = 1.f / sum;
    for (int64_t j = 0; j < n; ++j) s[j] *= inv;
    WeightedSum(s, v, n, d, out + r * d);
  }
}
#pragma GCC pop_options

#else  // no AVX2: never called (Available() is false); scalar definitions keep the library linkable

void GemvRows(const float*, const void*, WeightType, const float*, float*, int64_t, int64_t, int64_t, int64_t,
              int64_t) {}
void AttendCached(const float*, const float*, const float*, int64_t, int64_t, int64_t, float*, float*) {}

#endif

}  // namespace wfm::ar::decode
