// Causal 3D layers and the factorized video encoder/decoder (see layers3d.h). Ports of
// cosmos_predict1/tokenizer/modules/layers3d.py; streaming behaviour documented in causal_cache.h.
#include "wfm/tokenizer/layers3d.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>

namespace wfm::tokenizer {

// ---------------------------------------------------------------------------------------------------------------
// CausalCache

at::Tensor& CausalCache::NextSlot() {
  if (cursor_ == slots_.size()) slots_.emplace_back();
  return slots_[cursor_++];
}

int64_t CausalCache::bytes() const {
  int64_t n = 0;
  for (const auto& t : slots_)
    if (t.defined()) n += t.numel() * static_cast<int64_t>(t.element_size());
  return n;
}

namespace stream {
bool FirstChunk(CausalCache* cache) {
  at::Tensor& slot = cache->NextSlot();
  if (slot.defined()) return false;
  slot = at::empty({0});
  return true;
}

at::Tensor RepeatFirstFrame(const at::Tensor& x, int64_t n) {
  if (n <= 0) return x;
  TORCH_CHECK(x.size(2) >= 1, "causal padding needs at least one frame");
  std::vector<int64_t> shape = x.sizes().vec();
  shape[2] = n;
  return at::cat({x.narrow(2, 0, 1).expand(shape), x}, 2);
}
}  // namespace stream

at::Tensor Nonlinearity(const at::Tensor& x) { return at::silu(x); }

namespace {
thread_local bool g_skip_weight_init = false;
}  // namespace

SkipWeightInit::SkipWeightInit() : previous_(g_skip_weight_init) { g_skip_weight_init = true; }
SkipWeightInit::~SkipWeightInit() { g_skip_weight_init = previous_; }
bool SkipWeightInit::active() { return g_skip_weight_init; }

void MaybeSkipInit(torch::nn::Module& conv) {
  if (!g_skip_weight_init) return;
  torch::NoGradGuard ng;
  for (auto& p : conv.named_parameters(/*recurse=*/false)) p.value().set_data(at::empty_like(p.value()));
}

namespace {
// a + b, accumulated into `a` (a fresh op output that nothing else references) when no gradient is recorded.
at::Tensor AddInto(at::Tensor a, const at::Tensor& b) {
  if (c10::GradMode::is_enabled()) return a + b;
  return a.add_(b);
}
}  // namespace

namespace {
// Appends `x` to the frames left over in `slot` (none on the first chunk, where `first_pad` copies of frame 0
// are prepended instead), returns the span that holds the complete windows of a (kernel, stride) temporal op
// and keeps the remainder in `slot`.
at::Tensor StreamWindows(const at::Tensor& x, at::Tensor& slot, int64_t kernel, int64_t stride, int64_t first_pad,
                         int64_t* num_windows) {
  at::Tensor xin;
  if (!slot.defined())
    xin = stream::RepeatFirstFrame(x, first_pad);
  else
    xin = slot.size(2) > 0 ? at::cat({slot, x}, 2) : x;
  const int64_t L = xin.size(2);
  const int64_t n = L >= kernel ? (L - kernel) / stride + 1 : 0;
  TORCH_CHECK(n > 0, "streaming chunk too short for a temporal window of ", kernel, " (", L, " frames)");
  slot = xin.narrow(2, n * stride, L - n * stride).clone();
  *num_windows = n;
  return xin.narrow(2, 0, (n - 1) * stride + kernel);
}
}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// CausalConv3d

CausalConv3dImpl::CausalConv3dImpl(int64_t in_channels, int64_t out_channels, std::array<int64_t, 3> kernel,
                                   int64_t stride, int64_t time_stride, int64_t padding)
    : kernel_(kernel), stride_(stride), time_stride_(time_stride), padding_(padding) {
  TORCH_CHECK(kernel[1] % 2 == 1 && kernel[2] % 2 == 1, "CausalConv3d: spatial kernel must be odd");
  time_pad_ = (kernel[0] - 1) + (1 - time_stride);
  conv3d = register_module(
      "conv3d", torch::nn::Conv3d(torch::nn::Conv3dOptions(in_channels, out_channels, {kernel[0], kernel[1], kernel[2]})
                                      .stride({time_stride, stride, stride})));
  MaybeSkipInit(*conv3d);
}

at::Tensor CausalConv3dImpl::Conv(const at::Tensor& xp) const {
  return at::conv3d(xp, conv3d->weight, conv3d->bias, {time_stride_, stride_, stride_}, {0, padding_, padding_});
}

at::Tensor CausalConv3dImpl::forward(const at::Tensor& x, CausalCache* cache) {
  if (cache == nullptr || (kernel_[0] == 1 && time_stride_ == 1)) return Conv(stream::RepeatFirstFrame(x, time_pad_));
  int64_t n = 0;
  return Conv(StreamWindows(x, cache->NextSlot(), kernel_[0], time_stride_, time_pad_, &n));
}

FactorizedConv3dImpl::FactorizedConv3dImpl(int64_t in_channels, int64_t mid_channels, int64_t out_channels) {
  spatial = register_module("0", CausalConv3d(in_channels, mid_channels, std::array<int64_t, 3>{1, 3, 3}, 1, 1, 1));
  temporal = register_module("1", CausalConv3d(mid_channels, out_channels, std::array<int64_t, 3>{3, 1, 1}, 1, 1, 0));
}

at::Tensor FactorizedConv3dImpl::forward(const at::Tensor& x, CausalCache* cache) {
  return temporal(spatial(x, cache), cache);
}

// ---------------------------------------------------------------------------------------------------------------
// CausalNormalize

CausalNormalizeImpl::CausalNormalizeImpl(int64_t channels, int64_t num_groups) : num_groups_(num_groups) {
  norm = register_module("norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(num_groups, channels).eps(1e-6)));
}

namespace {
// Mean and variance over (C, H, W) of each frame of x [B, C, T, H, W] -> [B, 1, T, 1, 1] each (float32).
// On the CPU the Welford reduction of var_mean over non-adjacent dims is ~5x slower than plain sums, so the
// statistics come from per-(b, c, t) sums of x and x^2 over the contiguous H*W (float32, cascade-summed),
// combined over C in float64; when mean^2 dominates the variance (cancellation) the exact reduction is used.
std::pair<at::Tensor, at::Tensor> FrameStats(const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2);
  if (!x.is_cpu() || (c10::GradMode::is_enabled() && x.requires_grad()) || !x.is_contiguous() ||
      x.scalar_type() != at::kFloat) {
    auto [var, mean] = at::var_mean(x, {1, 3, 4}, /*unbiased=*/false, /*keepdim=*/true);
    return {mean, var};
  }
  const at::Tensor xv = x.view({B, C, T, -1});                                // [B, C, T, HW]
  const double n = static_cast<double>(C * xv.size(3));
  at::Tensor s1 = xv.sum(-1).to(at::kDouble).sum(1);                         // [B, T]
  at::Tensor s2 = at::linalg_vector_norm(xv, 2, {-1}).to(at::kDouble).square().sum(1);
  at::Tensor mean = s1 / n, var = (s2 / n - mean * mean).clamp_min(0);
  if ((mean * mean > 100.0 * var + 1e-12).any().item<bool>()) {
    auto [v, m] = at::var_mean(x, {1, 3, 4}, /*unbiased=*/false, /*keepdim=*/true);
    return {m, v};
  }
  return {mean.to(at::kFloat).view({B, 1, T, 1, 1}), var.to(at::kFloat).view({B, 1, T, 1, 1})};
}
}  // namespace

at::Tensor CausalNormalizeImpl::forward(const at::Tensor& x) {
  if (num_groups_ != 1) return at::group_norm(x, num_groups_, norm->weight, norm->bias, 1e-6);
  // GroupNorm(1) of each frame: statistics over (C, H, W) per (b, t), applied in place in [B, C, T, H, W]
  // (no transposes).
  const int64_t C = x.size(1);
  auto [mean, var] = FrameStats(x);                               // [B, 1, T, 1, 1]
  at::Tensor rstd = (var + 1e-6).rsqrt_();
  at::Tensor scale = rstd * norm->weight.view({1, C, 1, 1, 1});  // [B, C, T, 1, 1]
  at::Tensor shift = norm->bias.view({1, C, 1, 1, 1}) - mean * scale;
  return at::addcmul(shift, x, scale);
}

at::Tensor CausalNormalizeImpl::NormSiLU(const at::Tensor& x) {
  at::Tensor y = forward(x);
  if (!c10::GradMode::is_enabled()) return at::silu_(y);
  return at::silu(y);
}

// ---------------------------------------------------------------------------------------------------------------
// CausalResnetBlockFactorized3d

CausalResnetBlockFactorized3dImpl::CausalResnetBlockFactorized3dImpl(int64_t in_channels, int64_t out_channels,
                                                                     double dropout, int64_t num_groups)
    : dropout_(dropout) {
  norm1 = register_module("norm1", CausalNormalize(in_channels, 1));
  conv1 = register_module("conv1", FactorizedConv3d(in_channels, out_channels, out_channels));
  norm2 = register_module("norm2", CausalNormalize(out_channels, num_groups));
  conv2 = register_module("conv2", FactorizedConv3d(out_channels, out_channels, out_channels));
  if (in_channels != out_channels)
    nin_shortcut = register_module(
        "nin_shortcut", CausalConv3d(in_channels, out_channels, std::array<int64_t, 3>{1, 1, 1}, 1, 1, 0));
}

at::Tensor CausalResnetBlockFactorized3dImpl::forward(const at::Tensor& x, CausalCache* cache) {
  at::Tensor h = conv1(norm1->NormSiLU(x), cache);
  h = norm2->NormSiLU(h);
  if (dropout_ > 0 && is_training()) h = at::dropout(h, dropout_, true);
  h = conv2(h, cache);
  return AddInto(h, nin_shortcut ? nin_shortcut(x) : x);
}

// ---------------------------------------------------------------------------------------------------------------
// Attention

namespace {
CausalConv3d Conv1x1(int64_t c) { return CausalConv3d(c, c, std::array<int64_t, 3>{1, 1, 1}, 1, 1, 0); }

// Rows of the attention matrix computed at a time, so that a 720p frame (14,400 tokens at the bottleneck) does
// not materialise a 830 MB score matrix: softmax is per query row, so blocking the queries is exact.
constexpr int64_t kMaxScoreElements = int64_t{1} << 24;
}  // namespace

CausalAttnBlockImpl::CausalAttnBlockImpl(int64_t channels, int64_t num_groups) {
  norm = register_module("norm", CausalNormalize(channels, num_groups));
  q = register_module("q", Conv1x1(channels));
  k = register_module("k", Conv1x1(channels));
  v = register_module("v", Conv1x1(channels));
  proj_out = register_module("proj_out", Conv1x1(channels));
}

at::Tensor CausalAttnBlockImpl::forward(const at::Tensor& x) {
  at::Tensor h = norm(x);
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4), N = H * W;
  // time2batch: [B, C, T, H, W] -> [B*T, C, N]
  auto to_frames = [&](const at::Tensor& t) { return t.transpose(1, 2).reshape({B * T, C, N}); };
  at::Tensor qf = to_frames(q(h)).transpose(1, 2);  // [BT, N, C]
  at::Tensor kf = to_frames(k(h));                   // [BT, C, N]
  at::Tensor vf = to_frames(v(h));                   // [BT, C, N]
  const double scale = std::pow(static_cast<double>(C), -0.5);
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(N, kMaxScoreElements / std::max<int64_t>(1, B * T * N)));
  at::Tensor out;
  if (rows >= N) {
    at::Tensor w = at::softmax(at::bmm(qf, kf).mul_(scale), 2);  // [BT, Nq, Nk]
    out = at::bmm(vf, w.transpose(1, 2));                         // [BT, C, Nq]
  } else {
    std::vector<at::Tensor> parts;
    for (int64_t r = 0; r < N; r += rows) {
      const int64_t n = std::min(rows, N - r);
      at::Tensor w = at::softmax(at::bmm(qf.narrow(1, r, n), kf).mul_(scale), 2);  // [BT, n, Nk]
      parts.push_back(at::bmm(vf, w.transpose(1, 2)));                              // [BT, C, n]
    }
    out = at::cat(parts, 2);
  }
  // batch2time: [BT, C, N] -> [B, C, T, H, W]
  out = out.view({B, T, C, H, W}).transpose(1, 2);
  return AddInto(proj_out(out), x);
}

