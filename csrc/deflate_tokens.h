/*
 * Internal helpers shared by deflate_tokens.c (tokenizer, exact re-encoder) and
 * deflate_predict.c (reference model, correction record). Not part of the cffi surface.
 */
#ifndef RC_DEFLATE_TOKENS_H
#define RC_DEFLATE_TOKENS_H

#include <stddef.h>
#include <stdint.h>

/* A token is a uint32: a literal is its byte value (< 256); a match has bit 31 set, the length
 * (3..258) in bits 16..24, bit 25 when a length of 258 was written as code 284 with extra bits
 * 31 (legal for zlib's inflate, never written by zlib), the distance (1..32768) in bits 0..15
 * as distance - 1. */
#define RC_TOK_MATCH 0x80000000u
#define RC_TOK_LONG284 0x02000000u
#define RC_TOK_IS_MATCH(t) (((t)&RC_TOK_MATCH) != 0)
#define RC_TOK_LEN(t) (((t) >> 16) & 0x1ffu)
#define RC_TOK_DIST(t) (((t)&0xffffu) + 1u)
#define RC_TOK_MAKE(len, dist) (RC_TOK_MATCH | ((uint32_t)(len) << 16) | ((uint32_t)(dist)-1u))

/* A growable byte buffer with a hard cap (bounded output). */
typedef struct {
    uint8_t *data;
    size_t len, cap, limit;
    int err;
} rc_growbuf;

int rc_gb_reserve(rc_growbuf *b, size_t extra);
void rc_gb_byte(rc_growbuf *b, uint8_t v);
void rc_gb_varint(rc_growbuf *b, uint64_t v);
void rc_gb_bytes(rc_growbuf *b, const uint8_t *p, size_t n);

/* Block record opcodes (the first byte of each block record). */
#define RC_BLK_FINAL 1u
#define RC_BLK_TYPE_SHIFT 1
#define RC_BLK_PREDICTED_TREES 8u /* dynamic block whose header is zlib's for its tokens */

/* Decode a complete stream. The content buffer, tokens and block records are grown within the
 * given limits. The block records follow docs/delta-format.md ("block records"). */
int rc_dtok_decode(const uint8_t *in, size_t in_len, size_t max_content, size_t max_blocks,
                   rc_growbuf *content, uint32_t **tokens, size_t *n_tokens, rc_growbuf *blocks,
                   size_t *consumed);

/* Re-encode; see rc_deflate_encode. header_mode 0: dynamic headers come from the block records
 * (or, with RC_BLK_PREDICTED_TREES, are derived by zlib's algorithm from the block's tokens). */
int rc_dtok_encode(const uint8_t *content, size_t content_len, const uint32_t *tokens,
                   size_t n_tokens, const uint8_t *blocks, size_t blocks_len, uint8_t *out,
                   size_t out_cap, size_t *out_len);

/* zlib's (and GNU gzip's) dynamic header for a block's tokens: code lengths built by trees.c's
 * algorithm (heap, gen_bitlen with the overflow fix, max 15 / 7 bits), written with scan_tree /
 * send_tree's run-length rules. Writes the header bits (after BTYPE) to hdr (LSB first) and
 * their count to *bits. hdr must hold 320 bytes. Returns RC_OK. */
int rc_zlib_dyn_header(const uint32_t *tokens, size_t n_tokens, uint8_t *hdr, size_t *bits);

#endif /* RC_DEFLATE_TOKENS_H */
