/*-
 * The scan loop and the approximate extension between matches in rc_delta_encode follow the
 * structure of bsdiff.c from bsdiff 4.3 <http://www.daemonology.net/bsdiff/> (the match
 * finder is different: a hash-chain index instead of a suffix array). bsdiff's notice:
 *
 * Copyright 2003-2005 Colin Percival
 * All rights reserved
 *
 * Redistribution and use in source and binary forms, with or without
 * modification, are permitted providing that the following conditions
 * are met:
 * 1. Redistributions of source code must retain the above copyright
 *    notice, this list of conditions and the following disclaimer.
 * 2. Redistributions in binary form must reproduce the above copyright
 *    notice, this list of conditions and the following disclaimer in the
 *    documentation and/or other materials provided with the distribution.
 *
 * THIS SOFTWARE IS PROVIDED BY THE AUTHOR ``AS IS'' AND ANY EXPRESS OR
 * IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED
 * WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE
 * ARE DISCLAIMED.  IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR ANY
 * DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
 * DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS
 * OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION)
 * HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT,
 * STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING
 * IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
 * POSSIBILITY OF SUCH DAMAGE.
 *
 * The rest of registry-core is Apache-2.0 (LICENSE); NOTICE lists this component.
 */
/*
 * Delta encoding: match finding over an index of the old data, in the bsdiff model.
 *
 * The old data is indexed by a hash of the 8 bytes at every index_step-th position (a head
 * table plus chains, as zlib does). The new data is scanned left to right; at each position the
 * longest exact match among at most max_chain candidates (plus the previous match's offset,
 * which catches shifted-but-similar regions cheaply) is found and extended forward. Between
 * matches, bsdiff's scoring extends the previous match forward and the next one backward
 * *approximately* (mismatching bytes allowed while more than half match), so small edits inside
 * a moved block become near-zero bytes in the diff stream, which zstd compresses to almost
 * nothing. Exact bytes with no usable match go to the extra stream.
 *
 * Bounded work: chains are capped (max_chain), candidate comparison stops at NICE_LEN once a
 * long match is known, and a long match that the previous offset already covers is skipped over
 * instead of being searched again at every byte (the quadratic case of the original bsdiff).
 */
#include <stdlib.h>
#include <string.h>

#include "registry_core.h"
#include "varint.h"

#define HASH_BYTES 8
#define NICE_LEN 4096        /* stop examining candidates once a match this long is found */
#define SKIP_LEN 64          /* a covered match this long is skipped over, not re-searched */
#define EMPTY UINT32_MAX

typedef struct {
    const uint8_t *old;
    size_t old_len;
    uint32_t *head;
    uint32_t *prev;          /* chain link per indexed position (position / step) */
    unsigned bits;
    uint32_t step;
    uint32_t max_chain;
    uint32_t min_match;
    uint64_t work;           /* steps taken (rc_delta_out.work) */
} index_t;

typedef struct {
    uint8_t *data;
    size_t len, cap;
} buf_t;

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint32_t hash8(const uint8_t *p, unsigned bits)
{
    return (uint32_t)((load64(p) * 0x9E3779B97F4A7C15ULL) >> (64 - bits));
}

