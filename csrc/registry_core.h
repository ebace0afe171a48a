/*
 * registry-core C core: the one header of the cffi surface.
 *
 * Plain C99, no Python headers. Every buffer is passed with its length. No global mutable
 * state: every piece of state lives in caller-owned structs, so concurrent calls on distinct
 * objects are safe and cffi may release the GIL around every call.
 *
 * The text between the "cffi:begin" and "cffi:end" markers is fed verbatim to
 * ffibuilder.cdef() by src/registry_core/_native/_build.py: keep it free of preprocessor
 * directives and macros there.
 */
#ifndef REGISTRY_CORE_H
#define REGISTRY_CORE_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define RC_API __attribute__((visibility("hidden")))
#else
#define RC_API
#endif

/* cffi:begin */

/* ---- build information (version.c) ------------------------------------------------------ */
const char *rc_version(void);        /* package version compiled into the core */
const char *rc_compiler(void);       /* compiler name and version */
const char *rc_cflags(void);         /* optimisation flags the core was built with */
int rc_pgo(void);                    /* 1 if built with profile-guided optimisation */
int rc_sanitized(void);              /* 1 if built with ASan/UBSan */

/* Compile-time capability flags (bitmask of RC_FEATURE_*), in the manner of pyca/cryptography's
 * HAS_* constants: what this binary contains, decided by the preprocessor (csrc/features.h). */
enum {
    RC_FEATURE_CDC_SIMD = 1,     /* a SIMD chunking path (none exists yet: never set) */
    RC_FEATURE_CDC_ASM = 2,      /* the x86-64 inline-assembly two-byte gear update */
    RC_FEATURE_PGO = 4,          /* profile-guided optimisation */
    RC_FEATURE_SANITIZED = 8     /* AddressSanitizer + UndefinedBehaviorSanitizer */
};
uint32_t rc_features(void);

/* ---- error codes shared by every function returning int ---------------------------------- */
enum {
    RC_OK = 0,
    RC_EINVAL = -1,      /* bad argument (sizes out of range, NULL with non-zero length) */
    RC_ENOMEM = -2,      /* allocation failed */
    RC_ECORRUPT = -3,    /* malformed input (patch stream out of bounds, truncated varint) */
    RC_ERANGE = -4       /* output buffer too small / declared size mismatch */
};

/* ---- gear hash and FastCDC content-defined chunking (gear.c, cdc.c) --------------------- */
typedef struct {
    uint32_t min_size;
    uint32_t avg_size;
    uint32_t max_size;
    uint64_t mask_s;     /* harder mask used before avg_size (normalized chunking) */
    uint64_t mask_l;     /* easier mask used after avg_size */
    uint64_t mask_s_ls;  /* the same masks shifted left by one, for two-bytes-per-step rolling */
    uint64_t mask_l_ls;
} rc_cdc_params;

uint64_t rc_gear_entry(unsigned int index);  /* the gear table, exposed for tests and docs */

/* Validate sizes and fill the masks. Returns RC_OK or RC_EINVAL. Sizes must satisfy
 * 64 <= min_size <= avg_size <= max_size <= 2^31 with avg_size a power of two. Every chunk
 * but the last is min_size..max_size bytes long (docs/chunking.md gives the exact rule). */
int rc_cdc_params_init(rc_cdc_params *params, uint32_t min_size, uint32_t avg_size,
                       uint32_t max_size);

/* Find chunk boundaries in data[0:len]. Writes cumulative end offsets (relative to data) of
 * complete chunks to out[0:n] and returns n (>= 0) or a negative RC_ error. Stops when out_cap
 * offsets are written. With is_final == 0 the trailing bytes that cannot yet be cut (fewer than
 * max_size left and no cut point found) are left unconsumed; with is_final != 0 they form the
 * last chunk. The next call must start at data + out[n-1]. */
int64_t rc_cdc_find(const rc_cdc_params *params, const uint8_t *data, size_t len,
                    int is_final, uint64_t *out, size_t out_cap);

