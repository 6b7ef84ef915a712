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
inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 Load16(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// The AVX2 Gemv below with 16-lane registers (same products, fp32 accumulation): fewer conversion / FMA
// instructions per weight for int8 and for the cache-resident layer weights. K % 16 == 0.
template <typename T>
void Gemv512(const float* x, const T* w, const float* scale, float* out, int64_t m_rows, int64_t k_dim,
             int64_t stride, int64_t r0, int64_t r1) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const T *w0 = w + r * k_dim, *w1 = w0 + k_dim, *w2 = w1 + k_dim, *w3 = w2 + k_dim;
    float sc[4] = {1.f, 1.f, 1.f, 1.f};
    if (scale != nullptr) std::memcpy(sc, scale + r, sizeof(sc));
    int64_t m = 0;
    for (; m + 2 <= m_rows; m += 2) {
      const float *xa = x + m * k_dim, *xb = xa + k_dim;
      __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
      for (int64_t k = 0; k < k_dim; k += 16) {
        const __m512 xva = _mm512_loadu_ps(xa + k), xvb = _mm512_loadu_ps(xb + k);
        const __m512 v0 = Load16(w0 + k), v1 = Load16(w1 + k), v2 = Load16(w2 + k), v3 = Load16(w3 + k);
        a0 = _mm512_fmadd_ps(v0, xva, a0), b0 = _mm512_fmadd_ps(v0, xvb, b0);
        a1 = _mm512_fmadd_ps(v1, xva, a1), b1 = _mm512_fmadd_ps(v1, xvb, b1);
        a2 = _mm512_fmadd_ps(v2, xva, a2), b2 = _mm512_fmadd_ps(v2, xvb, b2);
        a3 = _mm512_fmadd_ps(v3, xva, a3), b3 = _mm512_fmadd_ps(v3, xvb, b3);
      }
      float* oa = out + m * stride + r;
      float* ob = oa + stride;
      oa[0] = sc[0] * _mm512_reduce_add_ps(a0), oa[1] = sc[1] * _mm512_reduce_add_ps(a1);
      oa[2] = sc[2] * _mm512_reduce_add_ps(a2), oa[3] = sc[3] * _mm512_reduce_add_ps(a3);
      ob[0] = sc[0] * _mm512_reduce_add_ps(b0), ob[1] = sc[1] * _mm512_reduce_add_ps(b1);
      ob[2] = sc[2] * _mm512_reduce_add_ps(b2), ob[3] = sc[3] * _mm512_reduce_add_ps(b3);
    }
    for (; m < m_rows; ++m) {
      const float* xa = x + m * k_dim;
      __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t k = 0; k < k_dim; k += 16) {
        const __m512 xv = _mm512_loadu_ps(xa + k);
        a0 = _mm512_fmadd_ps(Load16(w0 + k), xv, a0);
        a1 = _mm512_fmadd_ps(Load16(w1 + k), xv, a1);
        a2 = _mm512_fmadd_ps(Load16(w2 + k), xv, a2);
        a3 = _mm512_fmadd_ps(Load16(w3 + k), xv, a3);
      }
      float* oa = out + m * stride + r;
      oa[0] = sc[0] * _mm512_reduce_add_ps(a0), oa[1] = sc[1] * _mm512_reduce_add_ps(a1);
      oa[2] = sc[2] * _mm512_reduce_add_ps(a2), oa[3] = sc[3] * _mm512_reduce_add_ps(a3);
    }
  }
  for (; r < r1; ++r)  // tail rows
    for (int64_t m = 0; m < m_rows; ++m) {
      __m512 a = _mm512_setzero_ps();
      for (int64_t k = 0; k < k_dim; k += 16) a = _mm512_fmadd_ps(Load16(w + r * k_dim + k), _mm512_loadu_ps(x + m * k_dim + k), a);
      out[m * stride + r] = _mm512_reduce_add_ps(a) * (scale != nullptr ? scale[r] : 1.f);
    }
}
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

