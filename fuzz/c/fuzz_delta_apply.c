/*
 * libFuzzer target for the C patch application: arbitrary (old, ctrl, diff, extra, out_len)
 * must never read or write out of bounds (run under ASan/UBSan) and must either fill the output
 * exactly (RC_OK) or return an error. Also round-trips encode -> apply on the same input split.
 *
 * Build and run: make fuzz-c   (clang, -fsanitize=fuzzer,address,undefined)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry_core.h"

static size_t take(const uint8_t **data, size_t *size, size_t want)
{
    size_t n = want < *size ? want : *size;
    *data += n;
    *size -= n;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 6)
        return 0;
    /* header: four 1-byte length fractions and an output length byte */
    size_t fr[4] = {data[0], data[1], data[2], data[3]};
    size_t out_len = (size_t)data[4] * 16 + data[5];
    data += 6;
    size -= 6;
    const uint8_t *parts[4];
    size_t lens[4];
    for (int i = 0; i < 4; i++) {
        parts[i] = data;
        lens[i] = take(&data, &size, fr[i] * 4);
    }
    uint8_t *out = malloc(out_len ? out_len : 1);
    if (!out)
        return 0;
    int rc = rc_delta_apply(parts[0], lens[0], parts[1], lens[1], parts[2], lens[2], parts[3],
                            lens[3], out, out_len);
    if (rc != RC_OK && rc != RC_ECORRUPT && rc != RC_EINVAL)
        abort();
    free(out);

    /* encode/apply round trip: old = first part, new = the rest of the input */
    rc_delta_params params;
    rc_delta_params_default(&params);
    rc_delta_out enc;
    if (rc_delta_encode(parts[0], lens[0], parts[1], lens[1] + lens[2] + lens[3], &params, &enc) != RC_OK)
        abort();
    size_t new_len = lens[1] + lens[2] + lens[3];
    uint8_t *back = malloc(new_len ? new_len : 1);
    if (!back)
        abort();
    if (rc_delta_apply(parts[0], lens[0], enc.ctrl, enc.ctrl_len, enc.diff, enc.diff_len,
                       enc.extra, enc.extra_len, back, new_len) != RC_OK)
        abort();
    if (new_len && memcmp(back, parts[1], new_len) != 0)
        abort();
    free(back);
    rc_delta_out_free(&enc);
    return 0;
}
