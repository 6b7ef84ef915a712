// C interface of libwfm_sentencepiece.so, the one place that links libsentencepiece.
//
// Why a shim: libsentencepiece.so bundles (and exports) its own protobuf-lite. A process that also loads
// LibTorch's libprotobuf then binds one library's protobuf references to the other's definitions and crashes in
// static initialisers. wfm_core therefore never links libsentencepiece; it dlopen()s this shim with
// RTLD_LOCAL | RTLD_DEEPBIND (wfm/core/text/tokenizer.h), so the shim and libsentencepiece resolve protobuf
// symbols inside their own scope and nothing leaks into the global one. Only plain C types cross the boundary.
//
// Conventions: functions returning int give 0 on success and fill `err` (NUL-terminated, truncated to
// `err_len`) on failure. Buffers returned by the shim are freed with wfm_spm_free_buffer.
#ifndef WFM_SENTENCEPIECE_SHIM_H_
#define WFM_SENTENCEPIECE_SHIM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Bumped whenever a signature below changes; the loader refuses a shim with another version.
#define WFM_SPM_ABI_VERSION 1

typedef struct wfm_spm wfm_spm;

int wfm_spm_abi_version(void);
// Loads a serialized ModelProto (the bytes of a spiece.model file). NULL on failure (reason in err).
wfm_spm* wfm_spm_load_from_bytes(const char* data, size_t size, char* err, size_t err_len);
void wfm_spm_free(wfm_spm* model);

int wfm_spm_piece_size(const wfm_spm* model);
// Special ids: 0 unk, 1 bos, 2 eos, 3 pad; -1 when the model does not define it.
int wfm_spm_special_id(const wfm_spm* model, int which);
// The piece string of `id` (borrowed; valid while the model lives). Empty for out-of-range ids.
const char* wfm_spm_id_to_piece(const wfm_spm* model, int id);
int wfm_spm_piece_to_id(const wfm_spm* model, const char* piece, size_t size);

// Encodes UTF-8 text into ids (no BOS/EOS added). *ids is allocated by the shim (NULL when *count is 0).
int wfm_spm_encode(const wfm_spm* model, const char* text, size_t size, int32_t** ids, size_t* count, char* err,
                   size_t err_len);
// Decodes ids into UTF-8 text; *text is allocated by the shim and NUL-terminated.
int wfm_spm_decode(const wfm_spm* model, const int32_t* ids, size_t count, char** text, size_t* size, char* err,
                   size_t err_len);

void wfm_spm_free_buffer(void* buffer);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // WFM_SENTENCEPIECE_SHIM_H_
