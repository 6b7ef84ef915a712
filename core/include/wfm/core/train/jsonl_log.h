// JSON-lines metrics log: one JSON object per line, each appended with a single write(2) on an O_APPEND
// descriptor, so concurrent readers (plot scripts, `tail -f`) never see a torn record and a crash loses at
// most the line being written. On resume, records past the resumed step are dropped first (atomically), so the
// log of a resumed run reads like the log of an uninterrupted one.
//
//   WFM_ASSIGN_OR_RETURN(auto log, train::JsonlLog::Open(out + "/metrics.jsonl", /*keep_up_to_step=*/start));
//   WFM_RETURN_IF_ERROR(log->Write({{"step", step}, {"loss", loss}, {"lr", lr}}));
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace wfm::train {

class JsonlLog {
 public:
  // Opens (creating parent directories) for appending. With `keep_up_to_step`, existing records whose "step" is
  // greater are removed first (the file is rewritten atomically); a torn last line is dropped too.
  static absl::StatusOr<std::unique_ptr<JsonlLog>> Open(const std::string& path,
                                                        std::optional<int64_t> keep_up_to_step = std::nullopt);
  ~JsonlLog();
  JsonlLog(const JsonlLog&) = delete;
  JsonlLog& operator=(const JsonlLog&) = delete;

  // Appends `record` (an object) as one line. Non-finite numbers are written as null (JSON has no NaN).
  absl::Status Write(const nlohmann::json& record);
  const std::string& path() const { return path_; }

  // Reads every complete record of a JSONL file (a torn final line is ignored; other bad lines are an error).
  static absl::StatusOr<std::vector<nlohmann::json>> ReadAll(const std::string& path);

 private:
  JsonlLog(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;
};

}  // namespace wfm::train
