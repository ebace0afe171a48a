/*
 * Deflate reconstruction by prediction and correction (the approach of preflate / precomp and
 * grittibanzli; see NOTICE). Given a stream's inflated content, a reference encoder model -
 * zlib's deflate_fast / deflate_slow (which GNU gzip's deflate.c shares) with hash chains over
 * the whole content, parameterised by one row of zlib's configuration table - predicts every
 * token; the correction record stores only the tokens where the real stream differs, the block
 * records (boundaries as token counts, types, stored padding) and the dynamic headers that are
 * not what zlib's trees.c would build for the block's tokens. Rebuild = predict again, apply the
 * corrections, re-encode exactly (deflate_tokens.c). The model and the record are part of the
 * layout format: docs/delta-format.md ("Reconstructed deflate streams") specifies both.
 */
#include <stdlib.h>
#include <string.h>

#include "deflate_tokens.h"
#include "registry_core.h"
#include "varint.h"

#define MIN_MATCH 3
#define MAX_MATCH 258
#define MAX_DIST 32506u /* zlib: 32 KiB window less MIN_LOOKAHEAD (262) */
#define TOO_FAR 4096u
#define HASH_BITS 15
#define HASH_SIZE (1u << HASH_BITS)
#define RECORD_VERSION 1
/* Chain steps a record may make the rebuild take for distance ranks, in all: linear in the
 * content (each step compares at most 258 bytes), so no record makes rebuild quadratic. */
#define WALK_BUDGET(n) ((uint64_t)(n)*8u + 65536u)

typedef struct {
    uint16_t good, lazy, nice, chain;
    uint8_t slow;     /* 1: lazy evaluation (deflate_slow), 0: greedy (deflate_fast) */
    uint8_t strategy; /* 0 default, 1 Z_FILTERED, 2 Z_HUFFMAN_ONLY, 3 Z_RLE */
} model_cfg;

/* Model 0 is unused; 1..9 are zlib's (and GNU gzip's) configuration table for levels 1..9
 * (good_length, max_lazy / max_insert_length, nice_length, max_chain); 10 is a greedy matcher
 * that inserts every position and searches 4096 candidates; 11..16 are levels 4..9 with
 * Z_FILTERED (lazy matches of length <= 5 dropped); 17 Z_HUFFMAN_ONLY (literals only); 18
 * Z_RLE (distance-1 runs, greedy). */
static const model_cfg MODELS[RC_DEFLATE_MODELS] = {
    {0, 0, 0, 0, 0, 0},          {4, 4, 8, 4, 0, 0},          {4, 5, 16, 8, 0, 0},
    {4, 6, 32, 32, 0, 0},        {4, 4, 16, 16, 1, 0},        {8, 16, 32, 32, 1, 0},
    {8, 16, 128, 128, 1, 0},     {8, 32, 128, 256, 1, 0},     {32, 128, 258, 1024, 1, 0},
    {32, 258, 258, 4096, 1, 0},  {32, 258, 258, 4096, 0, 0},  {4, 4, 16, 16, 1, 1},
    {8, 16, 32, 32, 1, 1},       {8, 16, 128, 128, 1, 1},     {8, 32, 128, 256, 1, 1},
    {32, 128, 258, 1024, 1, 1},  {32, 258, 258, 4096, 1, 1},  {0, 0, 0, 0, 0, 2},
    {0, 0, 0, 0, 0, 3},
};

/* Order in which model=-1 (auto) tries models on a stream's first tokens; ties keep the first. */
static const uint8_t AUTO_ORDER[RC_DEFLATE_MODELS - 1] = {6,  9,  1,  2,  3,  4,  5,  7,  8,
                                                          10, 17, 18, 11, 12, 13, 14, 15, 16};
#define AUTO_PREFIX 4096

typedef struct {
    const uint8_t *w;
    size_t n;
    uint32_t *head; /* HASH_SIZE entries: most recent position with that hash, 0 = none */
    uint32_t *prev; /* n entries: previous position with the same hash */
    size_t ins;     /* positions < ins have been inserted (or skipped) */
    uint64_t walk;  /* chain steps left for distance ranks (both directions count the same) */
    uint64_t probe; /* encoder only: chain steps left for looking ranks up */
    model_cfg cfg;
    size_t pos;     /* content position of the next token */
    int avail;      /* slow: a search result for position pos is pending */
    uint32_t cur_len, cur_dist; /* slow: the match found at pos (len 2 = none) */
    uint32_t ml, md;            /* slow: the search at pos + 1 done by the last predict */
} model;

static inline uint32_t hash3(const uint8_t *p)
{
    return (((uint32_t)p[0] << 10) ^ ((uint32_t)p[1] << 5) ^ p[2]) & (HASH_SIZE - 1);
}