/* Length of the common prefix of a and b, at most n bytes. */
static inline size_t match_len(const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t i = 0;
    while (i + 8 <= n) {
        uint64_t x = load64(a + i) ^ load64(b + i);
        if (x) {
#if defined(__GNUC__) || defined(__clang__)
            uint64_t one = 1;
            if (*(const uint8_t *)&one)  /* little endian */
                return i + ((size_t)__builtin_ctzll(x) >> 3);
#endif
            break;
        }
        i += 8;
    }
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

void rc_delta_params_default(rc_delta_params *params)
{
    params->min_match = 8;
    params->max_chain = 32;
    params->index_step = 1;
    params->reserved = 0;
}

static int index_build(index_t *ix, const uint8_t *old, size_t old_len, const rc_delta_params *p)
{
    memset(ix, 0, sizeof *ix);
    ix->old = old;
    ix->old_len = old_len;
    ix->step = p->index_step ? p->index_step : 1;
    ix->max_chain = p->max_chain ? p->max_chain : 1;
    ix->min_match = p->min_match < 4 ? 4 : p->min_match;
    if (old_len < HASH_BYTES)
        return RC_OK;  /* nothing to index: every new byte becomes extra */
    size_t npos = (old_len - HASH_BYTES) / ix->step + 1;
    if (npos >= EMPTY || npos > SIZE_MAX / sizeof(uint32_t))
        return RC_EINVAL;  /* > 4 G positions: caller must raise index_step */
    /* Head table of 2^floor(log2(npos)) entries: load factor 1..2, chains stay short and the
     * table never exceeds the chain array (4 bytes per indexed position each). */
    unsigned bits = 10;
    while (bits < 30 && ((size_t)1 << (bits + 1)) <= npos)
        bits++;
    ix->bits = bits;
    ix->head = malloc(((size_t)1 << bits) * sizeof(uint32_t));
    ix->prev = malloc(npos * sizeof(uint32_t));
    if (!ix->head || !ix->prev) {
        free(ix->head);
        free(ix->prev);
        ix->head = ix->prev = NULL;
        return RC_ENOMEM;
    }
    memset(ix->head, 0xff, ((size_t)1 << bits) * sizeof(uint32_t));
    /* Insert from the end so every chain runs from low to high positions: in long runs of
     * repeated content the first candidates are the ones with the longest possible match. */
    ix->work += npos;
    for (size_t k = npos; k-- > 0;) {
        uint32_t h = hash8(old + k * ix->step, bits);
        ix->prev[k] = ix->head[h];
        ix->head[h] = (uint32_t)k;
    }
    return RC_OK;
}

static void index_free(index_t *ix)
{
    free(ix->head);
    free(ix->prev);
    ix->head = ix->prev = NULL;
}

/* Longest match for new[scan:] among the indexed candidates and old[scan + lastoffset]. */
static size_t search(index_t *ix, const uint8_t *nw, size_t new_len, size_t scan,
                     int64_t lastoffset, size_t *pos_out)
{
    size_t best = 0, best_pos = 0;
    const uint8_t *s = nw + scan;
    size_t avail = new_len - scan;

    int64_t rp = (int64_t)scan + lastoffset;
    if (rp >= 0 && (size_t)rp < ix->old_len) {
        size_t n = ix->old_len - (size_t)rp;
        best = match_len(ix->old + rp, s, n < avail ? n : avail);
        best_pos = (size_t)rp;
        ix->work += 1 + (best >> 3);
    }
    if (ix->head && avail >= HASH_BYTES && best < NICE_LEN) {
        uint32_t k = ix->head[hash8(s, ix->bits)];
        for (uint32_t c = 0; k != EMPTY && c < ix->max_chain; c++, k = ix->prev[k]) {
            size_t p = (size_t)k * ix->step;
            size_t n = ix->old_len - p;
            ix->work++;
            if (n > avail)
                n = avail;
            if (n <= best || ix->old[p + best] != s[best])
                continue;
            size_t l = match_len(ix->old + p, s, n);
            ix->work += l >> 3;
            if (l > best) {
                best = l;
                best_pos = p;
                if (best >= NICE_LEN)
                    break;
            }
        }
    }
    if (best < ix->min_match)
        return 0;
    *pos_out = best_pos;
    return best;
}

static int buf_reserve(buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len)
        return RC_ENOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return RC_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    uint8_t *d = realloc(b->data, cap);
    if (!d)
        return RC_ENOMEM;
    b->data = d;
    b->cap = cap;
    return RC_OK;
}

static inline int old_eq(const index_t *ix, int64_t op, uint8_t v)
{
    return op >= 0 && (uint64_t)op < ix->old_len && ix->old[op] == v;
}

