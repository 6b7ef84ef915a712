// JSONL metrics log (see train/jsonl_log.h).
#include "wfm/core/train/jsonl_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "wfm/core/file_util.h"
#include "wfm/core/status.h"

namespace wfm::train {
namespace {

// JSON cannot hold NaN/Inf: replace them by null, recursively.
nlohmann::json Sanitize(const nlohmann::json& j) {
  if (j.is_number_float()) return std::isfinite(j.get<double>()) ? j : nlohmann::json(nullptr);
  if (j.is_object() || j.is_array()) {
    nlohmann::json out = j;
    for (auto& v : out) v = Sanitize(v);
    return out;
  }
  return j;
}

}  // namespace

absl::StatusOr<std::vector<nlohmann::json>> JsonlLog::ReadAll(const std::string& path) {
  WFM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::vector<nlohmann::json> out;
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    nlohmann::json j = nlohmann::json::parse(lines[i].begin(), lines[i].end(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      const bool torn_tail = i + 1 == lines.size();  // no newline after it: an interrupted append
      if (torn_tail) break;
      return absl::DataLossError(absl::StrCat(path, ":", i + 1, ": not a JSON object"));
    }
    out.push_back(std::move(j));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<JsonlLog>> JsonlLog::Open(const std::string& path, std::optional<int64_t> keep_up_to_step) {
  namespace fs = std::filesystem;
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) WFM_RETURN_IF_ERROR(MakeDirs(parent.string()));
  if (keep_up_to_step && fs::exists(path)) {
    WFM_ASSIGN_OR_RETURN(auto records, ReadAll(path), "rewinding metrics log");
    std::string kept;
    for (const auto& r : records) {
      if (r.contains("step") && r["step"].is_number() && r["step"].get<int64_t>() > *keep_up_to_step) continue;
      kept += r.dump() + "\n";
    }
    WFM_RETURN_IF_ERROR(WriteFileAtomically(path, kept));
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot open ", path, " for appending: ", std::strerror(errno)));
  return std::unique_ptr<JsonlLog>(new JsonlLog(path, fd));
}

JsonlLog::~JsonlLog() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status JsonlLog::Write(const nlohmann::json& record) {
  if (!record.is_object()) return absl::InvalidArgumentError("JsonlLog::Write: a record must be a JSON object");
  const std::string line = Sanitize(record).dump() + "\n";
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("writing ", path_, ": ", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace wfm::train
