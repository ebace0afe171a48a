/*
 * libFuzzer target for reconstruction from untrusted records. The input's first byte picks zlib
 * parameters, the next two a number k of edits; the rest (less 3 * k bytes of edits) is the
 * content. The content is compressed with zlib, its correction record computed and checked to
 * rebuild the stream exactly; then the record is edited (k times: position, byte) and rebuilt
 * against the content: that must return an error code or a stream of at most out_cap bytes -
 * never crash, hang or read out of bounds (ASan) - and, for the unedited record, the original.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "registry_core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    int level = data[0] % 10, strategy = (data[0] / 10) % 5;
    size_t k = ((size_t)data[1] | (size_t)data[2] << 8) % 16;
    data += 3;
    size -= 3;
    if (3 * k > size)
        k = size / 3;
    const uint8_t *edits = data + size - 3 * k;
    size_t clen = size - 3 * k;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, level, Z_DEFLATED, -15, 8, strategy) != Z_OK)
        abort();
    size_t cap = deflateBound(&z, clen) + 16;
    uint8_t *comp = malloc(cap);
    z.next_in = (uint8_t *)data;
    z.avail_in = (uInt)clen;
    z.next_out = comp;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END)
        abort();
    size_t n = z.total_out;
    deflateEnd(&z);
    rc_bytes rec;
    rc_recon_stats st;
    if (rc_deflate_record(comp, n, clen, 1u << 16, -1, &rec, &st) != RC_OK)
        abort();
    uint8_t *out = malloc(n + 1);
    size_t got = 0;
    if (rc_deflate_rebuild(data, clen, rec.data, rec.len, out, n, &got) != RC_OK || got != n ||
        (n && memcmp(out, comp, n) != 0))
        abort();
    if (k && rec.len) {
        for (size_t i = 0; i < k; i++) {
            size_t pos = ((size_t)edits[3 * i] | (size_t)edits[3 * i + 1] << 8) % rec.len;
            rec.data[pos] = edits[3 * i + 2];
        }
        int rc = rc_deflate_rebuild(data, clen, rec.data, rec.len, out, n, &got);
        if (rc == RC_OK && got > n)
            abort();
    }
    rc_bytes_free(&rec);
    free(out);
    free(comp);
    return 0;
}