/* ---- delta encoding: match finding (match.c) -------------------------------------------- */
/* The patch body is three streams in the bsdiff model:
 *   ctrl:  a sequence of records (varint diff_len, varint extra_len, zigzag-varint seek)
 *   diff:  diff_len bytes per record, new[i] - old[j] (mod 256), old read at the cursor
 *   extra: extra_len bytes per record, copied verbatim
 * After a record the old cursor moves by diff_len + seek. */
typedef struct {
    uint32_t min_match;      /* shortest match worth a record (bytes), >= 4 */
    uint32_t max_chain;      /* candidates examined per lookup: bounds time on repetitive data */
    uint32_t index_step;     /* index every index_step-th old position (1 = all) */
    uint32_t reserved;
} rc_delta_params;

typedef struct {
    uint8_t *ctrl;  size_t ctrl_len;
    uint8_t *diff;  size_t diff_len;
    uint8_t *extra; size_t extra_len;
    uint64_t n_records;      /* at most new_len + 1: every scan step advances by >= 1 byte */
    uint64_t matched_bytes;  /* bytes of new covered by exact or approximate matches */
    uint64_t work;           /* steps taken: candidates examined, 8-byte words compared,
                              * extension and skip steps. A deterministic measure of the
                              * encoder's time (tests assert it grows linearly). */
} rc_delta_out;

void rc_delta_params_default(rc_delta_params *params);

/* Encode new against old into freshly allocated streams (free with rc_delta_out_free).
 * Peak extra memory: 4 * old_len / index_step + 4 * 2^ceil(log2(old_len/index_step)) bytes
 * for the index plus new_len + ctrl for the streams. */
int rc_delta_encode(const uint8_t *old, size_t old_len, const uint8_t *new_, size_t new_len,
                    const rc_delta_params *params, rc_delta_out *out);
void rc_delta_out_free(rc_delta_out *out);

/* ---- patch application (patch.c) -------------------------------------------------------- */
/* Check a control stream against the stream lengths alone, touching no data and allocating
 * nothing: RC_OK when every record stays inside old[0:old_len], diff[0:diff_len] and
 * extra[0:extra_len] and both byte streams are consumed exactly, with the output length the
 * patch produces in *out_len (at most diff_len + extra_len); RC_ECORRUPT otherwise. O(ctrl_len).
 * A caller holding an untrusted patch calls this before allocating the output. */
int rc_delta_measure(const uint8_t *ctrl, size_t ctrl_len, size_t old_len, size_t diff_len,
                     size_t extra_len, uint64_t *out_len);

/* Rebuild new into out[0:out_len] from old and the three streams. Every read and write is
 * bounds-checked; returns RC_OK only when all streams are consumed exactly and out is full
 * (out may be partly written when it returns an error). old_len above 2^62: RC_EINVAL. */
int rc_delta_apply(const uint8_t *old, size_t old_len,
                   const uint8_t *ctrl, size_t ctrl_len,
                   const uint8_t *diff, size_t diff_len,
                   const uint8_t *extra, size_t extra_len,
                   uint8_t *out, size_t out_len);

/* dst[i] = a[i] + b[i] (mod 256) for i < n: all three buffers are n bytes long. Used to
 * compose diff streams. RC_OK, or RC_EINVAL for a NULL buffer with n > 0. */
int rc_add_bytes(uint8_t *dst, const uint8_t *a, const uint8_t *b, size_t n);

/* ---- deflate streams as tokens, exact re-encoding, reconstruction (deflate_tokens.c,
 * deflate_predict.c; the record format is in docs/delta-format.md) ----------------------- */
/* A token (uint32): a literal is its byte value; a match has bit 31 set, its length (3..258)
 * in bits 16..24, bit 25 when a length of 258 was written as code 284 + 31, and distance - 1
 * in bits 0..15. */
typedef struct {
    uint8_t *content;  size_t content_len;   /* the inflated bytes */
    uint32_t *tokens;  size_t n_tokens;      /* tokens of all compressed blocks, in order */
    uint8_t *blocks;   size_t blocks_len;    /* block records: every other encoder decision */
    size_t consumed;                         /* bytes of input the stream occupies */
} rc_deflate_tokens;

