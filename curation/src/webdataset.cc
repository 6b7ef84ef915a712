// Tar / webdataset reading and writing (see webdataset.h).
#include "wfm/curation/webdataset.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "absl/strings/match.h"
#include "wfm/core/file_util.h"
#include "wfm/core/status.h"
#include "wfm/curation/decoder.h"

namespace wfm::curation {
namespace fs = std::filesystem;

namespace {

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

void PutOctal(char* field, int width, int64_t value) {
  // width-1 octal digits + NUL.
  std::string s = absl::StrFormat("%0*llo", width - 1, static_cast<unsigned long long>(value));
  std::memcpy(field, s.data(), width - 1);
  field[width - 1] = '\0';
}

int64_t ParseNumber(const char* field, int width, bool* ok) {
  *ok = true;
  const auto* u = reinterpret_cast<const unsigned char*>(field);
  if (u[0] & 0x80) {  // GNU base-256
    int64_t v = u[0] & 0x7f;
    for (int i = 1; i < width; ++i) v = (v << 8) | u[i];
    return v;
  }
  int64_t v = 0;
  int i = 0;
  while (i < width && (field[i] == ' ' || field[i] == '\0')) ++i;
  for (; i < width && field[i] >= '0' && field[i] <= '7'; ++i) v = v * 8 + (field[i] - '0');
  for (; i < width; ++i) {
    if (field[i] != ' ' && field[i] != '\0') *ok = false;
  }
  return v;
}

std::string Field(const char* p, int n) { return std::string(p, strnlen(p, n)); }

bool AllZero(const char* b) {
  for (int i = 0; i < kTarBlock; ++i)
    if (b[i]) return false;
  return true;
}

bool ChecksumOk(const char* h) {
  bool ok;
  int64_t stored = ParseNumber(h + 148, 8, &ok);
  if (!ok) return false;
  int64_t u = 0, s = 0;
  for (int i = 0; i < kTarBlock; ++i) {
    char c = (i >= 148 && i < 156) ? ' ' : h[i];
    u += static_cast<unsigned char>(c);
    s += static_cast<signed char>(c);
  }
  return stored == u || stored == s;
}

// Parses pax records "LEN key=value\n".
void ParsePax(const std::string& data, std::string* path, int64_t* size) {
  size_t pos = 0;
  while (pos < data.size()) {
    size_t sp = data.find(' ', pos);
    if (sp == std::string::npos) break;
    int64_t len = std::atoll(data.substr(pos, sp - pos).c_str());
    if (len <= 0 || pos + len > data.size()) break;
    std::string rec = data.substr(sp + 1, pos + len - sp - 2);
    size_t eq = rec.find('=');
    if (eq != std::string::npos) {
      std::string k = rec.substr(0, eq), v = rec.substr(eq + 1);
      if (k == "path") *path = v;
      if (k == "size") *size = std::atoll(v.c_str());
    }
    pos += len;
  }
}

// One step of the header state machine shared by the reader and ListTar.
struct HeaderInfo {
  std::string name;
  int64_t size = 0;
  char type = '0';
};

// Reads `n` bytes at the current position of `f`.
bool ReadExact(std::FILE* f, void* buf, size_t n) { return std::fread(buf, 1, n, f) == n; }

// Reads the next member header (following pax / GNU long-name headers). Returns false at the end of the
// archive. `offset` tracks the file position.
absl::StatusOr<bool> ReadHeader(std::FILE* f, const std::string& path, int64_t* offset, HeaderInfo* out,
                                int64_t* header_offset) {
  std::string long_name;
  int64_t pax_size = -1;
  std::string pax_path;
  char h[kTarBlock];
  while (true) {
    *header_offset = *offset;
    size_t got = std::fread(h, 1, kTarBlock, f);
    if (got == 0) return false;  // EOF without end blocks: accepted (many writers omit them)
    if (got != static_cast<size_t>(kTarBlock)) {
      return absl::DataLossError(absl::StrCat(path, ": truncated tar header at offset ", *offset));
    }
    *offset += kTarBlock;
    if (AllZero(h)) return false;
    if (!ChecksumOk(h)) return absl::DataLossError(absl::StrCat(path, ": bad tar header checksum at offset ", *header_offset));
    bool ok;
    int64_t size = ParseNumber(h + 124, 12, &ok);
    if (!ok || size < 0) return absl::DataLossError(absl::StrCat(path, ": bad member size at offset ", *header_offset));
    char type = h[156];
    if (type == 'x' || type == 'L' || type == 'g') {
      std::string data(static_cast<size_t>(size), '\0');
      if (size > 0 && !ReadExact(f, data.data(), data.size())) {
        return absl::DataLossError(absl::StrCat(path, ": truncated extended header at offset ", *header_offset));
      }
      int64_t padded = (size + kTarBlock - 1) / kTarBlock * kTarBlock;
      if (padded > size && std::fseek(f, padded - size, SEEK_CUR) != 0) return Errno(path);
      *offset += padded;
      if (type == 'x') ParsePax(data, &pax_path, &pax_size);
      if (type == 'L') long_name = Field(data.data(), static_cast<int>(data.size()));
      continue;
    }
    std::string name = Field(h, 100);
    if (std::memcmp(h + 257, "ustar", 5) == 0) {
      std::string prefix = Field(h + 345, 155);
      if (!prefix.empty()) name = prefix + "/" + name;
    }
    if (!long_name.empty()) name = long_name;
    if (!pax_path.empty()) name = pax_path;
    if (pax_size >= 0) size = pax_size;
    out->name = name;
    out->size = size;
    out->type = type;
    return true;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
absl::StatusOr<std::unique_ptr<TarWriter>> TarWriter::Open(const std::string& path, int64_t append_at) {
  std::unique_ptr<TarWriter> w(new TarWriter());
  w->path_ = path;
  std::error_code ec;
  fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append_at < 0 ? O_TRUNC : 0);
  w->fd_ = ::open(path.c_str(), flags, 0644);
  if (w->fd_ < 0) return Errno(absl::StrCat("opening ", path, " for writing"));
  if (append_at >= 0) {
    if (::ftruncate(w->fd_, append_at) != 0) return Errno(absl::StrCat("truncating ", path));
    if (::lseek(w->fd_, append_at, SEEK_SET) < 0) return Errno(absl::StrCat("seeking in ", path));
    w->offset_ = append_at;
  }
  return w;
}

TarWriter::~TarWriter() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status TarWriter::WriteAll(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t k = ::write(fd_, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      return Errno(absl::StrCat("writing ", path_));
    }
    p += k;
    n -= static_cast<size_t>(k);
    offset_ += k;
  }
  return absl::OkStatus();
}

absl::Status TarWriter::Header(const std::string& name, int64_t size) {
  char h[kTarBlock];
  std::memset(h, 0, sizeof(h));
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(path_, ": empty member name"));
  std::string base = name, prefix;
  if (name.size() > 100) {
    size_t cut = name.rfind('/', 155);
    while (cut != std::string::npos && name.size() - cut - 1 > 100) cut = cut ? name.rfind('/', cut - 1) : std::string::npos;
    if (cut == std::string::npos || cut > 155 || name.size() - cut - 1 > 100) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": member name too long for ustar: ", name));
    }
    prefix = name.substr(0, cut);
    base = name.substr(cut + 1);
  }
  std::memcpy(h, base.data(), base.size());
  PutOctal(h + 100, 8, 0644);
  PutOctal(h + 108, 8, 0);
  PutOctal(h + 116, 8, 0);
  if (size < (int64_t{1} << 33)) {
    PutOctal(h + 124, 12, size);
  } else {  // GNU base-256
    auto* u = reinterpret_cast<unsigned char*>(h + 124);
    u[0] = 0x80;
    for (int i = 11; i >= 1; --i) u[i] = static_cast<unsigned char>((size >> (8 * (11 - i))) & 0xff);
  }
  PutOctal(h + 136, 12, 0);  // mtime 0: reproducible archives
  h[156] = '0';
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  PutOctal(h + 329, 8, 0);
  PutOctal(h + 337, 8, 0);
  std::memcpy(h + 345, prefix.data(), prefix.size());
  std::memset(h + 148, ' ', 8);
  int64_t sum = 0;
  for (int i = 0; i < kTarBlock; ++i) sum += static_cast<unsigned char>(h[i]);
  PutOctal(h + 148, 7, sum);
  h[155] = ' ';
  return WriteAll(h, sizeof(h));
}

