// safetensors: round trips for every dtype, zero-copy views, the shared fixtures, and malformed input.
#include "wfm/core/safetensors.h"

#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>

#include "test_support.h"
#include "wfm/core/file_util.h"

namespace wfm {
namespace {
namespace fs = std::filesystem;

TEST(SafetensorsTest, RoundTripsEveryDtype) {
  std::string path = testing::TempDir() + "/all.safetensors";
  TensorMap in;
  at::manual_seed(0);
  in["f32"] = at::randn({3, 4});
  in["f64"] = at::randn({2, 2}, at::kDouble);
  in["f16"] = at::randn({5}).to(at::kHalf);
  in["bf16"] = at::randn({2, 3, 1}).to(at::kBFloat16);
  in["i8"] = at::randint(-100, 100, {7}, at::kChar);
  in["u8"] = at::randint(0, 255, {7}, at::kByte);
  in["i16"] = at::randint(-1000, 1000, {3}, at::kShort);
  in["i32"] = at::randint(-100000, 100000, {3}, at::kInt);
  in["i64"] = at::randint(-100000, 100000, {2, 2}, at::kLong);
  in["bool"] = at::rand({6}) > 0.5;
  in["scalar"] = at::scalar_tensor(3.5);
  in["empty"] = at::empty({0, 4});
  in["strided"] = at::arange(12, at::kFloat).reshape({3, 4}).t();  // non-contiguous
  WFM_ASSERT_OK(WriteSafetensors(path, in, {{"format", "pt"}}));

  WFM_ASSERT_OK_AND_ASSIGN(auto st, SafetensorsFile::Open(path));
  EXPECT_EQ(st->metadata().at("format"), "pt");
  ASSERT_EQ(st->entries().size(), in.size());
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap out, st->GetAll());
  for (const auto& [name, t] : in) {
    ASSERT_TRUE(out.count(name)) << name;
    EXPECT_EQ(out[name].scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(out[name].sizes(), t.sizes()) << name;
    EXPECT_TRUE(at::equal(out[name], t.contiguous())) << name;
  }
}

TEST(SafetensorsTest, AlignedTensorsAreZeroCopyViews) {
  std::string path = testing::TempDir() + "/z.safetensors";
  WFM_ASSERT_OK(WriteSafetensors(path, {{"a", at::arange(1000, at::kFloat)}, {"b", at::ones({3}, at::kDouble)}}));
  WFM_ASSERT_OK_AND_ASSIGN(auto st, SafetensorsFile::Open(path));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor a1, st->Get("a"));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor a2, st->Get("a"));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor a3, st->GetCopy("a"));
  EXPECT_EQ(a1.data_ptr(), a2.data_ptr()) << "two Gets should view the same mapped bytes";
  EXPECT_NE(a1.data_ptr(), a3.data_ptr());
  EXPECT_TRUE(at::equal(a1, a3));
  // The view outlives the file object, and writes stay private (copy-on-write mapping).
  st.reset();
  a1.add_(1);
  WFM_ASSERT_OK_AND_ASSIGN(auto again, ReadSafetensors(path));
  EXPECT_EQ(again["a"][0].item<float>(), 0.0f);
  EXPECT_EQ(a1[0].item<float>(), 1.0f);
}

TEST(SafetensorsTest, ReadsEverySharedFixture) {
  std::string dir = testing::SharedPath("fixtures");
  if (!fs::is_directory(dir)) GTEST_SKIP() << "no shared fixtures at " << dir;
  int files = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    ++files;
    WFM_ASSERT_OK_AND_ASSIGN(auto st, SafetensorsFile::Open(e.path().string()));
    EXPECT_FALSE(st->entries().empty()) << e.path();
    WFM_ASSERT_OK_AND_ASSIGN(TensorMap all, st->GetAll());
    for (const auto& [name, t] : all) {
      if (t.is_floating_point()) EXPECT_TRUE(at::isfinite(t).all().item<bool>()) << e.path() << " " << name;
    }
  }
  EXPECT_GE(files, 18);
}

// Writes raw bytes: an 8-byte header length, the header text, then `data_bytes` bytes.
std::string WriteRaw(const std::string& dir, const std::string& name, uint64_t header_len, const std::string& header,
                     size_t data_bytes) {
  std::string bytes(8, '\0');
  std::memcpy(bytes.data(), &header_len, 8);
  bytes += header;
  bytes += std::string(data_bytes, '\x01');
  std::string path = dir + "/" + name;
  EXPECT_TRUE(WriteFileAtomically(path, bytes).ok());
  return path;
}

// The file and the same bytes given to FromBytes are both refused with `needle` and the name in the message.
void ExpectError(const std::string& path, const std::string& needle) {
  auto r = SafetensorsFile::Open(path);
  ASSERT_FALSE(r.ok()) << path << " was accepted";
  EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status();
  WFM_ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFile(path));
  auto m = SafetensorsFile::FromBytes(bytes, "shard.tar:k.latent.safetensors");
  ASSERT_FALSE(m.ok()) << path << " was accepted from memory";
  EXPECT_EQ(m.status().code(), r.status().code());
  EXPECT_NE(m.status().message().find("shard.tar:k.latent.safetensors"), std::string::npos) << m.status();
  EXPECT_NE(m.status().message().find(needle), std::string::npos) << m.status();
}