CausalTemporalAttnBlockImpl::CausalTemporalAttnBlockImpl(int64_t channels, int64_t num_groups) {
  norm = register_module("norm", CausalNormalize(channels, num_groups));
  q = register_module("q", Conv1x1(channels));
  k = register_module("k", Conv1x1(channels));
  v = register_module("v", Conv1x1(channels));
  proj_out = register_module("proj_out", Conv1x1(channels));
}

at::Tensor CausalTemporalAttnBlockImpl::forward(const at::Tensor& x, CausalCache* cache) {
  at::Tensor h = norm(x);
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  // space2batch: [B, C, T, H, W] -> [B*H*W, T, C]
  auto to_pixels = [&](const at::Tensor& t) { return t.permute({0, 3, 4, 2, 1}).reshape({B * H * W, T, C}); };
  at::Tensor qt = to_pixels(q(h)), kt = to_pixels(k(h)), vt = to_pixels(v(h));
  int64_t past = 0;
  if (cache != nullptr) {
    at::Tensor& k_slot = cache->NextSlot();
    at::Tensor& v_slot = cache->NextSlot();
    if (k_slot.defined()) {
      past = k_slot.size(1);
      kt = at::cat({k_slot, kt}, 1);
      vt = at::cat({v_slot, vt}, 1);
    }
    const int64_t keep = cache->attention_window() > 0 ? std::min(cache->attention_window(), kt.size(1)) : kt.size(1);
    k_slot = keep == kt.size(1) ? kt : kt.narrow(1, kt.size(1) - keep, keep).clone();
    v_slot = keep == vt.size(1) ? vt : vt.narrow(1, vt.size(1) - keep, keep).clone();
  }
  const int64_t Tk = kt.size(1);
  const double scale = std::pow(static_cast<double>(C), -0.5);
  at::Tensor w = at::bmm(qt, kt.transpose(1, 2)).mul_(scale);  // [BHW, T, Tk]
  // Query i (global frame past + i) sees keys j <= past + i.
  at::Tensor mask = at::ones({T, Tk}, x.options().dtype(at::kBool)).tril(past);
  w = at::softmax(w.masked_fill(mask.logical_not(), -std::numeric_limits<double>::infinity()), 2);
  at::Tensor out = at::bmm(w, vt);  // [BHW, T, C]
  // batch2space: -> [B, C, T, H, W]
  out = out.view({B, H, W, T, C}).permute({0, 4, 3, 1, 2});
  return AddInto(proj_out(out), x);
}

