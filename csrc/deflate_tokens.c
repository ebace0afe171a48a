/*
 * Raw deflate streams (RFC 1951) as tokens plus every encoder decision, and the exact
 * re-encoder that writes the same bits back.
 *
 * rc_deflate_tokenize decodes a stream into its inflated content, its literal / match tokens
 * and one record per block holding what the tokens do not determine: the block type and final
 * bit, a stored block's padding bits and length, a dynamic block's header exactly as written
 * (HLIT, HDIST, HCLEN, the code-length code and the run-length choices), and the bits after
 * the final block. rc_deflate_encode writes tokens + records back; for every stream the
 * tokenizer accepts, encode(tokenize(s)) == s. Decoding follows zlib's inflate (what it
 * accepts is accepted; it is bounded by the caller's limits). No global state.
 */
#include <stdlib.h>
#include <string.h>

#include "deflate_tokens.h"
#include "registry_core.h"
#include "varint.h"

/* ---- growable buffers --------------------------------------------------------------------- */

int rc_gb_reserve(rc_growbuf *b, size_t extra)
{
    if (b->err)
        return b->err;
    if (extra > b->limit - b->len || b->len > b->limit) {
        b->err = RC_ERANGE;
        return b->err;
    }
    if (b->len + extra <= b->cap)
        return RC_OK;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < b->len + extra)
        ncap = ncap > (SIZE_MAX / 2) ? SIZE_MAX : ncap * 2;
    if (ncap > b->limit)
        ncap = b->limit;
    uint8_t *p = realloc(b->data, ncap ? ncap : 1);
    if (!p) {
        b->err = RC_ENOMEM;
        return b->err;
    }
    b->data = p;
    b->cap = ncap;
    return RC_OK;
}

void rc_gb_byte(rc_growbuf *b, uint8_t v)
{
    if (rc_gb_reserve(b, 1) == RC_OK)
        b->data[b->len++] = v;
}

void rc_gb_varint(rc_growbuf *b, uint64_t v)
{
    uint8_t tmp[RC_VARINT_MAX];
    rc_gb_bytes(b, tmp, rc_put_uvarint(tmp, v));
}

void rc_gb_bytes(rc_growbuf *b, const uint8_t *p, size_t n)
{
    if (n && rc_gb_reserve(b, n) == RC_OK) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
    }
}

/* ---- bit reader ------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    uint64_t bb;
    int bc;
    int err;
} bitreader;

static inline uint32_t br_bits(bitreader *s, int n)
{
    while (s->bc < n) {
        if (s->pos >= s->len) {
            s->err = 1;
            return 0;
        }
        s->bb |= (uint64_t)s->p[s->pos++] << s->bc;
        s->bc += 8;
    }
    uint32_t v = (uint32_t)(s->bb & ((1ull << n) - 1));
    s->bb >>= n;
    s->bc -= n;
    return v;
}

/* bits consumed so far */
static inline uint64_t br_tell(const bitreader *s)
{
    return (uint64_t)s->pos * 8 - (uint64_t)s->bc;
}

/* ---- canonical Huffman codes (decoding in the manner of zlib's puff.c) ------------------- */

typedef struct {
    uint16_t count[16];
    uint16_t symbol[320];
    /* first-level lookup on 9 bits: entry = symbol << 4 | length, 0 = not resolved */
    uint16_t fast[512];
} huff;

static uint32_t rev_bits(uint32_t code, int len)
{
    uint32_t r = 0;
    for (int i = 0; i < len; i++) {
        r = (r << 1) | (code & 1);
        code >>= 1;
    }
    return r;
}

