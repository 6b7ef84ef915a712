// `wfm demo --quick` end to end, as `make demo` runs it: the outputs exist, every score in metrics.json is finite
// with one value per horizon step, the baselines are scored, and report.html shows exactly the numbers of
// metrics.json. Also: a bad --set knob is a usage error before any work starts, and the demo's text encoder takes
// the world's longest captions whole.
#include <cmath>
#include <filesystem>
#include <memory>

#include <ATen/ATen.h>
#include <absl/strings/str_format.h>
#include <nlohmann/json.hpp>

#include "test_support.h"
#include "wfm/core/file_util.h"
#include "wfm/core/report.h"
#include "wfm/core/text/builtin_encoder.h"
#include "wfm/core/video_io.h"
#include "wfm/core/world.h"

namespace wfm {
namespace {

namespace fs = std::filesystem;

std::string Num(const nlohmann::json& v, int digits) { return absl::StrFormat("%.*f", digits, v.get<double>()); }

TEST(WfmDemoTest, QuickRunWritesAConsistentReport) {
  const std::string out = testing::TempDir() + "/demo";
  std::string log;
  const int rc = testing::RunCommand("'" + testing::WfmTool() + "' demo --quick --threads 1 --shared '" + testing::SharedDir() +
                                         "' --output '" + out + "' 2>&1",
                                     &log);
  ASSERT_EQ(rc, 0) << log;
  for (const char* f : {"report.html", "metrics.json", "summary.json", "plan.json", "predictions/window_0.png",
                        "predictions/window_0.mp4", "tokenizer/cv.safetensors", "tokenizer/dv.safetensors", "ar/model.safetensors", "diffusion/model.safetensors",
                        "curated/summary.json", "data/train_clips.safetensors"}) {
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f << " missing\n" << log;
  }
  WFM_ASSERT_OK_AND_ASSIGN(std::string metrics_text, ReadFile(out + "/metrics.json"));
  WFM_ASSERT_OK_AND_ASSIGN(std::string html, ReadFile(out + "/report.html"));
  const nlohmann::json metrics = nlohmann::json::parse(metrics_text);
  const int64_t horizon = metrics["task"]["future_frames"];
  ASSERT_GT(horizon, 0);
  ASSERT_TRUE(metrics["predictors"].contains("copy_last"));
  ASSERT_TRUE(metrics["predictors"].contains("constant_velocity"));
  int scored = 0;
  for (const char* model : {"ar", "diffusion"}) ASSERT_TRUE(metrics["predictors"].contains(model)) << model;
  // The tokenizers' ceiling rows (encode + decode of the true future).
  for (const char* ref : {"cv_roundtrip", "dv_roundtrip"}) {
    ASSERT_TRUE(metrics["predictors"].contains(ref)) << ref;
    EXPECT_EQ(metrics["predictors"][ref]["kind"], "reference") << ref;
  }
  for (const auto& [name, p] : metrics["predictors"].items()) {
    EXPECT_EQ(p["status"], "ok") << name;  // both world models, both baselines and both ceilings were scored
    if (p["status"] != "ok") {
      // An honest "not evaluated" row, never numbers.
      EXPECT_NE(html.find(HtmlEscape(p["status"].get<std::string>())), std::string::npos) << name;
      continue;
    }
    ++scored;
    for (const char* key : {"psnr", "ssim", "pos_err_px", "detected"}) {
      ASSERT_TRUE(p["mean"][key].is_number()) << name << " " << key;
      EXPECT_TRUE(std::isfinite(p["mean"][key].get<double>())) << name << " " << key;
      ASSERT_EQ(p["per_step"][key].size(), static_cast<size_t>(horizon)) << name << " " << key;
      for (const auto& v : p["per_step"][key]) EXPECT_TRUE(v.is_number() && std::isfinite(v.get<double>())) << name;
    }
    EXPECT_GT(p["mean"]["psnr"].get<double>(), 5.0) << name;
    EXPECT_LE(p["mean"]["ssim"].get<double>(), 1.0) << name;
    // The report's row for this predictor carries exactly the numbers of metrics.json.
    const std::string row = absl::StrFormat(
        "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>",
        HtmlEscape(p["label"].get<std::string>()), p["kind"].get<std::string>(), Num(p["mean"]["psnr"], 2),
        Num(p["mean"]["ssim"], 3), Num(p["mean"]["pos_err_px"], 2), Num(p["mean"]["detected"], 2));
    EXPECT_NE(html.find(row), std::string::npos) << "report row missing: " << row;
  }
  EXPECT_EQ(scored, 7);  // AR, diffusion (two decodings), two baselines, two tokenizer ceilings
  EXPECT_NE(html.find("<svg"), std::string::npos);
  // The example video: given + predicted frames of a window.
  WFM_ASSERT_OK_AND_ASSIGN(VideoInfo info, ProbeVideo(out + "/predictions/window_0.mp4", /*exact=*/true));
  EXPECT_EQ(info.num_frames, metrics["task"]["context_frames"].get<int64_t>() + horizon);
}

TEST(WfmDemoTest, BadKnobIsAUsageError) {
  std::string log;
  EXPECT_EQ(testing::RunCommand("'" + testing::WfmTool() + "' demo --quick --output '" + testing::TempDir() +
                                    "/d' --set no_such_knob=1 2>&1",
                                &log),
            2)
      << log;
  EXPECT_NE(log.find("no_such_knob"), std::string::npos) << log;
}

// The built-in text encoder reads byte tokens + EOS and cuts prompts at max_length. The demo's max_length
// (plan.json) must hold the longest captions the world writes at the demo's settings: seed 2006 gives 344 bytes
// (the longest over seeds 1000-2500), 1658 gives 336. The world stage itself refuses a caption that would be cut.
TEST(WfmDemoTest, TextEncoderTakesTheLongestWorldCaptionsWhole) {
  const std::string out = testing::TempDir() + "/demo_world";
  std::string log;
  ASSERT_EQ(testing::RunCommand("'" + testing::WfmTool() + "' demo --quick --threads 1 --stages world --shared '" +
                                    testing::SharedDir() + "' --output '" + out + "' 2>&1",
                                &log),
            0)
      << log;
  WFM_ASSERT_OK_AND_ASSIGN(std::string plan_text, ReadFile(out + "/plan.json"));
  WFM_ASSERT_OK_AND_ASSIGN(std::string summary_text, ReadFile(out + "/summary.json"));
  const nlohmann::json plan = nlohmann::json::parse(plan_text), summary = nlohmann::json::parse(summary_text);
  const int64_t max_length = plan["text_encoder"]["max_length"];
  for (const char* split : {"train", "heldout"}) {
    EXPECT_LT(summary["world"][split]["longest_caption_bytes"].get<int64_t>(), max_length) << split;
  }

  world::WorldOptions wo;
  wo.width = wo.height = plan["world"]["size"];
  wo.fps = plan["world"]["fps"];
  wo.num_frames = plan["world"]["clip_frames"];
  wo.max_objects = plan["world"]["max_objects"];
  text::BuiltinTextEncoderOptions eo;  // a tiny encoder: only its tokenization matters here
  eo.d_model = 32;
  eo.num_layers = 1;
  eo.num_heads = 2;
  eo.d_kv = 16;
  eo.d_ff = 64;
  eo.pad_to_max_length = false;
  for (uint64_t seed : {2006u, 1658u}) {
    const std::string caption = world::SimulateClip(wo, seed).caption;
    ASSERT_GT(caption.size(), 300u) << "seed " << seed << " no longer gives a long caption: " << caption
                                    << "\nHINT: pick the longest caption of the current world for this test";
    for (int64_t length : {max_length, int64_t{256}}) {
      eo.max_length = length;
      WFM_ASSERT_OK_AND_ASSIGN(std::unique_ptr<text::T5TextEncoder> encoder, text::CreateBuiltinTextEncoder(eo));
      WFM_ASSERT_OK_AND_ASSIGN(text::TextEmbeddings e, encoder->Encode({caption}));
      const int64_t tokens = e.mask.sum().item<int64_t>();
      if (length == max_length) {
        EXPECT_EQ(tokens, static_cast<int64_t>(caption.size()) + 1)
            << "seed " << seed << ": the demo's text encoder (max_length " << max_length << ") cuts this caption of "
            << caption.size() << " bytes: " << caption;
      } else {
        EXPECT_EQ(tokens, 256) << "the old 256-token limit cut these captions";  // the check above can fail
      }
    }
  }
}

}  // namespace
}  // namespace wfm