CausalAttnPairImpl::CausalAttnPairImpl(int64_t channels, int64_t num_groups) {
  spatial = register_module("0", CausalAttnBlock(channels, num_groups));
  temporal = register_module("1", CausalTemporalAttnBlock(channels, num_groups));
}

at::Tensor CausalAttnPairImpl::forward(const at::Tensor& x, CausalCache* cache) {
  return temporal(spatial(x), cache);
}

// ---------------------------------------------------------------------------------------------------------------
// Hybrid down/up-sampling

CausalHybridDownsample3dImpl::CausalHybridDownsample3dImpl(int64_t channels, bool spatial_down, bool temporal_down)
    : spatial_down_(spatial_down), temporal_down_(temporal_down) {
  if (spatial_down)
    conv1 = register_module("conv1", CausalConv3d(channels, channels, std::array<int64_t, 3>{1, 3, 3}, 2, 1, 0));
  if (temporal_down)
    conv2 = register_module("conv2", CausalConv3d(channels, channels, std::array<int64_t, 3>{3, 1, 1}, 1, 2, 0));
  if (spatial_down || temporal_down)
    conv3 = register_module("conv3", CausalConv3d(channels, channels, std::array<int64_t, 3>{1, 1, 1}, 1, 1, 0));
}

at::Tensor CausalHybridDownsample3dImpl::forward(const at::Tensor& x_in, CausalCache* cache) {
  if (!spatial_down_ && !temporal_down_) return x_in;
  at::Tensor x = x_in;
  if (spatial_down_) {
    at::Tensor xp = at::constant_pad_nd(x, {0, 1, 0, 1, 0, 0}, 0.0);
    x = AddInto(conv1(xp, cache), at::avg_pool3d(xp, {1, 2, 2}, {1, 2, 2}));
  }
  if (temporal_down_) {
    // replication_pad: the first frame once more in front (first chunk only), then conv2 pads once more itself.
    const bool first = cache == nullptr || stream::FirstChunk(cache);
    at::Tensor xr = first ? stream::RepeatFirstFrame(x, 1) : x;
    at::Tensor x1 = conv2(xr, cache);
    at::Tensor pooled_in = xr;
    if (cache != nullptr) {
      int64_t n = 0;
      pooled_in = StreamWindows(xr, cache->NextSlot(), 2, 2, 0, &n);
    }
    x = AddInto(x1, at::avg_pool3d(pooled_in, {2, 1, 1}, {2, 1, 1}));
  }
  return conv3(x, cache);
}

