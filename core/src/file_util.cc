// Atomic writes, whole-file reads and memory mapping (see file_util.h).
#include "wfm/core/file_util.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"

namespace wfm {
namespace {
absl::Status ErrnoStatus(int err, absl::string_view what, absl::string_view path) {
  std::string msg = absl::StrCat(what, " '", path, "': ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(msg);
    case ENOSPC:
    case EDQUOT:
    case ENOMEM:
      return absl::ResourceExhaustedError(msg);
    case EISDIR:
    case EINVAL:
      return absl::InvalidArgumentError(msg);
    default:
      return absl::InternalError(msg);
  }
}
}  // namespace

AtomicFileWriter::~AtomicFileWriter() { Abort(); }

absl::Status AtomicFileWriter::Open(const std::string& path) {
  Abort();
  path_ = path;
  std::filesystem::path p(path);
  if (p.has_parent_path()) {
    absl::Status s = MakeDirs(p.parent_path().string());
    if (!s.ok()) return s;
  }
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  temp_path_ = absl::StrCat(path, ".tmp.", getpid(), ".", counter++, ".", rd() % 100000);
  int fd = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    int err = errno;
    temp_path_.clear();
    return ErrnoStatus(err, "cannot create temp file for", path);
  }
  file_ = ::fdopen(fd, "wb");
  if (!file_) {
    int err = errno;
    ::close(fd);
    ::unlink(temp_path_.c_str());
    temp_path_.clear();
    return ErrnoStatus(err, "cannot open temp file for", path);
  }
  bytes_written_ = 0;
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Write(const void* data, size_t size) {
  if (!file_) return absl::FailedPreconditionError(absl::StrCat("write to '", path_, "' before Open()"));
  if (size > 0 && std::fwrite(data, 1, size, file_) != size) {
    int err = errno;
    return ErrnoStatus(err, "write failed for", path_);
  }
  bytes_written_ += static_cast<int64_t>(size);
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Commit() {
  if (!file_) return absl::FailedPreconditionError(absl::StrCat("commit of '", path_, "' before Open()"));
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) {
    int err = errno;
    Abort();
    return ErrnoStatus(err, "flush failed for", path_);
  }
  std::fclose(file_);
  file_ = nullptr;
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    int err = errno;
    ::unlink(temp_path_.c_str());
    temp_path_.clear();
    return ErrnoStatus(err, "rename failed for", path_);
  }
  temp_path_.clear();
  return absl::OkStatus();
}

void AtomicFileWriter::Abort() {
  if (file_) {
    std::fclose(file_);
    file_ = nullptr;
  }
  if (!temp_path_.empty()) {
    ::unlink(temp_path_.c_str());
    temp_path_.clear();
  }
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view data) {
  AtomicFileWriter w;
  absl::Status s = w.Open(path);
  if (s.ok()) s = w.Write(data);
  if (s.ok()) s = w.Commit();
  return s;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open", path);
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "cannot read", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

absl::Status MakeDirs(const std::string& path) {
  if (path.empty()) return absl::OkStatus();
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec && !std::filesystem::is_directory(path)) {
    return ErrnoStatus(ec.value(), "cannot create directory", path);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<MappedFile>> MappedFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(err, "cannot stat", path);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is a directory, expected a file"));
  }
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->size_ = static_cast<size_t>(st.st_size);
  if (m->size_ > 0) {
    void* p = ::mmap(nullptr, m->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "cannot mmap", path);
    }
    m->data_ = static_cast<uint8_t*>(p);
  }
  ::close(fd);
  return m;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
}

}  // namespace wfm