TEST(SafetensorsTest, RejectsMalformedFiles) {
  std::string d = testing::TempDir();
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  // Sanity: the well-formed version opens.
  WFM_ASSERT_OK(SafetensorsFile::Open(WriteRaw(d, "good", ok.size(), ok, 8)).status());

  WFM_ASSERT_OK(WriteFileAtomically(d + "/empty", ""));
  ExpectError(d + "/empty", "too short");
  ExpectError(WriteRaw(d, "past_eof", 4096, ok, 8), "past the end of the file");
  ExpectError(WriteRaw(d, "huge", 1ull << 40, ok, 8), "exceeds");
  ExpectError(WriteRaw(d, "truncated_data", ok.size(), ok, 4), "run past the data section");
  ExpectError(WriteRaw(d, "bad_json", 5, "{nope", 0), "not a valid JSON");
  const std::string dtype = R"({"a":{"dtype":"F8_E9","shape":[2],"data_offsets":[0,8]}})";
  ExpectError(WriteRaw(d, "dtype", dtype.size(), dtype, 8), "unknown safetensors dtype 'F8_E9'");
  const std::string count = R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";
  ExpectError(WriteRaw(d, "count", count.size(), count, 8), "needs 12 bytes but data_offsets span 8");
  const std::string overlap =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  ExpectError(WriteRaw(d, "overlap", overlap.size(), overlap, 12), "overlap");
  const std::string reversed = R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})";
  ExpectError(WriteRaw(d, "reversed", reversed.size(), reversed, 8), "end before they begin");
  const std::string neg = R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})";
  ExpectError(WriteRaw(d, "neg", neg.size(), neg, 8), "invalid shape");
  const std::string missing = R"({"a":{"dtype":"F32","shape":[2]}})";
  ExpectError(WriteRaw(d, "missing", missing.size(), missing, 8), "data_offsets");
  const std::string overflow = R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})";
  ExpectError(WriteRaw(d, "overflow", overflow.size(), overflow, 8), "too large");

  // Random bytes.
  std::string noise(4096, '\0');
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<char>((i * 2654435761u) >> 13);
  WFM_ASSERT_OK(WriteFileAtomically(d + "/noise", noise));
  EXPECT_FALSE(SafetensorsFile::Open(d + "/noise").ok());
  EXPECT_FALSE(SafetensorsFile::FromBytes(noise).ok());
  // Missing file.
  auto missing_file = SafetensorsFile::Open(d + "/nope.safetensors");
  EXPECT_EQ(missing_file.status().code(), absl::StatusCode::kNotFound);
}

// An in-memory image reads like the file: same tensors and metadata, tensors that outlive the parser and the
// caller's buffer, and every truncation refused with an error (never a crash or a short tensor).
TEST(SafetensorsTest, FromBytesReadsLikeTheFileAndRefusesEveryTruncation) {
  const std::string path = testing::TempDir() + "/m.safetensors";
  at::manual_seed(0);
  const TensorMap want{{"latent", at::randn({4, 2, 3, 5})}, {"ids", at::arange(7, at::kLong)},
                       {"half", at::randn({3}).to(at::kHalf)}};
  WFM_ASSERT_OK(WriteSafetensors(path, want, {{"source", "clip 3"}}));
  WFM_ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFile(path));
  TensorMap got;
  {
    std::string copy = bytes;
    WFM_ASSERT_OK_AND_ASSIGN(auto st, SafetensorsFile::FromBytes(std::move(copy), "mem"));
    EXPECT_EQ(st->path(), "mem");
    EXPECT_EQ(st->metadata().at("source"), "clip 3");
    WFM_ASSERT_OK_AND_ASSIGN(got, st->GetAll());
  }  // parser and buffer gone: the tensors keep the bytes alive
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, t] : want) EXPECT_TRUE(got.at(name).equal(t)) << name;
  WFM_ASSERT_OK_AND_ASSIGN(TensorMap again, ReadSafetensorsFromBytes(bytes));
  EXPECT_TRUE(again.at("latent").equal(want.at("latent")));

  for (size_t n = 0; n < bytes.size(); ++n) {
    auto r = SafetensorsFile::FromBytes(bytes.substr(0, n), "mem");
    ASSERT_FALSE(r.ok()) << "a " << n << "-byte prefix of " << bytes.size() << " bytes was accepted";
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_NE(r.status().message().find("'mem'"), std::string::npos) << r.status();
  }
  // Flipped bytes inside the header (length, JSON) are refused or, where the JSON stays valid, still read
  // consistently sized tensors; none may crash.
  for (size_t i = 0; i < 8 + 40 && i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] = static_cast<char>(bad[i] ^ 0x5a);
    auto r = SafetensorsFile::FromBytes(bad, "mem");
    if (r.ok()) {
      auto all = (*r)->GetAll();
      EXPECT_TRUE(all.ok()) << all.status();
    }
  }
}

TEST(SafetensorsTest, GetOfUnknownNameIsNotFound) {
  std::string path = testing::TempDir() + "/x.safetensors";
  WFM_ASSERT_OK(WriteSafetensors(path, {{"a", at::ones({1})}}));
  WFM_ASSERT_OK_AND_ASSIGN(auto st, SafetensorsFile::Open(path));
  auto r = st->Get("b");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("'b'"), std::string::npos);
}

TEST(SafetensorsTest, WriteFailureLeavesNoPartialFile) {
  std::string dir = testing::TempDir();
  std::string path = dir + "/out.safetensors";
  WFM_ASSERT_OK(WriteSafetensors(path, {{"a", at::ones({4})}}));
  // A dtype safetensors cannot hold fails before anything is written; the old file survives intact.
  absl::Status s = WriteSafetensors(path, {{"c", at::ones({2}, at::kComplexFloat)}});
  EXPECT_FALSE(s.ok());
  WFM_ASSERT_OK_AND_ASSIGN(auto again, ReadSafetensors(path));
  EXPECT_TRUE(again.count("a"));
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.is_regular_file();
  EXPECT_EQ(n, 1);
}

}  // namespace
}  // namespace wfm
