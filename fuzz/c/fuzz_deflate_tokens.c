/*
 * libFuzzer target for the deflate tokenizer and exact re-encoder: any input is tried as a raw
 * deflate stream. When the tokenizer accepts it, (1) zlib's inflate must accept the same bytes
 * and give the same content, (2) re-encoding the tokens and block records must give the input
 * bytes back exactly, (3) the correction record (model chosen from the first byte) must rebuild
 * the same bytes. Limits: 1 MiB of content, 4096 blocks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "registry_core.h"

#define MAX_CONTENT (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rc_deflate_tokens t;
    if (rc_deflate_tokenize(data, size, MAX_CONTENT, 4096, &t) != RC_OK)
        return 0;
    /* (1) zlib agrees */
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -15) != Z_OK)
        abort();
    uint8_t *buf = malloc(t.content_len + 1);
    z.next_in = (uint8_t *)data;
    z.avail_in = (uInt)t.consumed;
    z.next_out = buf;
    z.avail_out = (uInt)t.content_len + 1;
    int zr = inflate(&z, Z_FINISH);
    /* zlib may refuse an incomplete code set we accept; whatever both accept must agree */
    if (zr == Z_STREAM_END &&
        (z.total_out != t.content_len || z.total_in != t.consumed ||
         (t.content_len && memcmp(buf, t.content, t.content_len) != 0)))
        abort();
    inflateEnd(&z);
    free(buf);
    /* (2) exact re-encoding */
    uint8_t *out = malloc(t.consumed + 1);
    size_t n = 0;
    if (rc_deflate_encode(t.content, t.content_len, t.tokens, t.n_tokens, t.blocks, t.blocks_len,
                          out, t.consumed, &n) != RC_OK ||
        n != t.consumed || (n && memcmp(out, data, n) != 0))
        abort();
    /* (3) prediction + correction */
    rc_bytes rec;
    rc_recon_stats st;
    int model = size ? (data[0] % 19) : 0;
    if (model == 0)
        model = -1;
    if (rc_deflate_record(data, t.consumed, MAX_CONTENT, 4096, model, &rec, &st) != RC_OK)
        abort();
    memset(out, 0, t.consumed + 1);
    if (rc_deflate_rebuild(t.content, t.content_len, rec.data, rec.len, out, t.consumed, &n) !=
            RC_OK ||
        n != t.consumed || (n && memcmp(out, data, n) != 0))
        abort();
    rc_bytes_free(&rec);
    free(out);
    rc_deflate_tokens_free(&t);
    return 0;
}
