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

/* Every cursor stays within +-2^62: a seek is at most 2^62 in magnitude (the varint reader
 * refuses values above 2^63 - 1, so a zigzag seek lies in [-2^62, 2^62 - 1]), hence the sum of
 * a cursor and a seek never overflows int64_t. */
#define SEEK_LIMIT ((int64_t)1 << 62)

typedef struct {
    uint64_t lenf, lenx;
    int64_t seek;
} record_t;

/* The one walk over the control stream that both measure and apply use: reads the record at
 * *cp and checks it against the remaining diff / extra / out bytes and the old cursor *op,
 * then advances the stream positions. Returns RC_OK or RC_ECORRUPT. */
static int next_record(const uint8_t *ctrl, size_t ctrl_len, size_t *cp, size_t old_len,
                       size_t diff_left, size_t extra_left, uint64_t out_left, int64_t *op,
                       record_t *r)
{
    uint64_t zseek;
    if (rc_get_uvarint(ctrl, ctrl_len, cp, &r->lenf) ||
        rc_get_uvarint(ctrl, ctrl_len, cp, &r->lenx) ||
        rc_get_uvarint(ctrl, ctrl_len, cp, &zseek))
        return RC_ECORRUPT;
    if (r->lenf > diff_left || r->lenf > out_left)
        return RC_ECORRUPT;
    if (r->lenf) {
        /* the copy old[op : op + lenf] must lie inside old */
        if (*op < 0 || (uint64_t)*op > old_len || r->lenf > old_len - (uint64_t)*op)
            return RC_ECORRUPT;
    }
    if (r->lenx > extra_left || r->lenx > out_left - r->lenf)
        return RC_ECORRUPT;
    r->seek = rc_unzigzag(zseek);
    int64_t cur = *op + (int64_t)r->lenf; /* <= old_len <= SEEK_LIMIT when lenf > 0 */
    if (r->seek > SEEK_LIMIT || r->seek < -SEEK_LIMIT || cur > SEEK_LIMIT || cur < -SEEK_LIMIT)
        return RC_ECORRUPT;
    cur += r->seek;
    if (cur > SEEK_LIMIT || cur < -SEEK_LIMIT)
        return RC_ECORRUPT;
    *op = cur;
    return RC_OK;
}

int rc_delta_measure(const uint8_t *ctrl, size_t ctrl_len, size_t old_len, size_t diff_len,
                     size_t extra_len, uint64_t *out_len)
{
    if ((!ctrl && ctrl_len) || !out_len)
        return RC_EINVAL;
    *out_len = 0;
    if ((uint64_t)old_len > (uint64_t)SEEK_LIMIT)
        return RC_EINVAL;
    size_t cp = 0, dp = 0, ep = 0;
    int64_t op = 0;
    record_t r;
    while (cp < ctrl_len) {
        /* the output cannot exceed what the diff and extra streams hold */
        int rc = next_record(ctrl, ctrl_len, &cp, old_len, diff_len - dp, extra_len - ep,
                             (uint64_t)(diff_len - dp) + (extra_len - ep), &op, &r);
        if (rc != RC_OK)
            return rc;
        dp += (size_t)r.lenf;
        ep += (size_t)r.lenx;
    }
    if (dp != diff_len || ep != extra_len)
        return RC_ECORRUPT;
    *out_len = (uint64_t)dp + ep;
    return RC_OK;
}

int rc_delta_apply(const uint8_t *old, size_t old_len, const uint8_t *ctrl, size_t ctrl_len,
                   const uint8_t *diff, size_t diff_len, const uint8_t *extra, size_t extra_len,
                   uint8_t *out, size_t out_len)
{
    if ((!old && old_len) || (!ctrl && ctrl_len) || (!diff && diff_len) ||
        (!extra && extra_len) || (!out && out_len))
        return RC_EINVAL;
    if ((uint64_t)old_len > (uint64_t)SEEK_LIMIT)
        return RC_EINVAL;
    size_t cp = 0, dp = 0, ep = 0, np = 0;
    int64_t op = 0;
    record_t r;
    while (cp < ctrl_len) {
        int64_t at = op; /* the copy reads old from the cursor before the record's seek */
        int rc = next_record(ctrl, ctrl_len, &cp, old_len, diff_len - dp, extra_len - ep,
                             out_len - np, &op, &r);
        if (rc != RC_OK)
            return rc;
        size_t lenf = (size_t)r.lenf, lenx = (size_t)r.lenx;
        if (lenf) {
            const uint8_t *o = old + at, *d = diff + dp;
            uint8_t *w = out + np;
            for (size_t i = 0; i < lenf; i++)
                w[i] = (uint8_t)(d[i] + o[i]);
            np += lenf;
            dp += lenf;
        }
        if (lenx) {
            memcpy(out + np, extra + ep, lenx);
            np += lenx;
            ep += lenx;
        }
    }
    if (np != out_len || dp != diff_len || ep != extra_len)
        return RC_ECORRUPT;
    return RC_OK;
}

int rc_add_bytes(uint8_t *dst, const uint8_t *a, const uint8_t *b, size_t n)
{
    if (n && (!dst || !a || !b))
        return RC_EINVAL;
    for (size_t i = 0; i < n; i++)
        dst[i] = (uint8_t)(a[i] + b[i]);
    return RC_OK;
}
