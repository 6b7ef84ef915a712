// Plain C++ kernels of the AR network's batch-1 / small-batch incremental decode step (private to
// wfm_autoregressive): GEMV over float32 / bfloat16 / int8 (per-row scale) weights and the per-token pieces of a
// block (RMSNorm, RoPE, attention of a few query heads over the cached prefix). They replace ~250 ATen calls per
// layer and step whose dispatch overhead, not arithmetic, dominated a decode step at dim 256. AVX2/FMA where it
// matters (picked at run time); callers check Available() and otherwise take the ATen path.
//
// Numerics: fp32 accumulation throughout; the same products as the ATen path, only the summation order differs
// (~1e-7 relative). The bf16 / int8 GEMVs convert each weight to fp32 exactly (int8: q * row_scale) and keep the
// input in fp32.
#pragma once

#include <cstdint>

namespace wfm::ar::decode {

// AVX2 + FMA present (the kernels below need them).
bool Available();

enum class WeightType { kFloat32, kBFloat16, kInt8 };

// out[m * out_stride + r] = scale[r] * dot(x[m, :], w[r, :]) for rows r in [r0, r1) (scale = 1 unless int8),
// m < m_rows, K % 8 == 0. w is [N, K] row-major of the given type (bf16 as uint16 bit patterns).
void GemvRows(const float* x, const void* w, WeightType type, const float* scale, float* out, int64_t m_rows,
              int64_t k_dim, int64_t out_stride, int64_t r0, int64_t r1);

// y[i] = x[i] * rsqrt(mean(x^2) + eps) * weight[i] for i < n (reference RMSNorm.compute_rmsnorm in fp32; weight may
// be null = 1). y may equal x.
void RmsNorm(const float* x, const float* weight, double eps, int64_t n, float* y);

// In place: x = x * cos + rotate(x) * sin over d values; rotate is (x0, x1) -> (-x1, x0) per pair when
// `interleaved`, else cat(-x[d/2:], x[:d/2]) (nn::ApplyRotary).
void Rotary(float* x, const float* cos, const float* sin, int64_t d, bool interleaved);

// Attention of `rep` query heads q [rep, D] (already scaled) over n cached positions k, v [n, D] (row-major,
// contiguous): out [rep, D] = softmax(q k^T) v. `scores` is scratch for rep * n floats. D % 8 == 0.
void AttendCached(const float* q, const float* k, const float* v, int64_t rep, int64_t n, int64_t d, float* scores,
                  float* out);

}  // namespace wfm::ar::decode