absl::Status TarWriter::Add(const std::string& name, absl::string_view data) {
  WFM_RETURN_IF_ERROR(Header(name, static_cast<int64_t>(data.size())));
  WFM_RETURN_IF_ERROR(WriteAll(data.data(), data.size()));
  static const char zeros[kTarBlock] = {0};
  int64_t pad = (kTarBlock - static_cast<int64_t>(data.size()) % kTarBlock) % kTarBlock;
  return WriteAll(zeros, static_cast<size_t>(pad));
}

absl::Status TarWriter::AddFile(const std::string& name, const std::string& source_path) {
  int in = ::open(source_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Errno(absl::StrCat("opening ", source_path));
  struct stat st;
  if (::fstat(in, &st) != 0) {
    ::close(in);
    return Errno(absl::StrCat("stat ", source_path));
  }
  absl::Status s = Header(name, st.st_size);
  std::vector<char> buf(1 << 20);
  int64_t left = st.st_size;
  while (s.ok() && left > 0) {
    ssize_t k = ::read(in, buf.data(), std::min<int64_t>(left, static_cast<int64_t>(buf.size())));
    if (k <= 0) {
      s = k < 0 ? Errno(absl::StrCat("reading ", source_path))
                : absl::DataLossError(absl::StrCat(source_path, " shrank while being archived"));
      break;
    }
    s = WriteAll(buf.data(), static_cast<size_t>(k));
    left -= k;
  }
  ::close(in);
  WFM_RETURN_IF_ERROR(s);
  static const char zeros[kTarBlock] = {0};
  int64_t pad = (kTarBlock - st.st_size % kTarBlock) % kTarBlock;
  return WriteAll(zeros, static_cast<size_t>(pad));
}

absl::Status TarWriter::Sync() {
  if (::fsync(fd_) != 0) return Errno(absl::StrCat("fsync ", path_));
  return absl::OkStatus();
}

absl::Status TarWriter::Finish() {
  static const char zeros[2 * kTarBlock] = {0};
  int64_t end = offset_;
  WFM_RETURN_IF_ERROR(WriteAll(zeros, sizeof(zeros)));
  WFM_RETURN_IF_ERROR(Sync());
  offset_ = end;
  if (::close(fd_) != 0) {
    fd_ = -1;
    return Errno(absl::StrCat("closing ", path_));
  }
  fd_ = -1;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TarMember>> ListTar(const std::string& path, int64_t* valid_end) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return Errno(absl::StrCat("opening ", path));
  std::vector<TarMember> out;
  int64_t offset = 0;
  if (valid_end) *valid_end = 0;
  absl::Status status;
  while (true) {
    HeaderInfo h;
    int64_t header_offset;
    auto r = ReadHeader(f, path, &offset, &h, &header_offset);
    if (!r.ok()) {
      status = r.status();
      break;
    }
    if (!*r) break;
    int64_t padded = (h.size + kTarBlock - 1) / kTarBlock * kTarBlock;
    TarMember m{h.name, header_offset, offset, h.size};
    // Check that the contents are really there.
    if (std::fseek(f, padded, SEEK_CUR) != 0) {
      status = Errno(path);
      break;
    }
    struct stat st;
    if (::fstat(fileno(f), &st) == 0 && offset + h.size > st.st_size) {
      status = absl::DataLossError(absl::StrCat(path, ": member ", h.name, " truncated at offset ", offset));
      break;
    }
    offset += padded;
    if (h.type == '0' || h.type == '\0' || h.type == '7') out.push_back(m);
    if (valid_end) *valid_end = offset;
  }
  std::fclose(f);
  if (!status.ok() && !valid_end) return status;
  return out;
}

bool SplitKey(const std::string& name, std::string* key, std::string* extension) {
  size_t slash = name.rfind('/');
  size_t base = slash == std::string::npos ? 0 : slash + 1;
  size_t dot = name.find('.', base);
  if (dot == std::string::npos || dot == base) return false;
  *key = name.substr(0, dot);
  *extension = name.substr(dot + 1);
  return true;
}

// ---------------------------------------------------------------------------------------------------------
const std::string& Sample::Get(const std::string& ext) const {
  static const std::string kEmpty;
  auto it = files.find(ext);
  return it == files.end() ? kEmpty : it->second;
}

absl::StatusOr<nlohmann::json> Sample::Json(const std::string& ext) const {
  auto it = files.find(ext);
  if (it == files.end()) return absl::NotFoundError(absl::StrCat(shard, ": sample ", key, " has no .", ext));
  nlohmann::json j = nlohmann::json::parse(it->second, nullptr, false);
  if (j.is_discarded()) return absl::DataLossError(absl::StrCat(shard, ": ", key, ".", ext, " is not valid JSON"));
  return j;
}

absl::StatusOr<at::Tensor> Sample::DecodeVideo(int width, int height, const std::string& ext) const {
  auto it = files.find(ext);
  if (it == files.end()) return absl::NotFoundError(absl::StrCat(shard, ": sample ", key, " has no .", ext));
  return DecodeBytesToTensor(it->second, width, height, absl::StrCat(shard, ":", key, ".", ext));
}

absl::StatusOr<std::unique_ptr<ShardReader>> ShardReader::Open(const std::string& path, ShardReaderOptions options) {
  std::unique_ptr<ShardReader> r(new ShardReader());
  r->path_ = path;
  r->options_ = std::move(options);
  r->file_ = std::fopen(path.c_str(), "rb");
  if (!r->file_) return Errno(absl::StrCat("opening shard ", path));
  std::setvbuf(r->file_, nullptr, _IOFBF, 1 << 20);
  return r;
}

ShardReader::~ShardReader() {
  if (file_) std::fclose(file_);
}

absl::StatusOr<bool> ShardReader::NextMember(std::string* name, std::string* data, bool* wanted) {
  while (true) {
    HeaderInfo h;
    int64_t header_offset;
    WFM_ASSIGN_OR_RETURN(bool more, ReadHeader(file_, path_, &offset_, &h, &header_offset));
    if (!more) return false;
    int64_t padded = (h.size + kTarBlock - 1) / kTarBlock * kTarBlock;
    bool regular = h.type == '0' || h.type == '\0' || h.type == '7';
    std::string key, ext;
    bool keyed = regular && SplitKey(h.name, &key, &ext);
    *wanted = keyed && (options_.extensions.empty() ||
                        std::find(options_.extensions.begin(), options_.extensions.end(), ext) != options_.extensions.end());
    if (!keyed) {
      if (std::fseek(file_, padded, SEEK_CUR) != 0) return Errno(path_);
      offset_ += padded;
      continue;
    }
    *name = h.name;
    if (*wanted) {
      data->resize(static_cast<size_t>(h.size));
      if (h.size > 0 && !ReadExact(file_, data->data(), data->size())) {
        return absl::DataLossError(absl::StrCat(path_, ": member ", h.name, " truncated at offset ", offset_));
      }
      if (padded > h.size && std::fseek(file_, padded - h.size, SEEK_CUR) != 0) return Errno(path_);
    } else {
      data->clear();
      if (std::fseek(file_, padded, SEEK_CUR) != 0) return Errno(path_);
    }
    offset_ += padded;
    return true;
  }
}

absl::StatusOr<bool> ShardReader::Next(Sample* sample) {
  sample->key.clear();
  sample->files.clear();
  sample->shard = path_;
  if (!error_.ok()) return std::exchange(error_, absl::OkStatus());
  while (true) {
    if (!pending_) {
      if (done_) break;
      auto next = NextMember(&pending_name_, &pending_data_, &pending_wanted_);
      if (!next.ok()) {
        done_ = true;
        if (sample->key.empty()) return next.status();
        error_ = next.status();  // hand out the complete sample first
        break;
      }
      bool more = *next;
      if (!more) {
        done_ = true;
        break;
      }
      pending_ = true;
    }
    std::string key, ext;
    SplitKey(pending_name_, &key, &ext);
    if (!sample->key.empty() && key != sample->key) break;  // the next sample starts
    sample->key = key;
    if (pending_wanted_) {
      if (sample->files.count(ext)) {
        return absl::DataLossError(absl::StrCat(path_, ": duplicate member ", pending_name_, " in sample ", key));
      }
      sample->files[ext] = std::move(pending_data_);
    }
    pending_ = false;
  }
  return !sample->key.empty();
}

absl::StatusOr<std::vector<std::string>> ListShards(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return std::vector<std::string>{path};
  if (!fs::is_directory(path, ec)) return absl::NotFoundError(absl::StrCat("no shards at ", path));
  std::vector<std::string> out;
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file(ec) && it->path().extension() == ".tar") out.push_back(it->path().string());
  }
  if (ec) return absl::InternalError(absl::StrCat("listing ", path, ": ", ec.message()));
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::unique_ptr<DatasetReader>> DatasetReader::Open(const std::vector<std::string>& paths,
                                                                   DatasetOptions options) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("bad rank ", options.rank, " / world size ", options.world_size));
  }
  std::unique_ptr<DatasetReader> r(new DatasetReader());
  std::vector<std::string> all;
  for (const auto& p : paths) {
    WFM_ASSIGN_OR_RETURN(auto s, ListShards(p));
    all.insert(all.end(), s.begin(), s.end());
  }
  for (size_t i = 0; i < all.size(); ++i) {
    if (static_cast<int>(i % options.world_size) == options.rank) r->shards_.push_back(all[i]);
  }
  r->options_ = std::move(options);
  r->order_ = r->shards_;
  if (r->options_.shuffle_seed) {
    std::mt19937_64 rng(r->options_.shuffle_seed);
    std::shuffle(r->order_.begin(), r->order_.end(), rng);
  }
  return r;
}