int rc_delta_encode(const uint8_t *old, size_t old_len, const uint8_t *nw, size_t new_len,
                    const rc_delta_params *params, rc_delta_out *out)
{
    if (!out || !params || (!old && old_len) || (!nw && new_len))
        return RC_EINVAL;
    memset(out, 0, sizeof *out);
    if (old_len > (size_t)INT64_MAX / 4 || new_len > (size_t)INT64_MAX / 4)
        return RC_EINVAL;

    index_t ix;
    int rc = index_build(&ix, old, old_len, params);
    if (rc != RC_OK)
        return rc;

    buf_t ctrl = {0};
    uint8_t *diff = malloc(new_len ? new_len : 1);
    uint8_t *extra = malloc(new_len ? new_len : 1);
    if (!diff || !extra) {
        rc = RC_ENOMEM;
        goto fail;
    }
    size_t dlen = 0, elen = 0;
    uint64_t nrec = 0, matched = 0;

    const int64_t oldsize = (int64_t)old_len, newsize = (int64_t)new_len;
    int64_t scan = 0, len = 0, pos = 0, lastscan = 0, lastpos = 0, lastoffset = 0;

    while (scan < newsize) {
        int64_t oldscore = 0, scsc;
        for (scsc = scan += len; scan < newsize;) {
            size_t mpos = 0;
            len = (int64_t)search(&ix, nw, new_len, (size_t)scan, lastoffset, &mpos);
            pos = len ? (int64_t)mpos : pos;
            if (scan + len > scsc)
                ix.work += (uint64_t)(scan + len - scsc);
            for (; scsc < scan + len; scsc++)
                if (old_eq(&ix, scsc + lastoffset, nw[scsc]))
                    oldscore++;
            if ((len == oldscore && len != 0) || len > oldscore + 8)
                break;
            if (len >= SKIP_LEN) {
                /* The previous offset already covers this match: skip most of it. */
                int64_t target = scan + len - HASH_BYTES;
                ix.work += (uint64_t)(target - scan);
                for (; scan < target; scan++)
                    if (old_eq(&ix, scan + lastoffset, nw[scan]))
                        oldscore--;
                len = 0;
                continue;
            }
            if (old_eq(&ix, scan + lastoffset, nw[scan]))
                oldscore--;
            scan++;
        }
        if (len != oldscore || scan == newsize) {
            int64_t s = 0, sf = 0, lenf = 0, lenb = 0, i;
            for (i = 0; lastscan + i < scan && lastpos + i < oldsize;) {
                if (old[lastpos + i] == nw[lastscan + i])
                    s++;
                i++;
                if (s * 2 - i > sf * 2 - lenf) {
                    sf = s;
                    lenf = i;
                }
            }
            ix.work += (uint64_t)i;
            if (scan < newsize) {
                /* At most 3/4 of the region, so lastscan always advances and the extension
                 * work stays linear overall (plain bsdiff goes quadratic on runs). */
                int64_t sb = 0, cap = (scan - lastscan) - (scan - lastscan) / 4;
                s = 0;
                for (i = 1; i <= cap && pos >= i; i++) {
                    if (old[pos - i] == nw[scan - i])
                        s++;
                    if (s * 2 - i > sb * 2 - lenb) {
                        sb = s;
                        lenb = i;
                    }
                }
                ix.work += (uint64_t)i;
            }
            if (lastscan + lenf > scan - lenb) {
                int64_t overlap = (lastscan + lenf) - (scan - lenb), ss = 0, lens = 0;
                ix.work += (uint64_t)overlap;
                s = 0;
                for (i = 0; i < overlap; i++) {
                    if (nw[lastscan + lenf - overlap + i] == old[lastpos + lenf - overlap + i])
                        s++;
                    if (nw[scan - lenb + i] == old[pos - lenb + i])
                        s--;
                    if (s > ss) {
                        ss = s;
                        lens = i + 1;
                    }
                }
                lenf += lens - overlap;
                lenb -= lens;
            }
            for (i = 0; i < lenf; i++)
                diff[dlen + i] = (uint8_t)(nw[lastscan + i] - old[lastpos + i]);
            dlen += (size_t)lenf;
            int64_t xlen = (scan - lenb) - (lastscan + lenf);
            memcpy(extra + elen, nw + lastscan + lenf, (size_t)xlen);
            elen += (size_t)xlen;
            int64_t seek = scan < newsize ? (pos - lenb) - (lastpos + lenf) : 0;

            if ((rc = buf_reserve(&ctrl, 3 * RC_VARINT_MAX)) != RC_OK)
                goto fail;
            ctrl.len += rc_put_uvarint(ctrl.data + ctrl.len, (uint64_t)lenf);
            ctrl.len += rc_put_uvarint(ctrl.data + ctrl.len, (uint64_t)xlen);
            ctrl.len += rc_put_uvarint(ctrl.data + ctrl.len, rc_zigzag(seek));
            nrec++;
            matched += (uint64_t)lenf;

            lastscan = scan - lenb;
            lastpos = pos - lenb;
            lastoffset = pos - scan;
        }
    }
    index_free(&ix);
    out->ctrl = ctrl.data;
    out->ctrl_len = ctrl.len;
    out->diff = diff;
    out->diff_len = dlen;
    out->extra = extra;
    out->extra_len = elen;
    out->n_records = nrec;
    out->matched_bytes = matched;
    out->work = ix.work;
    return RC_OK;

fail:
    index_free(&ix);
    free(ctrl.data);
    free(diff);
    free(extra);
    memset(out, 0, sizeof *out);
    return rc;
}

void rc_delta_out_free(rc_delta_out *out)
{
    if (!out)
        return;
    free(out->ctrl);
    free(out->diff);
    free(out->extra);
    memset(out, 0, sizeof *out);
}