CausalHybridUpsample3dImpl::CausalHybridUpsample3dImpl(int64_t channels, bool spatial_up, bool temporal_up)
    : spatial_up_(spatial_up), temporal_up_(temporal_up) {
  if (temporal_up)
    conv1 = register_module("conv1", CausalConv3d(channels, channels, std::array<int64_t, 3>{3, 1, 1}, 1, 1, 0));
  if (spatial_up)
    conv2 = register_module("conv2", CausalConv3d(channels, channels, std::array<int64_t, 3>{1, 3, 3}, 1, 1, 1));
  if (spatial_up || temporal_up)
    conv3 = register_module("conv3", CausalConv3d(channels, channels, std::array<int64_t, 3>{1, 1, 1}, 1, 1, 0));
}

at::Tensor CausalHybridUpsample3dImpl::forward(const at::Tensor& x_in, CausalCache* cache) {
  if (!spatial_up_ && !temporal_up_) return x_in;
  at::Tensor x = x_in;
  if (temporal_up_) {
    const int64_t B = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
    const bool first = cache == nullptr || stream::FirstChunk(cache);
    // repeat_interleave(2) along time, minus the first copy on the first chunk (reference: time_factor = 1 for a
    // single frame, which gives the same one frame).
    at::Tensor rep = x.unsqueeze(3).expand({B, C, T, 2, H, W}).reshape({B, C, 2 * T, H, W});
    if (first) rep = rep.narrow(2, 1, 2 * T - 1);
    x = AddInto(conv1(rep, cache), rep);
  }
  if (spatial_up_) x = c10::GradMode::is_enabled() ? SpatialUpReference(x) : SpatialUpSubPixel(x);
  return conv3(x, cache);
}