absl::StatusOr<bool> DatasetReader::Next(Sample* sample) {
  while (true) {
    if (current_) {
      WFM_ASSIGN_OR_RETURN(bool more, current_->Next(sample));
      if (more) return true;
      current_.reset();
    }
    if (next_ >= order_.size()) {
      ++epoch_;
      if (order_.empty() || (options_.epochs > 0 && epoch_ >= options_.epochs)) return false;
      next_ = 0;
      order_ = shards_;
      if (options_.shuffle_seed) {
        std::mt19937_64 rng(options_.shuffle_seed + epoch_);
        std::shuffle(order_.begin(), order_.end(), rng);
      }
    }
    ShardReaderOptions so;
    so.extensions = options_.extensions;
    WFM_ASSIGN_OR_RETURN(current_, ShardReader::Open(order_[next_++], so));
  }
}

// ---------------------------------------------------------------------------------------------------------
absl::StatusOr<ExtractedShards> ExtractShardClips(const std::vector<std::string>& inputs, const std::string& dir,
                                                  const ExtractOptions& options) {
  ExtractedShards out;
  for (const auto& in : inputs) {
    std::error_code ec;
    const bool is_dir = fs::is_directory(in, ec);
    const bool tar = !is_dir && fs::path(in).extension() == ".tar";
    if (!options.allow_other_inputs || tar || is_dir) {
      if (!options.allow_other_inputs && !tar && !is_dir && fs::exists(in, ec))
        return absl::InvalidArgumentError(absl::StrCat(in, ": not a webdataset shard (*.tar) or a directory of shards"));
      WFM_ASSIGN_OR_RETURN(std::vector<std::string> found, ListShards(in));
      if (found.empty() && !options.allow_other_inputs)
        return absl::NotFoundError(absl::StrCat("no *.tar shards under ", in));
      out.shards.insert(out.shards.end(), found.begin(), found.end());
    }
    if (options.allow_other_inputs && !tar) out.sources.push_back(in);
  }
  if (out.shards.empty()) return out;
  WFM_RETURN_IF_ERROR(MakeDirs(dir));
  ShardReaderOptions wanted;
  wanted.extensions = {"mp4", "txt"};
  for (const std::string& shard : out.shards) {
    WFM_ASSIGN_OR_RETURN(auto reader, ShardReader::Open(shard, wanted));
    const std::string stem = fs::path(shard).stem().string();
    int64_t clips = 0;
    for (Sample sample;;) {
      WFM_ASSIGN_OR_RETURN(bool more, reader->Next(&sample));
      if (!more) break;
      if (!sample.Has("mp4")) continue;
      std::string name = stem + "_" + sample.key;
      std::replace(name.begin(), name.end(), '/', '_');
      const fs::path video = fs::path(dir) / (name + ".mp4");
      ++clips;
      if (fs::exists(video)) continue;
      if (sample.Has("txt"))  // the caption first: a video on disk always has its caption
        WFM_RETURN_IF_ERROR(WriteFileAtomically(fs::path(video).replace_extension(".txt").string(), sample.Text()));
      WFM_RETURN_IF_ERROR(WriteFileAtomically(video.string(), sample.Get("mp4")));
      ++out.extracted;
    }
    out.clips += clips;
  }
  if (out.clips == 0)
    return absl::NotFoundError(absl::StrCat("the shards hold no KEY.mp4 samples (", out.shards.size(),
                                            " shard(s), first ", out.shards.front(), ")"));
  out.sources.push_back(dir);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
std::string ShardBin(int width, int height, double duration_s) {
  if (width <= 0 || height <= 0) return "resolution_unknown";
  int short_side = std::min(width, height);
  std::string res = short_side >= 1080 ? "1080" : short_side >= 720 ? "720" : "lt_720";
  double r = static_cast<double>(width) / height;
  std::string ar = r <= 0.65 ? "9_16" : r <= 0.88 ? "3_4" : r <= 1.16 ? "1_1" : r <= 1.55 ? "4_3" : "16_9";
  std::string len = duration_s < 5 ? "0_5" : duration_s <= 10 ? "5_10" : duration_s <= 30 ? "10_30" : "30_inf";
  return absl::StrCat("resolution_", res, "/aspect_ratio_", ar, "/duration_", len);
}

ShardWriter::ShardWriter(ShardWriterOptions options) : options_(std::move(options)) {}

// Without Close() the tars stay .partial: a writer abandoned on an error path must not publish bytes that its
// caller never recorded; Recover() cuts them back on the next start.
ShardWriter::~ShardWriter() = default;

absl::Status ShardWriter::Seal(Open_* o) {
  WFM_RETURN_IF_ERROR(o->tar->Finish());
  std::error_code ec;
  fs::rename(o->tar->path(), o->final_path, ec);
  if (ec) return absl::InternalError(absl::StrCat("renaming ", o->tar->path(), ": ", ec.message()));
  o->tar.reset();
  return absl::OkStatus();
}

absl::StatusOr<ShardWriter::Open_*> ShardWriter::TarFor(const std::string& bin) {
  Open_& o = open_[bin];
  if (o.tar && o.tar->offset() >= options_.target_bytes) {
    // Full, but possibly holding samples of the commit in progress: sealed by Committed(), not here.
    full_.push_back(std::move(o));
    o = Open_{};
  }
  if (o.tar) return &o;
  fs::path dir = fs::path(options_.root);
  if (options_.binned && !bin.empty()) dir /= bin;
  dir /= absl::StrFormat("part_%06d", options_.part);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("creating ", dir.string(), ": ", ec.message()));
  auto it = next_seq_.find(dir.string());
  if (it == next_seq_.end()) {
    int next = 0;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      std::string n = e.path().filename().string();
      if (n.size() >= 10 && std::all_of(n.begin(), n.begin() + 6, ::isdigit) &&
          (absl::EndsWith(n, ".tar") || absl::EndsWith(n, ".tar.partial"))) {
        next = std::max(next, std::atoi(n.substr(0, 6).c_str()) + 1);
      }
    }
    it = next_seq_.emplace(dir.string(), next).first;
  }
  std::string final_path = (dir / absl::StrFormat("%06d.tar", it->second++)).string();
  WFM_ASSIGN_OR_RETURN(o.tar, TarWriter::Open(final_path + ".partial"));
  o.final_path = final_path;
  return &o;
}