/* Insert position p (when 3 bytes remain); returns the previous head (0 = none). */
static inline uint32_t insert(model *m, size_t p)
{
    if (p < m->ins) /* already inserted */
        return 0;
    m->ins = p + 1;
    if (p + MIN_MATCH > m->n)
        return 0;
    uint32_t h = hash3(m->w + p);
    uint32_t old = m->head[h];
    m->prev[p] = old;
    m->head[h] = (uint32_t)p;
    return old;
}

static void insert_through(model *m, size_t last)
{
    while (m->ins <= last && m->ins < m->n)
        insert(m, m->ins);
}

/* zlib's longest_match over the whole content: the first candidate (most recent first) that
 * is strictly longer than prev_len; stops at nice_length. Returns the length (prev_len when
 * nothing longer) and the distance in *dist. */
static uint32_t longest(const model *m, size_t s, uint32_t cur, uint32_t prev_len, uint32_t *dist)
{
    uint32_t chain = m->cfg.chain;
    if (prev_len >= m->cfg.good)
        chain >>= 2;
    size_t left = m->n - s;
    uint32_t maxlen = left < MAX_MATCH ? (uint32_t)left : MAX_MATCH;
    uint32_t nice = m->cfg.nice < maxlen ? m->cfg.nice : maxlen;
    uint32_t best = prev_len;
    size_t limit = s > MAX_DIST ? s - MAX_DIST : 0;
    const uint8_t *scan = m->w + s;
    if (best >= maxlen)
        return best;
    do {
        const uint8_t *c = m->w + cur;
        if (c[best] == scan[best] && c[best - 1] == scan[best - 1] && c[0] == scan[0] &&
            c[1] == scan[1]) {
            uint32_t len = 2;
            while (len < maxlen && c[len] == scan[len])
                len++;
            if (len > best) {
                *dist = (uint32_t)(s - cur);
                best = len;
                if (len >= nice)
                    break;
            }
        }
        cur = m->prev[cur];
    } while (cur > limit && --chain != 0);
    return best;
}

static void model_reset(model *m, size_t pos)
{
    m->pos = pos;
    m->avail = 0;
    m->cur_len = 2;
    m->cur_dist = 0;
}

/* The token the model emits at m->pos. Mutates the hash chains only by insertions that the
 * real encoder makes whatever it emits there. */
static uint32_t predict(model *m)
{
    size_t n = m->n;
    if (m->cfg.strategy == 2)
        return m->w[m->pos];
    if (m->cfg.strategy == 3) {
        size_t s = m->pos;
        const uint8_t *w = m->w;
        if (s > 0 && n - s >= MIN_MATCH && w[s - 1] == w[s] && w[s] == w[s + 1] &&
            w[s + 1] == w[s + 2]) {
            size_t len = 3, maxlen = n - s < MAX_MATCH ? n - s : MAX_MATCH;
            while (len < maxlen && w[s + len] == w[s - 1])
                len++;
            return RC_TOK_MAKE(len, 1);
        }
        return w[s];
    }
    if (!m->cfg.slow) {
        size_t s = m->pos;
        uint32_t head = n - s >= MIN_MATCH ? insert(m, s) : 0;
        uint32_t d = 0, len = 2;
        if (head && s - head <= MAX_DIST)
            len = longest(m, s, head, 2, &d);
        return len >= MIN_MATCH ? RC_TOK_MAKE(len, d) : m->w[s];
    }
    if (!m->avail) { /* zlib's non-emitting step: search at pos */
        size_t s = m->pos;
        uint32_t head = n - s >= MIN_MATCH ? insert(m, s) : 0;
        uint32_t d = 0, len = 2;
        if (head && s - head <= MAX_DIST) {
            len = longest(m, s, head, 2, &d);
            if (len <= 5 && (m->cfg.strategy == 1 || (len == MIN_MATCH && d > TOO_FAR)))
                len = 2;
        }
        m->cur_len = len;
        m->cur_dist = d;
        m->avail = 1;
    }
    size_t s = m->pos + 1; /* zlib's strstart */
    uint32_t prev_len = m->cur_len;
    uint32_t ml = 2, md = 0;
    if (s < n) {
        uint32_t head = n - s >= MIN_MATCH ? insert(m, s) : 0;
        if (head && prev_len < m->cfg.lazy && s - head <= MAX_DIST) {
            ml = longest(m, s, head, prev_len, &md);
            if (ml <= 5 && (m->cfg.strategy == 1 || (ml == MIN_MATCH && md > TOO_FAR)))
                ml = 2;
        }
    }
    m->ml = ml;
    m->md = md;
    if (prev_len >= MIN_MATCH && ml <= prev_len)
        return RC_TOK_MAKE(prev_len, m->cur_dist);
    return m->w[m->pos];
}