// nearest 2x -> conv2 (1,3,3), plus the upsampled input (reference order of operations).
at::Tensor CausalHybridUpsample3dImpl::SpatialUpReference(const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  at::Tensor rep = x.view({B, C, T, H, 1, W, 1}).expand({B, C, T, H, 2, W, 2}).reshape({B, C, T, 2 * H, 2 * W});
  return conv2(rep) + rep;
}

// The same without materialising the 4x larger upsampled input: a 3x3 convolution of a nearest-2x image is, for
// each output parity (py, px), a 2x2 convolution of the low-resolution image whose taps are sums of the 3x3
// taps (py = 0: rows {i-1: w0, i: w1 + w2}; py = 1: rows {i: w0 + w1, i+1: w2}; columns alike). 16 instead of
// 36 multiply-adds per low-resolution pixel and channel pair; the residual is added per parity.
at::Tensor CausalHybridUpsample3dImpl::SpatialUpSubPixel(const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), T = x.size(2), H = x.size(3), W = x.size(4);
  const at::Tensor& w = conv2->conv3d->weight;  // [Co, C, 1, 3, 3]
  const int64_t Co = w.size(0);
  // Tap groups along one axis for parity 0 and 1: (first tap row, last tap row) sums.
  auto fold = [](const at::Tensor& k, int64_t dim, int64_t parity) {  // 3 taps -> 2 taps along `dim`
    at::Tensor t0 = k.narrow(dim, 0, 1), t1 = k.narrow(dim, 1, 1), t2 = k.narrow(dim, 2, 1);
    return parity == 0 ? at::cat({t0, t1 + t2}, dim) : at::cat({t0 + t1, t2}, dim);
  };
  const at::Tensor xp = at::constant_pad_nd(x, {1, 1, 1, 1}, 0.0);  // [B, C, T, H + 2, W + 2]
  at::Tensor out = at::empty({B, Co, T, H, 2, W, 2}, x.options());
  for (int64_t py = 0; py < 2; ++py) {
    const at::Tensor wy = fold(w, 3, py);
    for (int64_t px = 0; px < 2; ++px) {
      const at::Tensor k = fold(wy, 4, px).contiguous();  // [Co, C, 1, 2, 2]
      // Output (i, j) of a valid 2x2 convolution over xp reads padded rows i..i+1 = low rows i-1..i; parity 1
      // needs rows i..i+1, i.e. the next output row.
      at::Tensor y = at::conv3d(xp, k, conv2->conv3d->bias);  // [B, Co, T, H + 1, W + 1]
      y = y.narrow(3, py, H).narrow(4, px, W);
      at::Tensor dst = out.select(6, px).select(4, py);  // [B, Co, T, H, W] (strided)
      at::add_out(dst, y, x);
    }
  }
  return out.view({B, Co, T, 2 * H, 2 * W});
}

