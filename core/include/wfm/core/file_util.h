// File helpers shared by every writer in wfm: atomic writes (temp file in the same directory, fsync, rename),
// whole-file reads, and a read-only memory mapping.
//
//   AtomicFileWriter w;
//   WFM_RETURN_IF_ERROR(w.Open("out/model.safetensors"));
//   WFM_RETURN_IF_ERROR(w.Write(header));
//   WFM_RETURN_IF_ERROR(w.Commit());   // until here, readers see the old file (or none)
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace wfm {

class AtomicFileWriter {
 public:
  AtomicFileWriter() = default;
  ~AtomicFileWriter();  // removes the temp file unless Commit() succeeded
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Creates `path`'s parent directories if needed and opens a unique temp file beside `path`.
  absl::Status Open(const std::string& path);
  absl::Status Write(const void* data, size_t size);
  absl::Status Write(absl::string_view data) { return Write(data.data(), data.size()); }
  // Flushes, fsyncs and renames the temp file over `path`.
  absl::Status Commit();
  // Drops the temp file; `path` is untouched.
  void Abort();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }
  int64_t bytes_written() const { return bytes_written_; }

 private:
  std::string path_, temp_path_;
  std::FILE* file_ = nullptr;
  int64_t bytes_written_ = 0;
};

// Writes `data` to `path` atomically.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view data);

// Reads a whole file.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Creates a directory and its parents (like mkdir -p).
absl::Status MakeDirs(const std::string& path);

// A read-only view of a whole file, memory-mapped (copy-on-write: writes through the pointer stay private).
// Empty files are represented with size() == 0 and a null data().
class MappedFile {
 public:
  static absl::StatusOr<std::shared_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace wfm