// 8 weights at p as fp32 (exact conversions).
inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 Load8(const uint16_t* p) {  // bfloat16 bits -> the upper half of a float
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
inline __m256 Load8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// 4 weight rows (16 KB at K = 1024) stay in L1 while the input rows pass over them two at a time (8 accumulators),
// so the weight is streamed from memory once for all inputs.
template <typename T>
void Gemv(const float* x, const T* w, const float* scale, float* out, int64_t m_rows, int64_t k_dim,
          int64_t stride, int64_t r0, int64_t r1) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const T *w0 = w + r * k_dim, *w1 = w0 + k_dim, *w2 = w1 + k_dim, *w3 = w2 + k_dim;
    const __m128 sc = scale != nullptr ? _mm_loadu_ps(scale + r) : _mm_set1_ps(1.f);
    int64_t m = 0;
    for (; m + 2 <= m_rows; m += 2) {
      const float *xa = x + m * k_dim, *xb = xa + k_dim;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
      for (int64_t k = 0; k < k_dim; k += 8) {
        const __m256 xva = _mm256_loadu_ps(xa + k), xvb = _mm256_loadu_ps(xb + k);
        const __m256 v0 = Load8(w0 + k), v1 = Load8(w1 + k), v2 = Load8(w2 + k), v3 = Load8(w3 + k);
        a0 = _mm256_fmadd_ps(v0, xva, a0), b0 = _mm256_fmadd_ps(v0, xvb, b0);
        a1 = _mm256_fmadd_ps(v1, xva, a1), b1 = _mm256_fmadd_ps(v1, xvb, b1);
        a2 = _mm256_fmadd_ps(v2, xva, a2), b2 = _mm256_fmadd_ps(v2, xvb, b2);
        a3 = _mm256_fmadd_ps(v3, xva, a3), b3 = _mm256_fmadd_ps(v3, xvb, b3);
      }
      _mm_storeu_ps(out + m * stride + r, _mm_mul_ps(sc, Hsum4(a0, a1, a2, a3)));
      _mm_storeu_ps(out + (m + 1) * stride + r, _mm_mul_ps(sc, Hsum4(b0, b1, b2, b3)));
    }
    for (; m < m_rows; ++m) {
      const float* xa = x + m * k_dim;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t k = 0; k < k_dim; k += 8) {
        const __m256 xv = _mm256_loadu_ps(xa + k);
        a0 = _mm256_fmadd_ps(Load8(w0 + k), xv, a0);
        a1 = _mm256_fmadd_ps(Load8(w1 + k), xv, a1);
        a2 = _mm256_fmadd_ps(Load8(w2 + k), xv, a2);
        a3 = _mm256_fmadd_ps(Load8(w3 + k), xv, a3);
      }
      _mm_storeu_ps(out + m * stride + r, _mm_mul_ps(sc, Hsum4(a0, a1, a2, a3)));
    }
  }
  for (; r < r1; ++r)  // tail rows
    for (int64_t m = 0; m < m_rows; ++m) {
      __m256 a = _mm256_setzero_ps();
      for (int64_t k = 0; k < k_dim; k += 8) a = _mm256_fmadd_ps(Load8(w + r * k_dim + k), _mm256_loadu_ps(x + m * k_dim + k), a);
      const __m256 z = _mm256_setzero_ps();
      out[m * stride + r] = _mm_cvtss_f32(Hsum4(a, z, z, z)) * (scale != nullptr ? scale[r] : 1.f);
    }
}

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
        return Gemv512(x, static_cast<const float*>(w), scale, out, m_rows, k_dim, out_stride, r0, r1);
      return Gemv(x, static_cast<const float*>(w), scale, out, m_rows, k_dim, out_stride, r0, r1);
    case WeightType::kBFloat16:
      if (k_dim % 32 == 0 && HaveAvx512Bf16())
        return GemvBf16Avx512(x, static_cast<const uint16_t*>(w), out, m_rows, k_dim, out_stride, r0, r1);
      return Gemv(x, static_cast<const uint16_t*>(w), scale, out, m_rows, k_dim, out_stride, r0, r1);
    case WeightType::kInt8:
      if (k_dim % 16 == 0 && HaveAvx512())
        return Gemv512(x, static_cast<const int8_t*>(w), scale, out, m_rows, k_dim, out_stride, r0, r1);
      return Gemv(x, static_cast<const int8_t*>(w), scale, out, m_rows, k_dim, out_stride, r0, r1);
  }
}

void AttendCached(const float* q, const float* k, const float* v, int64_t rep, int64_t n, int64_t d, float* scores,
                  float* out) {
  Gemv(q, k, nullptr, scores, rep, d, n, 0, n);  // [rep, n]: every cached key read once for the rep heads
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