// ---------------------------------------------------------------------------------------------------------------
// Encoder / decoder

namespace {
int64_t Log2(int64_t v) {
  int64_t r = 0;
  while (v > 1) v >>= 1, ++r;
  return r;
}
bool Contains(const std::vector<int64_t>& v, int64_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

VideoLevel MakeLevel() {
  VideoLevel level;
  level->block_list = level->register_module("block", torch::nn::ModuleList());
  level->attn_list = level->register_module("attn", torch::nn::ModuleList());
  return level;
}

at::Tensor RunLevelBlocks(VideoLevelImpl& level, at::Tensor h, CausalCache* cache) {
  for (size_t i = 0; i < level.blocks.size(); ++i) {
    h = level.blocks[i](h, cache);
    if (!level.attns.empty()) h = level.attns[i](h, cache);
  }
  return h;
}
}  // namespace

EncoderFactorizedImpl::EncoderFactorizedImpl(const TokenizerConfig& c, int64_t z_channels) {
  const int64_t num_res = static_cast<int64_t>(c.channels_mult.size());
  const int64_t p = c.patch_size;
  patcher3d = register_module("patcher3d", Patcher3D(p, c.patch_method));
  const int64_t in_ch = c.in_channels * p * p * p;
  const int64_t num_spatial_downs = Log2(c.spatial_compression) - Log2(p);
  const int64_t num_temporal_downs = Log2(c.temporal_compression) - Log2(p);
  TORCH_CHECK(num_spatial_downs <= num_res && num_temporal_downs <= num_res, "too many downsamplings");

  conv_in = register_module("conv_in", FactorizedConv3d(in_ch, c.channels, c.channels));
  int64_t curr_res = c.resolution / p;
  std::vector<int64_t> in_ch_mult = {1};
  in_ch_mult.insert(in_ch_mult.end(), c.channels_mult.begin(), c.channels_mult.end());
  auto down_list = register_module("down", torch::nn::ModuleList());
  int64_t block_in = c.channels;
  for (int64_t i = 0; i < num_res; ++i) {
    VideoLevel level = MakeLevel();
    block_in = c.channels * in_ch_mult[i];
    const int64_t block_out = c.channels * c.channels_mult[i];
    for (int64_t b = 0; b < c.num_res_blocks; ++b) {
      level->blocks.push_back(CausalResnetBlockFactorized3d(block_in, block_out, c.dropout, 1));
      level->block_list->push_back(level->blocks.back());
      block_in = block_out;
      if (Contains(c.attn_resolutions, curr_res)) {
        level->attns.push_back(CausalAttnPair(block_in, 1));
        level->attn_list->push_back(level->attns.back());
      }
    }
    if (i != num_res - 1) {
      level->downsample = level->register_module(
          "downsample", CausalHybridDownsample3d(block_in, i < num_spatial_downs, i < num_temporal_downs));
      curr_res /= 2;
    }
    down.push_back(level);
    down_list->push_back(level);
  }
  auto mid = register_module("mid", std::make_shared<torch::nn::Module>());
  mid_block_1 = mid->register_module("block_1", CausalResnetBlockFactorized3d(block_in, block_in, c.dropout, 1));
  mid_attn_1 = mid->register_module("attn_1", CausalAttnPair(block_in, 1));
  mid_block_2 = mid->register_module("block_2", CausalResnetBlockFactorized3d(block_in, block_in, c.dropout, 1));
  norm_out = register_module("norm_out", CausalNormalize(block_in, 1));
  conv_out = register_module("conv_out", FactorizedConv3d(block_in, z_channels, z_channels));
}

at::Tensor EncoderFactorizedImpl::forward(const at::Tensor& x, CausalCache* cache) {
  if (cache != nullptr) cache->BeginChunk();
  at::Tensor h = conv_in(patcher3d(x, cache), cache);
  for (auto& level : down) {
    h = RunLevelBlocks(*level, h, cache);
    if (level->downsample) h = level->downsample(h, cache);
  }
  h = mid_block_1(h, cache);
  h = mid_attn_1(h, cache);
  h = mid_block_2(h, cache);
  return conv_out(norm_out->NormSiLU(h), cache);
}

DecoderFactorizedImpl::DecoderFactorizedImpl(const TokenizerConfig& c, int64_t z_channels) {
  const int64_t num_res = static_cast<int64_t>(c.channels_mult.size());
  const int64_t p = c.patch_size;
  unpatcher3d = register_module("unpatcher3d", UnPatcher3D(p, c.patch_method));
  const int64_t out_ch = c.out_channels * p * p * p;
  const int64_t num_spatial_ups = Log2(c.spatial_compression) - Log2(p);
  const int64_t num_temporal_ups = Log2(c.temporal_compression) - Log2(p);
  TORCH_CHECK(num_spatial_ups <= num_res && num_temporal_ups <= num_res, "too many upsamplings");

  int64_t block_in = c.channels * c.channels_mult[num_res - 1];
  int64_t curr_res = (c.resolution / p) >> (num_res - 1);
  conv_in = register_module("conv_in", FactorizedConv3d(z_channels, block_in, block_in));
  auto mid = register_module("mid", std::make_shared<torch::nn::Module>());
  mid_block_1 = mid->register_module("block_1", CausalResnetBlockFactorized3d(block_in, block_in, c.dropout, 1));
  mid_attn_1 = mid->register_module("attn_1", CausalAttnPair(block_in, 1));
  mid_block_2 = mid->register_module("block_2", CausalResnetBlockFactorized3d(block_in, block_in, c.dropout, 1));

  up.resize(num_res);
  for (int64_t i = num_res - 1; i >= 0; --i) {
    VideoLevel level = MakeLevel();
    const int64_t block_out = c.channels * c.channels_mult[i];
    for (int64_t b = 0; b < c.num_res_blocks + 1; ++b) {
      level->blocks.push_back(CausalResnetBlockFactorized3d(block_in, block_out, c.dropout, 1));
      level->block_list->push_back(level->blocks.back());
      block_in = block_out;
      if (Contains(c.attn_resolutions, curr_res)) {
        level->attns.push_back(CausalAttnPair(block_in, 1));
        level->attn_list->push_back(level->attns.back());
      }
    }
    if (i != 0) {
      const int64_t i_rev = num_res - i - 1;
      const bool temporal_up =
          c.legacy_mode ? i_rev < num_temporal_ups : (0 < i_rev && i_rev < num_temporal_ups + 1);
      const bool spatial_up = temporal_up || (i_rev < num_spatial_ups && num_spatial_ups > num_temporal_ups);
      level->upsample =
          level->register_module("upsample", CausalHybridUpsample3d(block_in, spatial_up, temporal_up));
      curr_res *= 2;
    }
    up[i] = level;
  }
  auto up_list = register_module("up", torch::nn::ModuleList());
  for (auto& level : up) up_list->push_back(level);
  norm_out = register_module("norm_out", CausalNormalize(block_in, 1));
  conv_out = register_module("conv_out", FactorizedConv3d(block_in, out_ch, out_ch));
}

at::Tensor DecoderFactorizedImpl::forward(const at::Tensor& z, CausalCache* cache) {
  if (cache != nullptr) cache->BeginChunk();
  at::Tensor h = conv_in(z, cache);
  h = mid_block_1(h, cache);
  h = mid_attn_1(h, cache);
  h = mid_block_2(h, cache);
  for (int64_t i = static_cast<int64_t>(up.size()) - 1; i >= 0; --i) {
    h = RunLevelBlocks(*up[i], h, cache);
    if (up[i]->upsample) h = up[i]->upsample(h, cache);
  }
  h = conv_out(norm_out->NormSiLU(h), cache);
  return unpatcher3d(h, cache);
}

}  // namespace wfm::tokenizer
