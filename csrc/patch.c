/*
 * Patch application for the three-stream (ctrl / diff / extra) delta body. Every read from the
 * streams and from old, and every write to out, is bounds-checked; a patch that does not
 * consume its streams exactly or does not fill out exactly is rejected as corrupt.
 *
 * The three-stream body is bsdiff's model (Colin Percival, bsdiff 4.3; see NOTICE).
 */
#include <string.h>

#include "registry_core.h"
#include "varint.h"

#define SEEK_LIMIT ((int64_t)1 << 62)

int rc_delta_apply(const uint8_t *old, size_t old_len, const uint8_t *ctrl, size_t ctrl_len,
                   const uint8_t *diff, size_t diff_len, const uint8_t *extra, size_t extra_len,
                   uint8_t *out, size_t out_len)
{
    if ((!old && old_len) || (!ctrl && ctrl_len) || (!diff && diff_len) ||
        (!extra && extra_len) || (!out && out_len))
        return RC_EINVAL;
    size_t cp = 0, dp = 0, ep = 0, np = 0;
    int64_t op = 0;
    while (cp < ctrl_len) {
        uint64_t lenf, lenx, zseek;
        if (rc_get_uvarint(ctrl, ctrl_len, &cp, &lenf) || rc_get_uvarint(ctrl, ctrl_len, &cp, &lenx) ||
            rc_get_uvarint(ctrl, ctrl_len, &cp, &zseek))
            return RC_ECORRUPT;
        if (lenf > out_len - np || lenf > diff_len - dp)
            return RC_ECORRUPT;
        if (lenf) {
            if (op < 0 || (uint64_t)op > old_len || lenf > old_len - (uint64_t)op)
                return RC_ECORRUPT;
            const uint8_t *o = old + op, *d = diff + dp;
            uint8_t *w = out + np;
            for (size_t i = 0; i < lenf; i++)
                w[i] = (uint8_t)(d[i] + o[i]);
            np += lenf;
            dp += lenf;
        }
        if (lenx > out_len - np || lenx > extra_len - ep)
            return RC_ECORRUPT;
        memcpy(out + np, extra + ep, lenx);
        np += lenx;
        ep += lenx;
        int64_t seek = rc_unzigzag(zseek);
        op += (int64_t)lenf;
        if (seek > SEEK_LIMIT || seek < -SEEK_LIMIT || op > SEEK_LIMIT || op < -SEEK_LIMIT)
            return RC_ECORRUPT;
        op += seek;
    }
    if (np != out_len || dp != diff_len || ep != extra_len)
        return RC_ECORRUPT;
    return RC_OK;
}

void rc_add_bytes(uint8_t *dst, const uint8_t *a, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (uint8_t)(a[i] + b[i]);
}