/* Returns < 0 when over-subscribed, else the number of unused codes (0: complete). */
static int huff_build(huff *h, const uint8_t *lens, int n)
{
    int offs[16];
    memset(h->count, 0, sizeof h->count);
    for (int i = 0; i < n; i++)
        h->count[lens[i]]++;
    int left = 1;
    for (int len = 1; len < 16; len++) {
        left <<= 1;
        left -= h->count[len];
        if (left < 0)
            return -1;
    }
    offs[1] = 0;
    for (int len = 1; len < 15; len++)
        offs[len + 1] = offs[len] + h->count[len];
    for (int i = 0; i < n; i++)
        if (lens[i])
            h->symbol[offs[lens[i]]++] = (uint16_t)i;
    /* fast table: canonical codes of length <= 9, bit-reversed */
    memset(h->fast, 0, sizeof h->fast);
    uint32_t code = 0;
    int idx = 0;
    for (int len = 1; len <= 15; len++) {
        for (int k = 0; k < h->count[len]; k++, idx++, code++) {
            if (len <= 9) {
                uint32_t r = rev_bits(code, len);
                for (uint32_t fill = r; fill < 512; fill += (1u << len))
                    h->fast[fill] = (uint16_t)(h->symbol[idx] << 4 | len);
            }
        }
        code <<= 1;
    }
    return left;
}

static int huff_decode(bitreader *s, const huff *h)
{
    /* try the fast table with whatever bits are available */
    while (s->bc < 9 && s->pos < s->len) {
        s->bb |= (uint64_t)s->p[s->pos++] << s->bc;
        s->bc += 8;
    }
    if (s->bc >= 9) {
        uint16_t e = h->fast[s->bb & 511];
        if (e) {
            int l = e & 15;
            s->bb >>= l;
            s->bc -= l;
            return e >> 4;
        }
    }
    int code = 0, first = 0, index = 0;
    for (int len = 1; len <= 15; len++) {
        code |= (int)br_bits(s, 1);
        if (s->err)
            return -1;
        int count = h->count[len];
        if (code - count < first)
            return h->symbol[index + (code - first)];
        index += count;
        first += count;
        first <<= 1;
        code <<= 1;
    }
    return -1; /* unassigned code of an incomplete set */
}