/* Decode the raw deflate stream at in[0:in_len] (it may be followed by other bytes). At most
 * max_content inflated bytes and max_blocks blocks (RC_ERANGE beyond); RC_ECORRUPT when the
 * stream is not one zlib's inflate accepts. Free the result with rc_deflate_tokens_free. */
int rc_deflate_tokenize(const uint8_t *in, size_t in_len, size_t max_content, size_t max_blocks,
                        rc_deflate_tokens *out);
void rc_deflate_tokens_free(rc_deflate_tokens *t);

/* Write tokens + block records back as the exact stream into out[0:out_cap] (RC_ERANGE when
 * it does not fit); RC_ECORRUPT for records or tokens inconsistent with each other. */
int rc_deflate_encode(const uint8_t *content, size_t content_len, const uint32_t *tokens,
                      size_t n_tokens, const uint8_t *blocks, size_t blocks_len, uint8_t *out,
                      size_t out_cap, size_t *out_len);

enum { RC_DEFLATE_MODELS = 19 };  /* reference models 1..18 (docs/delta-format.md) */

typedef struct {
    uint8_t *data;
    size_t len;
} rc_bytes;
void rc_bytes_free(rc_bytes *b);

typedef struct {
    uint32_t model;            /* the reference model used */
    uint64_t tokens;           /* tokens in the stream */
    uint64_t corrections;      /* tokens the model did not predict */
    uint64_t blocks;
    uint64_t predicted_trees;  /* dynamic headers equal to zlib's for their tokens */
} rc_recon_stats;

/* The correction record of the stream in[0:in_len] (which must be exactly one stream) for
 * reference model model_id (1..18), or -1 to pick the model with fewest corrections on the
 * first 4096 tokens. Limits as rc_deflate_tokenize. Free record with rc_bytes_free. */
int rc_deflate_record(const uint8_t *in, size_t in_len, size_t max_content, size_t max_blocks,
                      int model_id, rc_bytes *record, rc_recon_stats *stats);

/* Rebuild the stream from its content and correction record into out[0:out_cap]. Bounded by
 * content_len (tokens, model memory: 4 bytes per content byte + 128 KiB) and out_cap. */
int rc_deflate_rebuild(const uint8_t *content, size_t content_len, const uint8_t *record,
                       size_t record_len, uint8_t *out, size_t out_cap, size_t *out_len);

/* ---- executable transforms (exe_x86.c, exe_arm64.c; docs/executables.md) ---------------- */
/* A reversible rewrite of the code of one executable section: relative branch, call and
 * PC-relative data references become absolute targets (image-relative), so that code which
 * moved between two versions yields the same bytes wherever the targets did not change (the
 * BCJ / Courgette idea). Every rewrite is a bijection on its operand field decided by bytes the
 * rewrite never changes, so the inverse, scanning the same way, restores the input exactly. */
enum {
    RC_EXE_X86_64 = 1,   /* E8/E9 rel32, 0F 8x jcc rel32, FF 15/25 and REX mov/lea/cmp rip+disp32 */
    RC_EXE_ARM64 = 2     /* BL/B imm26, B.cond/CBZ/CBNZ imm19, ADR/ADRP imm21 */
};
enum { RC_EXE_X86_MIN_BITS = 8, RC_EXE_X86_MAX_BITS = 32 };

/* Rewrite buf[0:len] in place: the bytes of one code range whose first byte sits at
 * image-relative virtual address vaddr. inverse == 0: forward (relative -> absolute),
 * inverse != 0: the exact inverse. x86_bits (8..32, x86-64 only): the displacement window;
 * an operand is rewritten only when it is a sign-extended x86_bits-bit value, and the result
 * is one too (arithmetic modulo 2^x86_bits). ARM64 rewrites 4-byte words at addresses that are
 * multiples of 4. Returns the number of operands rewritten (>= 0) or RC_EINVAL (unknown arch,
 * bits out of range, NULL buffer with len > 0). O(len), no allocation. */
int64_t rc_exe_transform(uint8_t *buf, size_t len, uint64_t vaddr, int arch, int x86_bits,
                         int inverse);

/* cffi:end */

#endif /* REGISTRY_CORE_H */