absl::StatusOr<ShardWriter::CommitInfo> ShardWriter::Commit(const std::vector<PendingSample>& samples) {
  std::lock_guard<std::mutex> lock(mu_);
  CommitInfo info;
  std::map<std::string, TarWriter*> touched;  // final path -> its (open or full) tar
  for (const PendingSample& s : samples) {
    if (s.key.empty() || s.key.find('.') != std::string::npos || s.key.find('/') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("bad webdataset key '", s.key, "' (no dots or slashes)"));
    }
    WFM_ASSIGN_OR_RETURN(Open_ * o, TarFor(options_.binned ? s.bin : ""));
    for (const PendingMember& m : s.members) {
      std::string name = absl::StrCat(s.key, ".", m.extension);
      if (!m.file.empty()) {
        WFM_RETURN_IF_ERROR(o->tar->AddFile(name, m.file));
      } else {
        WFM_RETURN_IF_ERROR(o->tar->Add(name, m.data));
      }
    }
    info.placements.push_back({o->final_path, s.key});
    touched[o->final_path] = o->tar.get();
  }
  for (auto& [path, tar] : touched) {
    WFM_RETURN_IF_ERROR(tar->Sync());
    info.end_offsets[path] = tar->offset();
  }
  return info;
}

absl::Status ShardWriter::Committed() {
  std::lock_guard<std::mutex> lock(mu_);
  absl::Status status;
  for (Open_& o : full_) {
    absl::Status s = Seal(&o);
    if (status.ok()) status = s;
  }
  full_.clear();
  return status;
}