static const uint16_t LBASE[29] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                   31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t LEXT[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t DBASE[30] = {1,   2,   3,   4,   5,   7,    9,    13,   17,   25,
                                   33,  49,  65,  97,  129, 193,  257,  385,  513,  769,
                                   1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t DEXT[30] = {0, 0, 0, 0, 1, 1, 2, 2,  3,  3,  4,  4,  5,  5,  6,
                                 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
static const uint8_t CL_ORDER[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

static void fixed_lens(uint8_t *lens)
{
    int i = 0;
    for (; i < 144; i++)
        lens[i] = 8;
    for (; i < 256; i++)
        lens[i] = 9;
    for (; i < 280; i++)
        lens[i] = 7;
    for (; i < 288; i++)
        lens[i] = 8;
    for (i = 0; i < 30; i++)
        lens[288 + i] = 5;
}

/* Parse a dynamic block header; lens[0:nlen] literal/length, lens[nlen:nlen+ndist] distance. */
static int parse_dyn(bitreader *s, uint8_t *lens, int *nlen_out, int *ndist_out)
{
    int nlen = (int)br_bits(s, 5) + 257;
    int ndist = (int)br_bits(s, 5) + 1;
    int ncode = (int)br_bits(s, 4) + 4;
    if (s->err || nlen > 286 || ndist > 30)
        return RC_ECORRUPT;
    uint8_t cl[19] = {0};
    for (int i = 0; i < ncode; i++)
        cl[CL_ORDER[i]] = (uint8_t)br_bits(s, 3);
    if (s->err)
        return RC_ECORRUPT;
    huff h;
    if (huff_build(&h, cl, 19) != 0) /* zlib: the code-length code must be complete */
        return RC_ECORRUPT;
    int index = 0;
    while (index < nlen + ndist) {
        int sym = huff_decode(s, &h);
        if (sym < 0 || s->err)
            return RC_ECORRUPT;
        if (sym < 16) {
            lens[index++] = (uint8_t)sym;
            continue;
        }
        uint8_t len = 0;
        int rep;
        if (sym == 16) {
            if (index == 0)
                return RC_ECORRUPT;
            len = lens[index - 1];
            rep = 3 + (int)br_bits(s, 2);
        } else if (sym == 17) {
            rep = 3 + (int)br_bits(s, 3);
        } else {
            rep = 11 + (int)br_bits(s, 7);
        }
        if (s->err || index + rep > nlen + ndist)
            return RC_ECORRUPT;
        while (rep--)
            lens[index++] = len;
    }
    if (lens[256] == 0)
        return RC_ECORRUPT;
    *nlen_out = nlen;
    *ndist_out = ndist;
    return RC_OK;
}

/* Code sets zlib's inflate accepts: not over-subscribed; incomplete only as a single code. */
static int acceptable(int left, const uint8_t *lens, int n)
{
    if (left < 0)
        return 0;
    if (left == 0)
        return 1;
    int used = 0, maxlen = 0;
    for (int i = 0; i < n; i++)
        if (lens[i]) {
            used++;
            if (lens[i] > maxlen)
                maxlen = lens[i];
        }
    return used == 0 || maxlen == 1;
}

/* ---- tokenizer --------------------------------------------------------------------------- */

typedef struct {
    uint32_t *v;
    size_t n, cap, limit;
} tokbuf;

static int tok_push(tokbuf *t, uint32_t v)
{
    if (t->n == t->cap) {
        if (t->n >= t->limit)
            return RC_ERANGE;
        size_t ncap = t->cap ? t->cap * 2 : 1024;
        if (ncap > t->limit)
            ncap = t->limit;
        uint32_t *p = realloc(t->v, ncap * sizeof *p);
        if (!p)
            return RC_ENOMEM;
        t->v = p;
        t->cap = ncap;
    }
    t->v[t->n++] = v;
    return RC_OK;
}

int rc_dtok_decode(const uint8_t *in, size_t in_len, size_t max_content, size_t max_blocks,
                   rc_growbuf *content, uint32_t **tokens, size_t *n_tokens, rc_growbuf *blocks,
                   size_t *consumed)
{
    bitreader s = {in, in_len, 0, 0, 0, 0};
    tokbuf tb = {NULL, 0, 0, max_content ? max_content : 1};
    content->limit = max_content;
    blocks->limit = in_len * 2 + 64; /* headers and counts are never larger than the stream */
    size_t nblocks = 0;
    int rc = RC_OK;
    int final = 0;
    uint8_t lens[320];
    huff lit, dist;
    while (!final) {
        if (nblocks++ >= max_blocks) {
            rc = RC_ERANGE;
            goto done;
        }
        final = (int)br_bits(&s, 1);
        int type = (int)br_bits(&s, 2);
        if (s.err || type == 3) {
            rc = RC_ECORRUPT;
            goto done;
        }
        uint8_t op = (uint8_t)(final | type << RC_BLK_TYPE_SHIFT);
        rc_gb_byte(blocks, op);
        if (type == 0) {
            int padn = s.bc & 7;
            uint32_t pad = br_bits(&s, padn);
            uint32_t len = br_bits(&s, 16);
            uint32_t nlen = br_bits(&s, 16);
            if (s.err || (len ^ 0xffffu) != nlen) {
                rc = RC_ECORRUPT;
                goto done;
            }
            /* s.bc is now 0 or a multiple of 8 */
            rc_gb_byte(blocks, (uint8_t)pad);
            rc_gb_varint(blocks, len);
            if (rc_gb_reserve(content, len) != RC_OK) {
                rc = content->err;
                goto done;
            }
            for (uint32_t i = 0; i < len; i++) {
                uint32_t b = br_bits(&s, 8);
                if (s.err) {
                    rc = RC_ECORRUPT;
                    goto done;
                }
                content->data[content->len++] = (uint8_t)b;
            }
            continue;
        }
        int nlen = 288, ndist = 30;
        uint64_t hdr_start = br_tell(&s);
        if (type == 1) {
            fixed_lens(lens);
        } else {
            rc = parse_dyn(&s, lens, &nlen, &ndist);
            if (rc)
                goto done;
        }
        uint64_t hdr_end = br_tell(&s);
        int left_l = huff_build(&lit, lens, nlen);
        int left_d = huff_build(&dist, lens + nlen, ndist);
        if (type == 2 &&
            (!acceptable(left_l, lens, nlen) || !acceptable(left_d, lens + nlen, ndist))) {
            rc = RC_ECORRUPT;
            goto done;
        }
        size_t first_tok = tb.n;
        for (;;) {
            int sym = huff_decode(&s, &lit);
            if (sym < 0 || s.err) {
                rc = RC_ECORRUPT;
                goto done;
            }
            if (sym < 256) {
                if (rc_gb_reserve(content, 1) != RC_OK) {
                    rc = content->err;
                    goto done;
                }
                content->data[content->len++] = (uint8_t)sym;
                if ((rc = tok_push(&tb, (uint32_t)sym)) != RC_OK)
                    goto done;
                continue;
            }
            if (sym == 256)
                break;
            sym -= 257;
            if (sym >= 29) {
                rc = RC_ECORRUPT;
                goto done;
            }
            uint32_t len = LBASE[sym] + br_bits(&s, LEXT[sym]);
            int dsym = huff_decode(&s, &dist);
            if (dsym < 0 || dsym >= 30 || s.err) {
                rc = RC_ECORRUPT;
                goto done;
            }
            uint32_t d = DBASE[dsym] + br_bits(&s, DEXT[dsym]);
            if (s.err || d > content->len) {
                rc = RC_ECORRUPT;
                goto done;
            }
            if (rc_gb_reserve(content, len) != RC_OK) {
                rc = content->err;
                goto done;
            }
            uint8_t *o = content->data + content->len;
            for (uint32_t i = 0; i < len; i++)
                o[i] = o[(ptrdiff_t)i - (ptrdiff_t)d];
            content->len += len;
            uint32_t t = RC_TOK_MAKE(len, d);
            if (sym == 27 && len == 258)
                t |= RC_TOK_LONG284;
            if ((rc = tok_push(&tb, t)) != RC_OK)
                goto done;
        }
        rc_gb_varint(blocks, tb.n - first_tok);
        if (type == 2) {
            uint64_t nbits = hdr_end - hdr_start;
            rc_gb_varint(blocks, nbits);
            /* copy the header bits again from the input */
            bitreader h = {in, in_len, (size_t)(hdr_start / 8), 0, 0, 0};
            br_bits(&h, (int)(hdr_start % 8));
            for (uint64_t i = 0; i < nbits; i += 8) {
                int n = (nbits - i) >= 8 ? 8 : (int)(nbits - i);
                rc_gb_byte(blocks, (uint8_t)br_bits(&h, n));
            }
        }
        if (blocks->err) {
            rc = blocks->err;
            goto done;
        }
    }
    {
        int padn = s.bc & 7;
        uint32_t pad = br_bits(&s, padn);
        rc_gb_byte(blocks, (uint8_t)pad);
        /* the reader may have fetched whole bytes ahead for the fast table */
        *consumed = s.pos - (size_t)(s.bc / 8);
    }
    if (blocks->err)
        rc = blocks->err;
    else if (content->err)
        rc = content->err;
done:
    if (rc) {
        free(tb.v);
        tb.v = NULL;
        tb.n = 0;
    }
    *tokens = tb.v;
    *n_tokens = tb.n;
    return rc;
}

int rc_deflate_tokenize(const uint8_t *in, size_t in_len, size_t max_content, size_t max_blocks,
                        rc_deflate_tokens *out)
{
    if (!out || (!in && in_len))
        return RC_EINVAL;
    memset(out, 0, sizeof *out);
    rc_growbuf content = {0}, blocks = {0};
    uint32_t *tokens = NULL;
    size_t n = 0, consumed = 0;
    int rc = rc_dtok_decode(in, in_len, max_content, max_blocks, &content, &tokens, &n, &blocks,
                            &consumed);
    if (rc) {
        free(content.data);
        free(blocks.data);
        free(tokens);
        return rc;
    }
    out->content = content.data;
    out->content_len = content.len;
    out->tokens = tokens;
    out->n_tokens = n;
    out->blocks = blocks.data;
    out->blocks_len = blocks.len;
    out->consumed = consumed;
    return RC_OK;
}

void rc_deflate_tokens_free(rc_deflate_tokens *t)
{
    if (!t)
        return;
    free(t->content);
    free(t->tokens);
    free(t->blocks);
    memset(t, 0, sizeof *t);
}

/* ---- exact re-encoder -------------------------------------------------------------------- */

typedef struct {
    uint8_t *out;
    size_t cap, pos;
    uint64_t bb;
    int bc;
    int err;
} bitwriter;

static inline void bw_put(bitwriter *w, uint32_t v, int n)
{
    w->bb |= (uint64_t)v << w->bc;
    w->bc += n;
    while (w->bc >= 8) {
        if (w->pos >= w->cap) {
            w->err = RC_ERANGE;
            w->bc = 0;
            w->bb = 0;
            return;
        }
        w->out[w->pos++] = (uint8_t)w->bb;
        w->bb >>= 8;
        w->bc -= 8;
    }
}

typedef struct {
    uint16_t code[320];
    uint8_t len[320];
} enc_codes;

static void build_codes(enc_codes *c, const uint8_t *lens, int n)
{
    uint16_t count[16] = {0}, next[16];
    for (int i = 0; i < n; i++)
        count[lens[i]]++;
    count[0] = 0;
    uint32_t code = 0;
    for (int len = 1; len < 16; len++) {
        code = (code + count[len - 1]) << 1;
        next[len] = (uint16_t)code;
    }
    for (int i = 0; i < n; i++) {
        c->len[i] = lens[i];
        c->code[i] = lens[i] ? (uint16_t)rev_bits(next[lens[i]]++, lens[i]) : 0;
    }
}

static int len_code(uint32_t len)
{
    int lo = 0, hi = 28;
    while (lo < hi) { /* largest code whose base <= len */
        int mid = (lo + hi + 1) / 2;
        if (LBASE[mid] <= len)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static int dist_code(uint32_t d)
{
    int lo = 0, hi = 29;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (DBASE[mid] <= d)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static int put_tokens(bitwriter *w, const enc_codes *lit, const enc_codes *dst, int nlen,
                      int ndist, const uint8_t *content, size_t content_len, size_t *cpos,
                      const uint32_t *tokens, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t t = tokens[i];
        if (!RC_TOK_IS_MATCH(t)) {
            if (*cpos >= content_len)
                return RC_ECORRUPT;
            uint8_t b = content[(*cpos)++];
            if (!lit->len[b])
                return RC_ECORRUPT;
            bw_put(w, lit->code[b], lit->len[b]);
            continue;
        }
        uint32_t len = RC_TOK_LEN(t), d = RC_TOK_DIST(t);
        if (len < 3 || len > 258 || d > *cpos || len > content_len - *cpos)
            return RC_ECORRUPT;
        int lc = (t & RC_TOK_LONG284) ? 27 : len_code(len);
        if ((t & RC_TOK_LONG284) && len != 258)
            return RC_ECORRUPT;
        int sym = 257 + lc;
        int dc = dist_code(d);
        if (sym >= nlen || dc >= ndist || !lit->len[sym] || !dst->len[dc])
            return RC_ECORRUPT;
        bw_put(w, lit->code[sym], lit->len[sym]);
        if (LEXT[lc])
            bw_put(w, len - LBASE[lc], LEXT[lc]);
        bw_put(w, dst->code[dc], dst->len[dc]);
        if (DEXT[dc])
            bw_put(w, d - DBASE[dc], DEXT[dc]);
        *cpos += len;
    }
    return RC_OK;
}

int rc_dtok_encode(const uint8_t *content, size_t content_len, const uint32_t *tokens,
                   size_t n_tokens, const uint8_t *blocks, size_t blocks_len, uint8_t *out,
                   size_t out_cap, size_t *out_len)
{
    bitwriter w = {out, out_cap, 0, 0, 0, 0};
    size_t bp = 0, ti = 0, cpos = 0;
    int final = 0;
    uint8_t lens[320], hdrbuf[320];
    enc_codes lit, dst;
    while (!final) {
        if (bp >= blocks_len)
            return RC_ECORRUPT;
        uint8_t op = blocks[bp++];
        final = op & RC_BLK_FINAL;
        int type = (op >> RC_BLK_TYPE_SHIFT) & 3;
        int predicted = (op & RC_BLK_PREDICTED_TREES) != 0;
        if (type == 3 || (op & ~0x0fu) || (predicted && type != 2))
            return RC_ECORRUPT;
        bw_put(&w, (uint32_t)final, 1);
        bw_put(&w, (uint32_t)type, 2);
        if (type == 0) {
            uint64_t len;
            if (bp >= blocks_len)
                return RC_ECORRUPT;
            uint8_t pad = blocks[bp++];
            int padn = (8 - w.bc) & 7;
            if (rc_get_uvarint(blocks, blocks_len, &bp, &len) || len > 65535 ||
                (pad >> padn) != 0 || len > content_len - cpos)
                return RC_ECORRUPT;
            bw_put(&w, pad, padn);
            bw_put(&w, (uint32_t)len, 16);
            bw_put(&w, (uint32_t)len ^ 0xffffu, 16);
            if (w.err)
                return w.err;
            if (len > w.cap - w.pos)
                return RC_ERANGE;
            if (len)
                memcpy(w.out + w.pos, content + cpos, (size_t)len);
            w.pos += (size_t)len;
            cpos += (size_t)len;
            continue;
        }
        uint64_t n;
        if (rc_get_uvarint(blocks, blocks_len, &bp, &n) || n > n_tokens - ti)
            return RC_ECORRUPT;
        int nlen = 288, ndist = 30;
        if (type == 1) {
            fixed_lens(lens);
        } else {
            const uint8_t *hdr;
            uint64_t nbits;
            size_t hdr_bytes;
            if (predicted) {
                size_t bits;
                rc_zlib_dyn_header(tokens ? tokens + ti : tokens, (size_t)n, hdrbuf, &bits);
                nbits = bits;
                hdr = hdrbuf;
                hdr_bytes = (size_t)((nbits + 7) / 8);
            } else {
                if (rc_get_uvarint(blocks, blocks_len, &bp, &nbits) || nbits > 8 * 320)
                    return RC_ECORRUPT;
                hdr_bytes = (size_t)((nbits + 7) / 8);
                if (hdr_bytes > blocks_len - bp)
                    return RC_ECORRUPT;
                hdr = blocks + bp;
                bp += hdr_bytes;
            }
            bitreader s = {hdr, hdr_bytes, 0, 0, 0, 0};
            if (parse_dyn(&s, lens, &nlen, &ndist) != RC_OK || br_tell(&s) != nbits)
                return RC_ECORRUPT;
            for (uint64_t i = 0; i < nbits; i += 8) {
                int k = (nbits - i) >= 8 ? 8 : (int)(nbits - i);
                uint8_t v = hdr[i / 8];
                if (k < 8 && (v >> k))
                    return RC_ECORRUPT; /* stray bits beyond the header */
                bw_put(&w, v, k);
            }
        }
        build_codes(&lit, lens, nlen);
        build_codes(&dst, lens + nlen, ndist);
        int rc = put_tokens(&w, &lit, &dst, nlen, ndist, content, content_len, &cpos,
                            tokens ? tokens + ti : tokens, (size_t)n);
        if (rc)
            return rc;
        ti += (size_t)n;
        if (!lit.len[256])
            return RC_ECORRUPT;
        bw_put(&w, lit.code[256], lit.len[256]);
        if (w.err)
            return w.err;
    }
    if (bp >= blocks_len)
        return RC_ECORRUPT;
    uint8_t pad = blocks[bp++];
    int padn = (8 - w.bc) & 7;
    if ((pad >> padn) != 0 || bp != blocks_len || ti != n_tokens || cpos != content_len)
        return RC_ECORRUPT;
    bw_put(&w, pad, padn);
    if (w.err)
        return w.err;
    *out_len = w.pos;
    return RC_OK;
}

int rc_deflate_encode(const uint8_t *content, size_t content_len, const uint32_t *tokens,
                      size_t n_tokens, const uint8_t *blocks, size_t blocks_len, uint8_t *out,
                      size_t out_cap, size_t *out_len)
{
    if ((!content && content_len) || (!tokens && n_tokens) || (!blocks && blocks_len) ||
        (!out && out_cap) || !out_len)
        return RC_EINVAL;
    *out_len = 0;
    return rc_dtok_encode(content, content_len, tokens, n_tokens, blocks, blocks_len, out,
                          out_cap, out_len);
}
