// libwfm_sentencepiece.so: the SentencePiece processor behind a C ABI (see wfm_sentencepiece_shim.h for why).
// Nothing here may include LibTorch or Abseil headers: sentencepiece_processor.h defines its own
// `absl::string_view` alias, and this library must stay free of protobuf users other than libsentencepiece.
#include "wfm_sentencepiece_shim.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include <sentencepiece_processor.h>

struct wfm_spm {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

void SetError(char* err, size_t err_len, const std::string& message) {
  if (!err || err_len == 0) return;
  const size_t n = message.size() < err_len - 1 ? message.size() : err_len - 1;
  std::memcpy(err, message.data(), n);
  err[n] = '\0';
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int wfm_spm_abi_version(void) { return WFM_SPM_ABI_VERSION; }

__attribute__((visibility("default"))) wfm_spm* wfm_spm_load_from_bytes(const char* data, size_t size, char* err,
                                                                        size_t err_len) {
  try {
    auto* model = new wfm_spm();
    const auto status = model->processor.LoadFromSerializedProto(std::string_view(data, size));
    if (!status.ok()) {
      SetError(err, err_len, status.ToString());
      delete model;
      return nullptr;
    }
    return model;
  } catch (const std::exception& e) {
    SetError(err, err_len, e.what());
    return nullptr;
  }
}

__attribute__((visibility("default"))) void wfm_spm_free(wfm_spm* model) { delete model; }

__attribute__((visibility("default"))) int wfm_spm_piece_size(const wfm_spm* model) {
  return model->processor.GetPieceSize();
}

__attribute__((visibility("default"))) int wfm_spm_special_id(const wfm_spm* model, int which) {
  switch (which) {
    case 0: return model->processor.unk_id();
    case 1: return model->processor.bos_id();
    case 2: return model->processor.eos_id();
    case 3: return model->processor.pad_id();
    default: return -1;
  }
}

__attribute__((visibility("default"))) const char* wfm_spm_id_to_piece(const wfm_spm* model, int id) {
  if (id < 0 || id >= model->processor.GetPieceSize()) return "";
  return model->processor.IdToPiece(id).c_str();
}

__attribute__((visibility("default"))) int wfm_spm_piece_to_id(const wfm_spm* model, const char* piece,
                                                               size_t size) {
  return model->processor.PieceToId(std::string_view(piece, size));
}

__attribute__((visibility("default"))) int wfm_spm_encode(const wfm_spm* model, const char* text, size_t size,
                                                          int32_t** ids, size_t* count, char* err,
                                                          size_t err_len) {
  *ids = nullptr;
  *count = 0;
  try {
    std::vector<int> out;
    const auto status = model->processor.Encode(std::string_view(text, size), &out);
    if (!status.ok()) {
      SetError(err, err_len, status.ToString());
      return 1;
    }
    if (out.empty()) return 0;
    auto* buffer = static_cast<int32_t*>(std::malloc(out.size() * sizeof(int32_t)));
    if (!buffer) {
      SetError(err, err_len, "out of memory");
      return 1;
    }
    for (size_t i = 0; i < out.size(); ++i) buffer[i] = static_cast<int32_t>(out[i]);
    *ids = buffer;
    *count = out.size();
    return 0;
  } catch (const std::exception& e) {
    SetError(err, err_len, e.what());
    return 1;
  }
}

__attribute__((visibility("default"))) int wfm_spm_decode(const wfm_spm* model, const int32_t* ids, size_t count,
                                                          char** text, size_t* size, char* err, size_t err_len) {
  *text = nullptr;
  *size = 0;
  try {
    std::vector<int> in(ids, ids + count);
    std::string out;
    const auto status = model->processor.Decode(in, &out);
    if (!status.ok()) {
      SetError(err, err_len, status.ToString());
      return 1;
    }
    auto* buffer = static_cast<char*>(std::malloc(out.size() + 1));
    if (!buffer) {
      SetError(err, err_len, "out of memory");
      return 1;
    }
    std::memcpy(buffer, out.data(), out.size());
    buffer[out.size()] = '\0';
    *text = buffer;
    *size = out.size();
    return 0;
  } catch (const std::exception& e) {
    SetError(err, err_len, e.what());
    return 1;
  }
}

__attribute__((visibility("default"))) void wfm_spm_free_buffer(void* buffer) { std::free(buffer); }

}  // extern "C"