/* Advance past the actual token t at m->pos (predict was called for this position). */
static void commit(model *m, uint32_t t)
{
    if (m->cfg.strategy >= 2) {
        m->pos += RC_TOK_IS_MATCH(t) ? RC_TOK_LEN(t) : 1;
        return;
    }
    if (!m->cfg.slow) {
        if (RC_TOK_IS_MATCH(t)) {
            size_t len = RC_TOK_LEN(t);
            if (len <= m->cfg.lazy && m->n - (m->pos + len) >= MIN_MATCH)
                insert_through(m, m->pos + len - 1);
            else if (m->ins < m->pos + len)
                m->ins = m->pos + len;
            m->pos += len;
        } else {
            m->pos += 1;
        }
        return;
    }
    if (RC_TOK_IS_MATCH(t)) {
        size_t len = RC_TOK_LEN(t);
        insert_through(m, m->pos + len - 1);
        model_reset(m, m->pos + len);
    } else { /* literal: the search at pos + 1 becomes the pending one */
        m->pos += 1;
        m->cur_len = m->ml;
        m->cur_dist = m->md;
        m->avail = 1;
    }
}

/* A stored block's bytes: inserted like literals, then a fresh state. */
static void skip_stored(model *m, size_t len)
{
    if (len)
        insert_through(m, m->pos + len - 1);
    model_reset(m, m->pos + len);
}

static int model_init(model *m, const uint8_t *w, size_t n, int id)
{
    memset(m, 0, sizeof *m);
    m->w = w;
    m->n = n;
    m->cfg = MODELS[id];
    m->head = calloc(HASH_SIZE, sizeof *m->head);
    m->prev = malloc((n ? n : 1) * sizeof *m->prev);
    if (!m->head || !m->prev) {
        free(m->head);
        free(m->prev);
        return RC_ENOMEM;
    }
    model_reset(m, 0);
    m->walk = m->probe = WALK_BUDGET(n);
    return RC_OK;
}

static void model_free(model *m)
{
    free(m->head);
    free(m->prev);
}

/* ---- zlib's dynamic trees (trees.c: build_tree, gen_bitlen, scan_tree, send_tree) -------- */

typedef struct {
    uint32_t freq[2 * 286 + 1];
    uint16_t dad[2 * 286 + 1];
    uint8_t depth[2 * 286 + 1];
    uint16_t len[2 * 286 + 1];
    int heap[2 * 286 + 1];
    int heap_len, heap_max;
} tree_ws;

#define HEAP_SIZE (2 * 286 + 1)

static int smaller(const tree_ws *t, int n, int m)
{
    return t->freq[n] < t->freq[m] || (t->freq[n] == t->freq[m] && t->depth[n] <= t->depth[m]);
}

static void pqdownheap(tree_ws *t, int k)
{
    int v = t->heap[k];
    int j = k << 1;
    while (j <= t->heap_len) {
        if (j < t->heap_len && smaller(t, t->heap[j + 1], t->heap[j]))
            j++;
        if (smaller(t, v, t->heap[j]))
            break;
        t->heap[k] = t->heap[j];
        k = j;
        j <<= 1;
    }
    t->heap[k] = v;
}

/* Code lengths for freq[0:elems] (nonzero entries are symbols), limited to max_length bits, in
 * lens[0:elems]; returns max_code (the largest symbol given a code). */
static int build_tree(const uint32_t *freq, int elems, int max_length, uint8_t *lens)
{
    tree_ws t;
    int n, m, max_code = -1, node;
    uint16_t bl_count[16] = {0};
    memset(&t, 0, sizeof t);
    t.heap_len = 0;
    t.heap_max = HEAP_SIZE;
    for (n = 0; n < elems; n++) {
        t.freq[n] = freq[n];
        if (freq[n] != 0) {
            t.heap[++t.heap_len] = max_code = n;
            t.depth[n] = 0;
        }
    }
    while (t.heap_len < 2) {
        node = t.heap[++t.heap_len] = (max_code < 2 ? ++max_code : 0);
        t.freq[node] = 1;
        t.depth[node] = 0;
    }
    for (n = t.heap_len / 2; n >= 1; n--)
        pqdownheap(&t, n);
    node = elems;
    do {
        n = t.heap[1];
        t.heap[1] = t.heap[t.heap_len--];
        pqdownheap(&t, 1);
        m = t.heap[1];
        t.heap[--t.heap_max] = n;
        t.heap[--t.heap_max] = m;
        t.freq[node] = t.freq[n] + t.freq[m];
        t.depth[node] = (uint8_t)((t.depth[n] >= t.depth[m] ? t.depth[n] : t.depth[m]) + 1);
        t.dad[n] = t.dad[m] = (uint16_t)node;
        t.heap[1] = node++;
        pqdownheap(&t, 1);
    } while (t.heap_len >= 2);
    t.heap[--t.heap_max] = t.heap[1];
    /* gen_bitlen */
    int overflow = 0, h, bits;
    t.len[t.heap[t.heap_max]] = 0;
    for (h = t.heap_max + 1; h < HEAP_SIZE; h++) {
        n = t.heap[h];
        bits = t.len[t.dad[n]] + 1;
        if (bits > max_length) {
            bits = max_length;
            overflow++;
        }
        t.len[n] = (uint16_t)bits;
        if (n > max_code)
            continue;
        bl_count[bits]++;
    }
    if (overflow) {
        do {
            bits = max_length - 1;
            while (bl_count[bits] == 0)
                bits--;
            bl_count[bits]--;
            bl_count[bits + 1] += 2;
            bl_count[max_length]--;
            overflow -= 2;
        } while (overflow > 0);
        h = HEAP_SIZE;
        for (bits = max_length; bits != 0; bits--) {
            n = bl_count[bits];
            while (n != 0) {
                m = t.heap[--h];
                if (m > max_code)
                    continue;
                t.len[m] = (uint16_t)bits;
                n--;
            }
        }
    }
    for (n = 0; n < elems; n++)
        lens[n] = n <= max_code ? (uint8_t)t.len[n] : 0;
    for (n = 0; n < elems; n++)
        if (t.freq[n] == 0 || n > max_code)
            lens[n] = 0;
    return max_code;
}

