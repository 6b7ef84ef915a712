// Embedding cache: entries keyed by (model, prompt), misses-only encoding, identical outputs to the wrapped
// encoder, corrupt entries healed, foreign files never served.
#include "wfm/core/text/embedding_cache.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>

#include "test_support.h"
#include "wfm/core/safetensors.h"
#include "wfm/core/text/builtin_encoder.h"

namespace wfm::text {
namespace {

namespace fs = std::filesystem;
using ::wfm::testing::MaxAbsDiff;
using ::wfm::testing::TempDir;

// Counts the prompts the wrapped encoder really encodes.
class CountingEncoder : public TextEncoder {
 public:
  explicit CountingEncoder(std::unique_ptr<TextEncoder> inner) : inner_(std::move(inner)) {}
  absl::StatusOr<TextEmbeddings> Encode(const std::vector<std::string>& prompts) override {
    encoded += static_cast<int64_t>(prompts.size());
    return inner_->Encode(prompts);
  }
  int64_t dim() const override { return inner_->dim(); }
  int64_t max_length() const override { return inner_->max_length(); }
  std::string model_id() const override { return inner_->model_id(); }
  c10::Device device() const override { return inner_->device(); }
  std::shared_ptr<torch::nn::Module> module() override { return inner_->module(); }
  int64_t encoded = 0;

 private:
  std::unique_ptr<TextEncoder> inner_;
};

std::unique_ptr<T5TextEncoder> SmallEncoder(uint64_t seed = 1) {
  BuiltinTextEncoderOptions o;
  o.d_model = 16;
  o.num_layers = 1;
  o.num_heads = 2;
  o.d_kv = 8;
  o.d_ff = 32;
  o.max_length = 32;
  o.seed = seed;
  auto enc = CreateBuiltinTextEncoder(o);
  EXPECT_TRUE(enc.ok()) << enc.status();
  return std::move(*enc);
}

TEST(EmbeddingCache, GetPutAndKeys) {
  EmbeddingCache cache(TempDir());
  WFM_ASSERT_OK_AND_ASSIGN(auto miss, cache.Get("m", "a cat"));
  EXPECT_FALSE(miss.has_value());
  const at::Tensor e = at::randn({5, 8});
  WFM_ASSERT_OK(cache.Put("m", "a cat", e));
  WFM_ASSERT_OK_AND_ASSIGN(auto hit, cache.Get("m", "a cat"));
  ASSERT_TRUE(hit.has_value());
  EXPECT_TRUE(hit->equal(e));
  WFM_ASSERT_OK_AND_ASSIGN(auto other_model, cache.Get("m2", "a cat"));
  EXPECT_FALSE(other_model.has_value());
  EXPECT_NE(cache.PathFor("m", "a cat"), cache.PathFor("m", "a cat "));
  // Arbitrary bytes (not UTF-8) are fine as prompts.
  WFM_ASSERT_OK(cache.Put("m", std::string("\xff\xfe\0x", 4), e));
  WFM_ASSERT_OK_AND_ASSIGN(auto bytes, cache.Get("m", std::string("\xff\xfe\0x", 4)));
  EXPECT_TRUE(bytes.has_value());

  // A file at the right path whose stored key differs (a collision) is a miss, not a wrong answer.
  fs::copy_file(cache.PathFor("m", "a cat"), cache.PathFor("m", "a dog"));
  WFM_ASSERT_OK_AND_ASSIGN(auto collided, cache.Get("m", "a dog"));
  EXPECT_FALSE(collided.has_value());
  // Corruption is reported with the file name.
  std::ofstream(cache.PathFor("m", "a cat"), std::ios::trunc) << "garbage";
  auto corrupt = cache.Get("m", "a cat");
  ASSERT_FALSE(corrupt.ok());
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(corrupt.status().message().find(cache.PathFor("m", "a cat")), std::string::npos) << corrupt.status();
}

TEST(CachedTextEncoder, EncodesOnlyMissesAndMatchesTheEncoder) {
  const std::string dir = TempDir();
  auto reference = SmallEncoder();
  auto counting = std::make_unique<CountingEncoder>(SmallEncoder());
  CountingEncoder* counter = counting.get();
  CachedTextEncoder cached(std::move(counting), dir);

  const std::vector<std::string> a = {"a red car", "a cat", "a red car"};
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings ea, cached.Encode(a));
  EXPECT_EQ(counter->encoded, 2);  // duplicates encoded once
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings ra, reference->Encode(a));
  ASSERT_EQ(ea.embeddings.sizes(), ra.embeddings.sizes());
  EXPECT_LT(MaxAbsDiff(ea.embeddings, ra.embeddings), 1e-5);
  EXPECT_TRUE(ea.mask.equal(ra.mask));

  const std::vector<std::string> b = {"a cat", "the train leaves the station", "a red car"};
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings eb, cached.Encode(b));
  EXPECT_EQ(counter->encoded, 3);  // only the new prompt
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings rb, reference->Encode(b));
  EXPECT_LT(MaxAbsDiff(eb.embeddings, rb.embeddings), 1e-5);
  EXPECT_EQ(cached.hits(), 2);
  EXPECT_EQ(cached.misses(), 3);

  // A new process (new wrapper) reads the same entries; a corrupt one is re-encoded and rewritten.
  auto counting2 = std::make_unique<CountingEncoder>(SmallEncoder());
  CountingEncoder* counter2 = counting2.get();
  CachedTextEncoder again(std::move(counting2), dir);
  std::ofstream(again.cache().PathFor(reference->model_id(), "a cat"), std::ios::trunc) << "garbage";
  again.set_pad_to_max_length(false);
  WFM_ASSERT_OK_AND_ASSIGN(TextEmbeddings ec, again.Encode(b));
  EXPECT_EQ(counter2->encoded, 1);
  EXPECT_LT(ec.embeddings.size(1), 32);
  EXPECT_LT(MaxAbsDiff(ec.embeddings, rb.embeddings.slice(1, 0, ec.embeddings.size(1))), 1e-5);
  WFM_ASSERT_OK_AND_ASSIGN(auto healed, again.cache().Get(reference->model_id(), "a cat"));
  EXPECT_TRUE(healed.has_value());

  // Another model never sees these entries.
  auto counting3 = std::make_unique<CountingEncoder>(SmallEncoder(/*seed=*/2));
  CountingEncoder* counter3 = counting3.get();
  CachedTextEncoder other(std::move(counting3), dir);
  WFM_ASSERT_OK(other.Encode({"a cat"}).status());
  EXPECT_EQ(counter3->encoded, 1);
}

}  // namespace
}  // namespace wfm::text
