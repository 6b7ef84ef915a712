// `cmake --install` and examples/multiverse end to end, as a project that uses wfm meets it: the build installs
// into a prefix with a relocatable CMake package, the prefix still works after it is moved, a standalone CMake
// project finds it (find_package(wfm)), builds against it, and the example writes N different futures of a video
// as MP4s from tiny random models made here (built-in text encoder; DV tokenizer + AR world model, and CV
// tokenizer + diffusion DiT for --model diffusion).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "install_test_config.h"
#include "test_support.h"
#include "wfm/autoregressive/config.h"
#include "wfm/autoregressive/transformer.h"
#include "wfm/autoregressive/weights.h"
#include "wfm/core/file_util.h"
#include "wfm/core/checkpoint.h"
#include "wfm/core/video_io.h"
#include "wfm/diffusion/dit.h"
#include "wfm/tokenizer/config.h"
#include "wfm/tokenizer/network.h"
#include "wfm/tokenizer/weights.h"

namespace wfm {
namespace {

namespace fs = std::filesystem;

std::string Q(const std::string& s) { return "'" + s + "'"; }

// Runs a shell command and checks its exit status; the output goes into the failure message.
::testing::AssertionResult Runs(const std::string& command, std::string* output = nullptr, int expect = 0) {
  std::string out;
  const int rc = testing::RunCommand(command, &out);
  if (output) *output = out;
  if (rc == expect) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "exit " << rc << " (expected " << expect << ") from\n  " << command
                                       << "\n" << out;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A tiny DV tokenizer (4x8x8, FSQ levels 8x8x8 = 512 codes) with random weights: config.json + safetensors.
void MakeTinyTokenizer(const std::string& dir) {
  tokenizer::TokenizerConfig c = tokenizer::BaseConfig("DV");
  c.channels = 8;
  c.channels_mult = {2, 4, 4};
  c.num_res_blocks = 1;
  c.patch_size = 2;
  c.z_channels = 16;
  c.spatial_compression = 8;
  c.temporal_compression = 4;
  c.levels = {8, 8, 8};
  c.embedding_dim = 3;
  WFM_ASSERT_OK(c.Validate());
  at::manual_seed(11);
  tokenizer::TokenizerNetwork net(c);
  WFM_ASSERT_OK(WriteFileAtomically(dir + "/tokenizer.json", c.ToJsonString()));
  WFM_ASSERT_OK(tokenizer::SaveTokenizerWeights(*net, dir + "/tokenizer.safetensors"));
}

// A tiny Video2World AR model (text cross-attention, <bov>) on a 3x8x8 token grid = 9 frames of 64x64.
void MakeTinyWorldModel(const std::string& dir, int64_t context_dim) {
  auto preset = ar::ArConfig::Preset("tiny-v2w");
  WFM_ASSERT_OK(preset);
  ar::ArConfig c = *preset;
  c.video_latent_shape = {3, 8, 8};
  c.context_dim = context_dim;
  c.max_seq_len = c.VideoTokens() + 1;
  c.original_seq_len = c.max_seq_len;
  WFM_ASSERT_OK(c.Validate());
  ar::ArTransformer net(c);
  net->InitWeights(5);
  WFM_ASSERT_OK(WriteFileAtomically(dir + "/world_model.json", c.ToJson().dump(1)));
  WFM_ASSERT_OK(ar::SaveWeights(*net, dir + "/world_model.safetensors"));
}

// A tiny CV tokenizer (4x8x8, 16 latent channels: tests/diffusion/data/cv_tiny_tokenizer.json) and a tiny
// Video2World DiT (width 64, 2 blocks, text width 32) with random weights, perturbed so that every part of the
// network matters: config json + safetensors each.
void MakeTinyDiffusionModels(const std::string& dir) {
  WFM_ASSERT_OK_AND_ASSIGN(tokenizer::TokenizerConfig c,
                           tokenizer::TokenizerConfig::FromJsonFile(testing::SourceDir() +
                                                                    "/tests/diffusion/data/cv_tiny_tokenizer.json"));
  WFM_ASSERT_OK(c.Validate());
  at::manual_seed(12);
  tokenizer::TokenizerNetwork tok(c);
  WFM_ASSERT_OK(WriteFileAtomically(dir + "/cv_tokenizer.json", c.ToJsonString()));
  WFM_ASSERT_OK(tokenizer::SaveTokenizerWeights(*tok, dir + "/cv_tokenizer.safetensors"));
  WFM_ASSERT_OK_AND_ASSIGN(diffusion::DiTConfig dc, diffusion::DiTConfig::Preset("tiny-video2world"));
  WFM_ASSERT_OK_AND_ASSIGN(std::shared_ptr<diffusion::DiffusionNetwork> net, diffusion::MakeDiffusionNetwork(dc));
  {
    at::NoGradGuard g;
    for (auto& p : net->parameters()) p.add_(at::randn_like(p) * 0.05);
  }
  WFM_ASSERT_OK(WriteFileAtomically(dir + "/dit.json", dc.ToJson().dump(1)));
  WFM_ASSERT_OK(SaveModule(*net, dir + "/dit.safetensors"));
}

// Every `#include "..."` of the installed headers resolves inside the prefix (or is Abseil, found by the
// consumer), so no installed header reaches into a source tree.
void ExpectHeadersSelfContained(const fs::path& include_dir) {
  const std::regex inc(R"re(#include\s+"([^"]+)")re");
  int headers = 0;
  for (const auto& e : fs::recursive_directory_iterator(include_dir)) {
    if (!e.is_regular_file()) continue;
    ++headers;
    const std::string text = Slurp(e.path().string());
    for (std::sregex_iterator it(text.begin(), text.end(), inc), end; it != end; ++it) {
      const std::string target = (*it)[1];
      if (target.rfind("absl/", 0) == 0) continue;
      EXPECT_TRUE(fs::exists(include_dir / target) || fs::exists(e.path().parent_path() / target))
          << e.path() << " includes \"" << target << "\", which is not installed";
    }
  }
  EXPECT_GT(headers, 20);
}

TEST(InstallTest, RelocatedPackageBuildsAndRunsTheMultiverseExample) {
  const std::string tmp = testing::TempDir();
  const std::string cmake = WFM_TEST_CMAKE_COMMAND;
  const std::string libdir = WFM_TEST_LIBDIR;

  // ---- install, then move the prefix: nothing may point back at the staging prefix or the build tree ----
  const fs::path staged = fs::path(tmp) / "staged", prefix = fs::path(tmp) / "moved" / "wfm-0.1";
  ASSERT_TRUE(Runs(Q(cmake) + " --install " + Q(testing::BinaryDir()) + " --prefix " + Q(staged.string())));
  fs::create_directories(prefix.parent_path());
  fs::rename(staged, prefix);
  const fs::path pkg = prefix / libdir / "cmake" / "wfm";
  for (const char* f : {"wfmConfig.cmake", "wfmConfigVersion.cmake", "wfmTargets.cmake"})
    EXPECT_TRUE(fs::exists(pkg / f)) << "missing " << (pkg / f);
  for (const auto& f : fs::directory_iterator(pkg)) {
    const std::string text = Slurp(f.path().string());
    EXPECT_EQ(text.find(staged.string()), std::string::npos) << f.path() << " names the install prefix";
    EXPECT_EQ(text.find(testing::BinaryDir()), std::string::npos) << f.path() << " names the build tree";
  }
  // Headers: every module's public headers, and nothing that reaches outside the prefix.
  for (const auto& module : fs::directory_iterator(testing::SourceDir())) {
    const fs::path headers = module.path() / "include" / "wfm";
    if (!fs::is_directory(headers)) continue;
    for (const auto& h : fs::recursive_directory_iterator(headers))
      if (h.is_regular_file() && h.path().extension() == ".h")
        EXPECT_TRUE(fs::exists(prefix / "include" / "wfm" / fs::relative(h.path(), headers)))
            << "not installed: " << h.path();
  }
  ExpectHeadersSelfContained(prefix / "include");
  // Binaries: $ORIGIN-relative RUNPATHs, never the build tree.
  std::vector<std::string> binaries{(prefix / "bin" / "wfm").string()};
  for (const auto& f : fs::directory_iterator(prefix / libdir))
    if (f.path().filename().string().rfind("libwfm_", 0) == 0) binaries.push_back(f.path().string());
  EXPECT_GE(binaries.size(), 4u);
  for (const auto& b : binaries) {
    std::string dyn;
    if (testing::RunCommand("readelf -d " + Q(b), &dyn) != 0) break;  // no binutils: the runs below still check
    if (b.find("libwfm_sentencepiece") != std::string::npos) continue;  // dlopen'ed, links nothing of ours
    EXPECT_NE(dyn.find("$ORIGIN"), std::string::npos) << b << " has no $ORIGIN RUNPATH:\n" << dyn;
    EXPECT_EQ(dyn.find(testing::BinaryDir()), std::string::npos) << b << " points into the build tree:\n" << dyn;
  }
  const std::string wfm_tool = Q((prefix / "bin" / "wfm").string());
  // The Python package (when the bindings are built) imports from the moved prefix.
  const std::string python = WFM_TEST_PYTHON;
  for (const auto& d : fs::directory_iterator(prefix / libdir)) {
    const fs::path site = d.path() / "site-packages";
    if (python.empty() || d.path().filename().string().rfind("python", 0) != 0 || !fs::exists(site / "wfm")) continue;
    std::string where;
    EXPECT_TRUE(Runs("PYTHONPATH=" + Q(site.string()) + " " + Q(python) +
                         " -c 'import wfm, wfm.core; print(wfm.__file__)'",
                     &where));
    EXPECT_NE(where.find(site.string()), std::string::npos) << "imported wfm from elsewhere: " << where;
  }

  // ---- inputs: tiny random models, a built-in text encoder and a clip of the embedded world (installed tool) ----
  const std::string models = tmp + "/models", input = tmp + "/input";
  fs::create_directories(models);
  ASSERT_NO_FATAL_FAILURE(MakeTinyTokenizer(models));
  ASSERT_NO_FATAL_FAILURE(MakeTinyWorldModel(models, /*context_dim=*/32));
  ASSERT_TRUE(Runs(wfm_tool + " text init-builtin --output " + Q(models + "/text.safetensors") +
                   " --d-model 32 --layers 1 --heads 2 --d-kv 16 --d-ff 64 --max-length 64 --seed 1"));
  ASSERT_TRUE(Runs(wfm_tool + " world --output " + Q(input) +
                   " --num-clips 1 --frames 12 --size 80x64 --fps 8 --seed 3"));

  // ---- the standalone example project, configured against the moved prefix ----
  const std::string build = tmp + "/multiverse-build";
  std::string configure = Q(cmake) + " -S " + Q(testing::SourceDir() + "/examples/multiverse") + " -B " +
                          Q(build) + " -G " + Q(WFM_TEST_GENERATOR) + " -DCMAKE_MAKE_PROGRAM=" +
                          Q(WFM_TEST_MAKE_PROGRAM) + " -DCMAKE_CXX_COMPILER=" + Q(WFM_TEST_CXX_COMPILER) +
                          " -DCMAKE_PREFIX_PATH=" + Q(prefix.string());
  // ccache: paths under the scratch dir are rewritten relative, so reruns hit the cache.
  const std::string ccache = WFM_TEST_CCACHE;
  if (!ccache.empty()) configure += " -DCMAKE_CXX_COMPILER_LAUNCHER=" + Q(ccache);
  const std::string env = "CCACHE_BASEDIR=" + Q(tmp) + " ";
  std::string configured;
  ASSERT_TRUE(Runs(env + configure, &configured));
  EXPECT_NE(configured.find("headers in " + (prefix / "include").string() + ", tool " +
                            (prefix / "bin" / "wfm").string()),
            std::string::npos)
      << "the package's paths must point into the moved prefix:\n" << configured;
  ASSERT_TRUE(Runs(env + Q(cmake) + " --build " + Q(build)));
  const std::string example = Q(build + "/multiverse");

  // ---- N futures of one video ----
  const std::string common = example + " --tokenizer-config " + Q(models + "/tokenizer.json") +
                             " --tokenizer-weights " + Q(models + "/tokenizer.safetensors") + " --model-config " +
                             Q(models + "/world_model.json") + " --text-encoder " + Q(models + "/text.safetensors") +
                             " --prompt 'a red ball falls and bounces' --video " + Q(input + "/world_000000.mp4") +
                             " --input-frames 5 --frames 9";
  const std::string weights = " --model-weights " + Q(models + "/world_model.safetensors");
  std::string out;
  ASSERT_TRUE(Runs(common + weights + " --futures 3 --seed 7 --output-dir " + Q(tmp + "/futures"), &out));
  std::cout << out;
  std::vector<at::Tensor> futures;
  for (int i = 0; i < 3; ++i) {
    const std::string path = tmp + "/futures/future_0" + std::to_string(i) + ".mp4";
    WFM_ASSERT_OK_AND_ASSIGN(VideoInfo info, ProbeVideo(path, /*exact=*/true));
    EXPECT_EQ(info.num_frames, 9) << path;
    EXPECT_EQ(info.width, 64) << path;
    EXPECT_EQ(info.height, 64) << path;
    EXPECT_DOUBLE_EQ(info.fps.value(), 8.0) << path << ": the input's frame rate is kept";
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor frames, DecodeVideo(path));
    ASSERT_EQ(frames.sizes(), (at::IntArrayRef{9, 64, 64, 3})) << path;
    futures.push_back(frames.to(at::kFloat));
  }
  EXPECT_FALSE(fs::exists(tmp + "/futures/future_03.mp4"));
  // The futures share the past (the 5 prompt frames decode from the same tokens) and diverge after it.
  for (int i = 0; i < 3; ++i)
    for (int j = i + 1; j < 3; ++j) {
      const double past = (futures[i].narrow(0, 0, 5) - futures[j].narrow(0, 0, 5)).abs().mean().item<double>();
      const double future = (futures[i].narrow(0, 5, 4) - futures[j].narrow(0, 5, 4)).abs().mean().item<double>();
      std::printf("futures %d vs %d: mean |diff| %.3f over the prompt frames, %.3f over the generated ones\n", i, j,
                  past, future);
      EXPECT_GT(future, 1.0) << "futures " << i << " and " << j << " are the same future";
      EXPECT_GT(future, 4 * past) << "HINT: the prompt frames should agree across futures";
    }

  // Future i of a seed does not depend on how many futures are drawn with it, and reruns are identical.
  ASSERT_TRUE(Runs(common + weights + " --futures 1 --seed 7 --output-dir " + Q(tmp + "/again"), &out));
  WFM_ASSERT_OK_AND_ASSIGN(at::Tensor again, DecodeVideo(tmp + "/again/future_00.mp4"));
  EXPECT_EQ(testing::MaxAbsDiff(again.to(at::kFloat), futures[0]), 0.0)
      << "HINT: future 0 of seed 7 must be the same video whether 1 or 3 futures are drawn";

  // Errors are clear and name the problem.
  EXPECT_TRUE(Runs(common + " --model-weights " + Q(models + "/missing.safetensors") + " --output-dir " +
                       Q(tmp + "/bad"),
                   &out, 1));
  EXPECT_NE(out.find("missing.safetensors"), std::string::npos) << out;
  EXPECT_TRUE(Runs(example + " --futures", &out, 1));
  EXPECT_NE(out.find("bad argument '--futures'"), std::string::npos) << out;
  EXPECT_TRUE(Runs(example, &out, 2));
  EXPECT_NE(out.find("usage: multiverse"), std::string::npos) << out;
  EXPECT_TRUE(Runs(common + weights + " --output-dir " + Q(tmp + "/bad") + " --frames 10", &out, 1));
  EXPECT_NE(out.find("num_frames must be 1 + k*4"), std::string::npos) << out;

  // ---- --model diffusion: N futures from a CV tokenizer + Video2World DiT, at the input's size ----
  ASSERT_NO_FATAL_FAILURE(MakeTinyDiffusionModels(models));
  const std::string diffusion = example + " --model diffusion --tokenizer-config " + Q(models + "/cv_tokenizer.json") +
                                " --tokenizer-weights " + Q(models + "/cv_tokenizer.safetensors") +
                                " --model-config " + Q(models + "/dit.json") + " --text-encoder " +
                                Q(models + "/text.safetensors") + " --prompt 'a red ball falls and bounces' --video " +
                                Q(input + "/world_000000.mp4") + " --input-frames 5 --frames 9 --steps 3 --guidance 3";
  ASSERT_TRUE(Runs(diffusion + " --model-weights " + Q(models + "/dit.safetensors") +
                       " --futures 2 --seed 7 --output-dir " + Q(tmp + "/diffusion"),
                   &out));
  std::cout << out;
  std::vector<at::Tensor> dfutures;
  for (int i = 0; i < 2; ++i) {
    const std::string path = tmp + "/diffusion/future_0" + std::to_string(i) + ".mp4";
    WFM_ASSERT_OK_AND_ASSIGN(VideoInfo info, ProbeVideo(path, /*exact=*/true));
    EXPECT_EQ(info.num_frames, 9) << path;
    EXPECT_EQ(info.width, 80) << path << ": the input's size (a multiple of 16) is kept";
    EXPECT_EQ(info.height, 64) << path;
    EXPECT_DOUBLE_EQ(info.fps.value(), 8.0) << path;
    WFM_ASSERT_OK_AND_ASSIGN(at::Tensor frames, DecodeVideo(path));
    dfutures.push_back(frames.to(at::kFloat));
  }
  EXPECT_FALSE(fs::exists(tmp + "/diffusion/future_02.mp4"));
  // The condition frames (2 latent frames = the first 5 of the causal tokenizer) are shared; the rest diverge.
  const double past = (dfutures[0].narrow(0, 0, 5) - dfutures[1].narrow(0, 0, 5)).abs().mean().item<double>();
  const double future = (dfutures[0].narrow(0, 5, 4) - dfutures[1].narrow(0, 5, 4)).abs().mean().item<double>();
  std::printf("diffusion futures: mean |diff| %.3f over the condition frames, %.3f over the generated ones\n", past,
              future);
  EXPECT_GT(future, 0.5) << "the two diffusion futures are the same future";
  EXPECT_GT(future, 4 * past) << "HINT: the condition frames should agree across futures";
  // A discrete tokenizer for the diffusion model is refused with a clear message.
  EXPECT_TRUE(Runs(example + " --model diffusion --tokenizer-config " + Q(models + "/tokenizer.json") +
                       " --tokenizer-weights " + Q(models + "/tokenizer.safetensors") + " --model-config " +
                       Q(models + "/dit.json") + " --model-weights " + Q(models + "/dit.safetensors") + " --video " +
                       Q(input + "/world_000000.mp4") + " --output-dir " + Q(tmp + "/bad"),
                   &out, 1));
  EXPECT_NE(out.find("continuous video tokenizer (CV)"), std::string::npos) << out;
}

}  // namespace
}  // namespace wfm