static const uint8_t BL_ORDER[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

/* scan_tree (send == NULL: count) / send_tree (send: emit symbols into out as (sym, extra)). */
typedef struct {
    uint8_t sym[320];
    uint8_t extra[320];
    int n;
} rle_out;

static void rle_tree(const uint8_t *lens, int max_code, uint32_t *bl_freq, rle_out *out)
{
    int prevlen = -1, curlen, nextlen = lens[0], count = 0, max_count = 7, min_count = 4;
    if (nextlen == 0)
        max_count = 138, min_count = 3;
    for (int n = 0; n <= max_code; n++) {
        curlen = nextlen;
        nextlen = n + 1 <= max_code ? lens[n + 1] : 0xffff;
        if (++count < max_count && curlen == nextlen)
            continue;
        if (count < min_count) {
            bl_freq[curlen] += (uint32_t)count;
            while (count--) {
                out->sym[out->n] = (uint8_t)curlen;
                out->extra[out->n++] = 0;
            }
        } else if (curlen != 0) {
            if (curlen != prevlen) {
                bl_freq[curlen]++;
                out->sym[out->n] = (uint8_t)curlen;
                out->extra[out->n++] = 0;
                count--;
            }
            bl_freq[16]++;
            out->sym[out->n] = 16;
            out->extra[out->n++] = (uint8_t)(count - 3);
        } else if (count <= 10) {
            bl_freq[17]++;
            out->sym[out->n] = 17;
            out->extra[out->n++] = (uint8_t)(count - 3);
        } else {
            bl_freq[18]++;
            out->sym[out->n] = 18;
            out->extra[out->n++] = (uint8_t)(count - 11);
        }
        count = 0;
        prevlen = curlen;
        if (nextlen == 0)
            max_count = 138, min_count = 3;
        else if (curlen == nextlen)
            max_count = 6, min_count = 3;
        else
            max_count = 7, min_count = 4;
    }
}

typedef struct {
    uint8_t *p;
    size_t cap;
    size_t bits;
} hdr_writer;

static void hw_put(hdr_writer *w, uint32_t v, int n)
{
    for (int i = 0; i < n; i++, w->bits++) {
        if (w->bits / 8 >= w->cap)
            return;
        if (v >> i & 1)
            w->p[w->bits / 8] |= (uint8_t)(1u << (w->bits % 8));
    }
}

static uint32_t rev(uint32_t code, int len)
{
    uint32_t r = 0;
    for (int i = 0; i < len; i++) {
        r = (r << 1) | (code & 1);
        code >>= 1;
    }
    return r;
}

static void canon(const uint8_t *lens, int n, uint16_t *codes)
{
    uint16_t count[16] = {0}, next[16];
    for (int i = 0; i < n; i++)
        count[lens[i]]++;
    count[0] = 0;
    uint32_t code = 0;
    for (int b = 1; b < 16; b++) {
        code = (code + count[b - 1]) << 1;
        next[b] = (uint16_t)code;
    }
    for (int i = 0; i < n; i++)
        codes[i] = lens[i] ? (uint16_t)rev(next[lens[i]]++, lens[i]) : 0;
}

static int lcode(uint32_t len)
{
    static const uint16_t base[29] = {3,  4,  5,  6,  7,  8,  9,  10,  11,  13,  15,  17,  19,  23, 27,
                                      31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
    int c = 0;
    while (c < 28 && base[c + 1] <= len)
        c++;
    return c;
}

static int dcode(uint32_t d)
{
    static const uint16_t base[30] = {1,    2,    3,    4,    5,    7,    9,    13,    17,    25,
                                      33,   49,   65,   97,   129,  193,  257,  385,   513,   769,
                                      1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
    int c = 0;
    while (c < 29 && base[c + 1] <= d)
        c++;
    return c;
}

int rc_zlib_dyn_header(const uint32_t *tokens, size_t n_tokens, uint8_t *hdr, size_t *bits)
{
    uint32_t lf[286] = {0}, df[30] = {0}, blf[19] = {0};
    uint8_t ll[287], dl[31], bl[19];
    for (size_t i = 0; i < n_tokens; i++) {
        uint32_t t = tokens[i];
        if (!RC_TOK_IS_MATCH(t)) {
            lf[t & 0xff]++;
        } else {
            int lc = (t & RC_TOK_LONG284) ? 27 : lcode(RC_TOK_LEN(t));
            lf[257 + lc]++;
            df[dcode(RC_TOK_DIST(t))]++;
        }
    }
    lf[256] = 1;
    int lmax = build_tree(lf, 286, 15, ll);
    int dmax = build_tree(df, 30, 15, dl);
    rle_out lr = {{0}, {0}, 0}, dr = {{0}, {0}, 0};
    rle_tree(ll, lmax, blf, &lr);
    rle_tree(dl, dmax, blf, &dr);
    build_tree(blf, 19, 7, bl);
    int max_blindex;
    for (max_blindex = 18; max_blindex >= 3; max_blindex--)
        if (bl[BL_ORDER[max_blindex]] != 0)
            break;
    uint16_t blc[19];
    canon(bl, 19, blc);
    memset(hdr, 0, 320);
    hdr_writer w = {hdr, 320, 0};
    hw_put(&w, (uint32_t)(lmax + 1 - 257), 5);
    hw_put(&w, (uint32_t)(dmax + 1 - 1), 5);
    hw_put(&w, (uint32_t)(max_blindex + 1 - 4), 4);
    for (int r = 0; r <= max_blindex; r++)
        hw_put(&w, bl[BL_ORDER[r]], 3);
    const rle_out *parts[2] = {&lr, &dr};
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < parts[p]->n; i++) {
            int s = parts[p]->sym[i];
            hw_put(&w, blc[s], bl[s]);
            if (s == 16)
                hw_put(&w, parts[p]->extra[i], 2);
            else if (s == 17)
                hw_put(&w, parts[p]->extra[i], 3);
            else if (s == 18)
                hw_put(&w, parts[p]->extra[i], 7);
        }
    *bits = w.bits;
    return RC_OK;
}

/* ---- the correction record --------------------------------------------------------------- */

/* Walk the block records; for each compressed block call fn with its token count, for each
 * stored block skip its bytes. Used by both directions to drive the model. */

typedef struct {
    const uint8_t *blocks;
    size_t len, pos;
} blk_reader;

/* Count the corrections model id makes on tokens[0:limit], stopping also after 16 x limit
 * content bytes (auto selection; long matches would otherwise make it a whole pass). */
static int count_corrections(const uint8_t *content, size_t content_len, const uint32_t *tokens,
                             size_t n_tokens, const uint8_t *blocks, size_t blocks_len, int id,
                             size_t limit, size_t *out)
{
    model m;
    if (model_init(&m, content, content_len, id))
        return RC_ENOMEM;
    size_t bp = 0, ti = 0, bad = 0;
    if (limit > n_tokens)
        limit = n_tokens;
    int final = 0;
    while (!final && ti < limit && bp < blocks_len) {
        uint8_t op = blocks[bp++];
        final = op & 1;
        int type = (op >> 1) & 3;
        uint64_t v = 0;
        if (type == 0) {
            bp++;
            rc_get_uvarint(blocks, blocks_len, &bp, &v);
            skip_stored(&m, (size_t)v);
            continue;
        }
        rc_get_uvarint(blocks, blocks_len, &bp, &v);
        if (type == 2 && !(op & RC_BLK_PREDICTED_TREES)) {
            uint64_t nbits = 0;
            rc_get_uvarint(blocks, blocks_len, &bp, &nbits);
            bp += (size_t)((nbits + 7) / 8);
        }
        for (uint64_t k = 0; k < v && ti < limit && m.pos < limit * 16; k++, ti++) {
            uint32_t p = predict(&m);
            if (p != tokens[ti])
                bad++;
            commit(&m, tokens[ti]);
        }
    }
    model_free(&m);
    *out = bad;
    return RC_OK;
}

/* Distances of corrected matches are coded as a rank among the hash-chain candidates of the
 * position (most recent first) that match at least the token's length: what the real encoder
 * chose is usually one of the first few. Only for the hash-chain models (strategy 0 / 1), only
 * when the position was inserted, within 32768 bytes and CHAIN_WALK candidates. */
#define CHAIN_WALK 4096

static int has_chain(const model *m, size_t pos)
{
    return m->cfg.strategy < 2 && pos + MIN_MATCH <= m->n;
}

/* rank >= 0 of the candidate at distance dist, or -1. A rank found after s steps is used
 * only while the rebuild's budget (m->walk) still holds s steps, and is then charged to it;
 * looking up (m->probe) is bounded the same way on the encoder's side. */
static int64_t chain_rank(model *m, size_t pos, uint32_t len, uint32_t dist)
{
    if (!has_chain(m, pos) || len > m->n - pos)
        return -1;
    const uint8_t *w = m->w;
    uint32_t c = m->prev[pos];
    int64_t rank = 0;
    uint64_t steps = 0;
    for (; c && pos - c <= 32768 && steps < CHAIN_WALK && steps < m->probe;
         c = m->prev[c]) {
        steps++;
        if (memcmp(w + c, w + pos, len) != 0)
            continue;
        if (pos - c == dist) {
            m->probe -= steps;
            if (steps > m->walk)
                return -1;
            m->walk -= steps;
            return rank;
        }
        rank++;
    }
    m->probe -= steps;
    return -1;
}

/* the distance of the candidate of that rank, or 0 (also when the budget is spent) */
static uint32_t chain_pick(model *m, size_t pos, uint32_t len, uint64_t rank)
{
    if (!has_chain(m, pos) || len > m->n - pos)
        return 0;
    const uint8_t *w = m->w;
    uint32_t c = m->prev[pos];
    uint64_t steps = 0;
    for (; c && pos - c <= 32768 && steps < CHAIN_WALK && steps < m->walk; c = m->prev[c]) {
        steps++;
        if (memcmp(w + c, w + pos, len) != 0)
            continue;
        if (rank-- == 0) {
            m->walk -= steps;
            return (uint32_t)(pos - c);
        }
    }
    return 0;
}

/* code (0 literal, 1..256 length - 2, 257 long-284), then for a match the distance reference:
 * 0 the predicted distance, 1 + a raw distance follows, 2 + k the k-th chain candidate. */
static void put_token(rc_growbuf *out, model *m, uint32_t actual, uint32_t predicted)
{
    if (!RC_TOK_IS_MATCH(actual)) {
        rc_gb_varint(out, 0);
        return;
    }
    uint32_t len = RC_TOK_LEN(actual);
    rc_gb_varint(out, (actual & RC_TOK_LONG284) ? 257 : len - 2);
    uint32_t d = RC_TOK_DIST(actual);
    if (RC_TOK_IS_MATCH(predicted) && RC_TOK_DIST(predicted) == d) {
        rc_gb_varint(out, 0);
        return;
    }
    int64_t rank = chain_rank(m, m->pos, len, d);
    if (rank >= 0) {
        rc_gb_varint(out, (uint64_t)rank + 2);
    } else {
        rc_gb_varint(out, 1);
        rc_gb_varint(out, d);
    }
}

int rc_deflate_record(const uint8_t *in, size_t in_len, size_t max_content, size_t max_blocks,
                      int model_id, rc_bytes *record, rc_recon_stats *stats)
{
    if ((!in && in_len) || !record || model_id < -1 || model_id == 0 ||
        model_id >= RC_DEFLATE_MODELS)
        return RC_EINVAL;
    memset(record, 0, sizeof *record);
    rc_recon_stats st;
    memset(&st, 0, sizeof st);
    rc_deflate_tokens tk;
    int rc = rc_deflate_tokenize(in, in_len, max_content, max_blocks, &tk);
    if (rc)
        return rc;
    if (tk.consumed != in_len) {
        rc_deflate_tokens_free(&tk);
        return RC_ECORRUPT;
    }
    if (model_id == -1) {
        /* every model on the first AUTO_PREFIX tokens; models tied for the fewest corrections
         * again on 8 x as many (neighbouring levels often agree on a stream's start) */
        size_t bads[RC_DEFLATE_MODELS], best = SIZE_MAX;
        for (int i = 0; i < RC_DEFLATE_MODELS - 1; i++) {
            int id = AUTO_ORDER[i];
            rc = count_corrections(tk.content, tk.content_len, tk.tokens, tk.n_tokens, tk.blocks,
                                   tk.blocks_len, id, AUTO_PREFIX, &bads[id]);
            if (rc)
                goto out;
            if (bads[id] < best) {
                best = bads[id];
                model_id = id;
            }
        }
        if (tk.n_tokens > AUTO_PREFIX) {
            size_t best2 = SIZE_MAX;
            for (int i = 0; i < RC_DEFLATE_MODELS - 1; i++) {
                int id = AUTO_ORDER[i];
                size_t bad;
                if (bads[id] != best)
                    continue;
                rc = count_corrections(tk.content, tk.content_len, tk.tokens, tk.n_tokens,
                                       tk.blocks, tk.blocks_len, id, 8 * AUTO_PREFIX, &bad);
                if (rc)
                    goto out;
                if (bad < best2) {
                    best2 = bad;
                    model_id = id;
                }
            }
        }
    }
    /* the record: version, model, block records (predicted headers omitted), corrections */
    rc_growbuf blocks = {NULL, 0, 0, tk.blocks_len + 16, 0};
    rc_growbuf corr = {NULL, 0, 0, (size_t)tk.n_tokens * 12 + 16, 0};
    model m;
    if ((rc = model_init(&m, tk.content, tk.content_len, model_id)) != RC_OK)
        goto out;
    size_t bp = 0, ti = 0, last = 0;
    int final = 0;
    uint8_t hdr[320];
    while (!final) {
        uint8_t op = tk.blocks[bp++];
        final = op & 1;
        int type = (op >> 1) & 3;
        uint64_t v = 0;
        st.blocks++;
        if (type == 0) {
            rc_gb_byte(&blocks, op);
            rc_gb_byte(&blocks, tk.blocks[bp++]);
            rc_get_uvarint(tk.blocks, tk.blocks_len, &bp, &v);
            rc_gb_varint(&blocks, v);
            skip_stored(&m, (size_t)v);
            continue;
        }
        rc_get_uvarint(tk.blocks, tk.blocks_len, &bp, &v);
        if (type == 2) {
            uint64_t nbits = 0;
            size_t pbits;
            rc_get_uvarint(tk.blocks, tk.blocks_len, &bp, &nbits);
            size_t nbytes = (size_t)((nbits + 7) / 8);
            rc_zlib_dyn_header(tk.tokens ? tk.tokens + ti : tk.tokens, (size_t)v, hdr, &pbits);
            if (pbits == nbits && memcmp(hdr, tk.blocks + bp, nbytes) == 0) {
                rc_gb_byte(&blocks, op | RC_BLK_PREDICTED_TREES);
                rc_gb_varint(&blocks, v);
                st.predicted_trees++;
            } else {
                rc_gb_byte(&blocks, op);
                rc_gb_varint(&blocks, v);
                rc_gb_varint(&blocks, nbits);
                rc_gb_bytes(&blocks, tk.blocks + bp, nbytes);
            }
            bp += nbytes;
        } else {
            rc_gb_byte(&blocks, op);
            rc_gb_varint(&blocks, v);
        }
        for (uint64_t k = 0; k < v; k++, ti++) {
            uint32_t p = predict(&m);
            uint32_t a = tk.tokens[ti];
            if (p != a) {
                rc_gb_varint(&corr, ti - last);
                put_token(&corr, &m, a, p);
                last = ti + 1;
                st.corrections++;
            }
            commit(&m, a);
        }
    }
    rc_gb_byte(&blocks, tk.blocks[bp++]); /* trailing bits */
    model_free(&m);
    if (blocks.err || corr.err) {
        rc = blocks.err ? blocks.err : corr.err;
        free(blocks.data);
        free(corr.data);
        goto out;
    }
    {
        rc_growbuf r = {NULL, 0, 0, blocks.len + corr.len + 32, 0};
        rc_gb_byte(&r, RECORD_VERSION);
        rc_gb_byte(&r, (uint8_t)model_id);
        rc_gb_varint(&r, tk.content_len);
        rc_gb_bytes(&r, blocks.data, blocks.len);
        rc_gb_varint(&r, st.corrections);
        rc_gb_bytes(&r, corr.data, corr.len);
        free(blocks.data);
        free(corr.data);
        if (r.err) {
            free(r.data);
            rc = r.err;
            goto out;
        }
        record->data = r.data;
        record->len = r.len;
    }
    st.model = (uint32_t)model_id;
    st.tokens = tk.n_tokens;
    if (stats)
        *stats = st;
out:
    rc_deflate_tokens_free(&tk);
    return rc;
}

void rc_bytes_free(rc_bytes *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

/* Skip one block record at *bp (already validated by the first pass); returns its op. */
int rc_deflate_rebuild(const uint8_t *content, size_t content_len, const uint8_t *record,
                       size_t record_len, uint8_t *out, size_t out_cap, size_t *out_len)
{
    if ((!content && content_len) || (!record && record_len) || (!out && out_cap) || !out_len)
        return RC_EINVAL;
    *out_len = 0;
    size_t rp = 0;
    uint64_t clen, v = 0, ncorr;
    if (record_len < 2 || record[0] != RECORD_VERSION || record[1] == 0 ||
        record[1] >= RC_DEFLATE_MODELS)
        return RC_ECORRUPT;
    int model_id = record[1];
    rp = 2;
    if (rc_get_uvarint(record, record_len, &rp, &clen) || clen != content_len)
        return RC_ECORRUPT;
    /* first pass over the block records: validate and count tokens */
    size_t blocks_start = rp, total = 0, stored_bytes = 0;
    int final = 0;
    while (!final) {
        if (rp >= record_len)
            return RC_ECORRUPT;
        uint8_t op = record[rp++];
        final = op & 1;
        int type = (op >> 1) & 3;
        if (type == 3 || (op & ~0x0fu) || ((op & RC_BLK_PREDICTED_TREES) && type != 2))
            return RC_ECORRUPT;
        if (type == 0) {
            if (rp >= record_len)
                return RC_ECORRUPT;
            rp++;
            if (rc_get_uvarint(record, record_len, &rp, &v) || v > 65535 ||
                v > content_len - stored_bytes)
                return RC_ECORRUPT;
            stored_bytes += (size_t)v;
            continue;
        }
        if (rc_get_uvarint(record, record_len, &rp, &v) || v > content_len - total)
            return RC_ECORRUPT;
        total += (size_t)v;
        if (type == 2 && !(op & RC_BLK_PREDICTED_TREES)) {
            uint64_t nbits = 0;
            if (rc_get_uvarint(record, record_len, &rp, &nbits) || nbits > 8 * 320 ||
                (nbits + 7) / 8 > record_len - rp)
                return RC_ECORRUPT;
            rp += (size_t)((nbits + 7) / 8);
        }
    }
    if (rp >= record_len)
        return RC_ECORRUPT;
    rp++; /* trailing bits */
    size_t blocks_end = rp;
    if (total + stored_bytes > content_len ||
        rc_get_uvarint(record, record_len, &rp, &ncorr) || ncorr > total)
        return RC_ECORRUPT;
    uint32_t *tokens = malloc((total ? total : 1) * sizeof *tokens);
    if (!tokens)
        return RC_ENOMEM;
    model m;
    if (model_init(&m, content, content_len, model_id)) {
        free(tokens);
        return RC_ENOMEM;
    }
    int rc = RC_OK;
    size_t bp = blocks_start, ti = 0;
    uint64_t next_fix = UINT64_MAX, left = ncorr;
    if (left) {
        if (rc_get_uvarint(record, record_len, &rp, &v) || v > total) {
            rc = RC_ECORRUPT;
            goto done;
        }
        next_fix = v;
    }
    final = 0;
    while (!final) {
        uint8_t op = record[bp++];
        final = op & 1;
        int type = (op >> 1) & 3;
        if (type == 0) {
            bp++;
            rc_get_uvarint(record, record_len, &bp, &v);
            if (v > content_len - m.pos) {
                rc = RC_ECORRUPT;
                goto done;
            }
            skip_stored(&m, (size_t)v);
            continue;
        }
        rc_get_uvarint(record, record_len, &bp, &v);
        if (type == 2 && !(op & RC_BLK_PREDICTED_TREES)) {
            uint64_t nbits = 0;
            rc_get_uvarint(record, record_len, &bp, &nbits);
            bp += (size_t)((nbits + 7) / 8);
        }
        for (uint64_t k = 0; k < v; k++, ti++) {
            if (m.pos >= content_len) {
                rc = RC_ECORRUPT;
                goto done;
            }
            uint32_t p = predict(&m);
            uint32_t a = p;
            if (ti == next_fix) {
                uint64_t code, d;
                if (rc_get_uvarint(record, record_len, &rp, &code) || code > 257) {
                    rc = RC_ECORRUPT;
                    goto done;
                }
                if (code == 0) {
                    a = content[m.pos];
                } else {
                    uint32_t len = code == 257 ? 258 : (uint32_t)code + 2;
                    uint64_t ref;
                    if (rc_get_uvarint(record, record_len, &rp, &ref)) {
                        rc = RC_ECORRUPT;
                        goto done;
                    }
                    if (ref == 0) {
                        if (!RC_TOK_IS_MATCH(p)) {
                            rc = RC_ECORRUPT;
                            goto done;
                        }
                        d = RC_TOK_DIST(p);
                    } else if (ref == 1) {
                        if (rc_get_uvarint(record, record_len, &rp, &d) || d == 0 || d > 32768) {
                            rc = RC_ECORRUPT;
                            goto done;
                        }
                    } else {
                        d = chain_pick(&m, m.pos, len, ref - 2);
                        if (d == 0) {
                            rc = RC_ECORRUPT;
                            goto done;
                        }
                    }
                    a = RC_TOK_MAKE(len, d);
                    if (code == 257)
                        a |= RC_TOK_LONG284;
                }
                if (a == p) { /* a correction must differ from the prediction */
                    rc = RC_ECORRUPT;
                    goto done;
                }
                if (--left) {
                    uint64_t skip;
                    if (rc_get_uvarint(record, record_len, &rp, &skip) || skip > total - ti - 1) {
                        rc = RC_ECORRUPT;
                        goto done;
                    }
                    next_fix = ti + 1 + skip;
                } else {
                    next_fix = UINT64_MAX;
                }
            }
            if (RC_TOK_IS_MATCH(a)) {
                uint32_t len = RC_TOK_LEN(a), d = RC_TOK_DIST(a);
                if (d > m.pos || len > content_len - m.pos) {
                    rc = RC_ECORRUPT;
                    goto done;
                }
            }
            tokens[ti] = a;
            commit(&m, a);
        }
    }
    if (left || rp != record_len) {
        rc = RC_ECORRUPT;
        goto done;
    }
    rc = rc_dtok_encode(content, content_len, tokens, total, record + blocks_start,
                        blocks_end - blocks_start, out, out_cap, out_len);
done:
    model_free(&m);
    free(tokens);
    return rc;
}
