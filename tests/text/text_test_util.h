// Helpers shared by the text tests: training a small SentencePiece model with `spm_train`, asking `spm_encode`
// for ids, and generating (once per build tree) the plain-torch T5 reference of t5_reference.py.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "test_support.h"
#include "wfm/core/text/tokenizer.h"

namespace wfm::text::testing {

using ::wfm::testing::BinaryDir;
using ::wfm::testing::RunCommand;
using ::wfm::testing::SourceDir;

inline bool HaveTool(const std::string& tool) { return RunCommand("command -v " + tool) == 0; }

// Video-caption-like sentences: the corpus the small SentencePiece models are trained on.
inline std::string CaptionCorpus() {
  const char* subjects[] = {"A robot arm", "The red car", "A person", "Two dogs", "A drone", "The camera",
                            "A chef", "Waves", "A cyclist", "The train"};
  const char* verbs[] = {"picks up", "drives past", "walks toward", "runs across", "flies over", "pans across",
                         "slices", "crash against", "rides along", "leaves"};
  const char* objects[] = {"a blue cup on the table.", "the busy intersection at night.", "the kitchen counter.",
                           "a sunny green park.", "the snowy mountain ridge.", "a crowded city street.",
                           "fresh vegetables slowly.", "the rocky shore.", "a narrow forest path.", "the station."};
  std::string out;
  for (int i = 0; i < 10; ++i)
    for (int j = 0; j < 10; ++j) absl::StrAppend(&out, subjects[i], " ", verbs[(i + j) % 10], " ", objects[j], "\n");
  return out;
}

// Trains DIR/NAME.model with spm_train; returns its path ("" when spm_train is unavailable or fails, with
// *error set). `flags` are extra spm_train flags.
inline std::string TrainSpm(const std::string& dir, const std::string& name, int vocab_size, const std::string& flags,
                            std::string* error) {
  const std::string corpus = dir + "/" + name + ".txt";
  std::ofstream(corpus) << CaptionCorpus();
  const std::string prefix = dir + "/" + name;
  std::string out;
  const int rc = RunCommand(absl::StrCat("spm_train --input=", corpus, " --model_prefix=", prefix,
                                         " --vocab_size=", vocab_size, " --hard_vocab_limit=false ", flags), &out);
  if (rc != 0) {
    *error = absl::StrCat("spm_train failed (rc ", rc, "): ", out.substr(out.size() > 2000 ? out.size() - 2000 : 0));
    return "";
  }
  return prefix + ".model";
}

// `spm_encode --output_format=id` of each line (no newlines inside lines).
inline std::vector<std::vector<int32_t>> SpmEncodeIds(const std::string& model, const std::vector<std::string>& lines,
                                                      const std::string& dir) {
  const std::string in = dir + "/spm_input.txt", out = dir + "/spm_output.txt";
  {
    std::ofstream f(in);
    for (const auto& l : lines) f << l << "\n";
  }
  std::string log;
  EXPECT_EQ(RunCommand(absl::StrCat("spm_encode --model=", model, " --output_format=id < ", in, " > ", out), &log), 0)
      << log;
  std::vector<std::vector<int32_t>> ids;
  std::ifstream f(out);
  std::string line;
  while (std::getline(f, line)) {
    std::vector<int32_t> row;
    for (absl::string_view tok : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
      int32_t v = 0;
      EXPECT_TRUE(absl::SimpleAtoi(tok, &v)) << line;
      row.push_back(v);
    }
    ids.push_back(row);
  }
  return ids;
}

// The output directory of t5_reference.py for `ffn` ("relu" / "gated-gelu"), generated once per build tree and
// script version (into a temp dir, then renamed, so concurrent test processes are safe). "" with *error set when
// /usr/bin/python3 with torch is unavailable.
inline std::string T5ReferenceDir(const std::string& ffn, std::string* error) {
  namespace fs = std::filesystem;
  const std::string script = SourceDir() + "/tests/text/t5_reference.py";
  std::ifstream s(script);
  const std::string content((std::istreambuf_iterator<char>(s)), std::istreambuf_iterator<char>());
  const fs::path final_dir =
      fs::path(BinaryDir()) / "test_cache" / "t5_reference" / (ffn + "-" + Fingerprint(content).substr(0, 12));
  if (fs::exists(final_dir / "ref.safetensors")) return final_dir.string();
  if (RunCommand("/usr/bin/python3 -c 'import torch'") != 0) {
    *error = "/usr/bin/python3 with torch is not available";
    return "";
  }
  const fs::path tmp = final_dir.string() + ".tmp" + std::to_string(::getpid());
  fs::create_directories(tmp);
  std::string log;
  if (RunCommand(absl::StrCat("/usr/bin/python3 ", script, " ", tmp.string(), " ", ffn), &log) != 0) {
    *error = "t5_reference.py failed: " + log;
    return "";
  }
  std::error_code ec;
  fs::rename(tmp, final_dir, ec);  // loses the race harmlessly if another process renamed first
  if (ec) fs::remove_all(tmp, ec);
  return final_dir.string();
}

}  // namespace wfm::text::testing