absl::Status ShardWriter::Close() {
  WFM_RETURN_IF_ERROR(Committed());
  std::lock_guard<std::mutex> lock(mu_);
  absl::Status status;
  for (auto& [bin, o] : open_) {
    if (o.tar) {
      absl::Status s = Seal(&o);
      if (status.ok()) status = s;
    }
  }
  open_.clear();
  return status;
}

absl::Status ShardWriter::Recover(const std::string& root, const std::map<std::string, int64_t>& committed) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return absl::OkStatus();
  std::vector<fs::path> partials;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file(ec) && absl::EndsWith(it->path().string(), ".tar.partial")) partials.push_back(it->path());
  }
  for (const fs::path& p : partials) {
    std::string final_path = p.string().substr(0, p.string().size() - std::string(".partial").size());
    auto c = committed.find(final_path);
    int64_t keep = c == committed.end() ? 0 : c->second;
    if (keep <= 0) {
      fs::remove(p, ec);
      continue;
    }
    std::uintmax_t size = fs::file_size(p, ec);
    if (ec || static_cast<int64_t>(size) < keep) {
      return absl::DataLossError(absl::StrCat(p.string(), ": ", size, " bytes on disk but ", keep,
                                              " were committed (was the output directory modified?)"));
    }
    WFM_ASSIGN_OR_RETURN(auto tar, TarWriter::Open(p.string(), keep));
    WFM_RETURN_IF_ERROR(tar->Finish());
    fs::rename(p, final_path, ec);
    if (ec) return absl::InternalError(absl::StrCat("renaming ", p.string(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace wfm::curation
