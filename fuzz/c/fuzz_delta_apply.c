/*
 * libFuzzer target for the C patch application: arbitrary (old, ctrl, diff, extra, out_len)
 * must never read or write out of bounds (run under ASan/UBSan) and must either fill the output
 * exactly (RC_OK) or return an error. rc_delta_measure must agree with apply (OK with length n
 * exactly when apply into n bytes succeeds). Also round-trips encode -> apply on the same input
 * split, with a work oracle: the encoder's step counter (rc_delta_out.work) must stay within
 * WORK_PER_BYTE steps per input byte, so a superlinear regression is a finding even when it is
 * too small to hit libFuzzer's -timeout. Memory and time: run with -rss_limit_mb and -timeout
 * (make fuzz-c passes both).
 *
 * Limits mode (environment, read once): RC_FUZZ_LIMITS=default (the library's encoder
 * parameters, rc_delta_params_default) or RC_FUZZ_LIMITS=small (max_chain 1..8, index_step
 * 1..8 and min_match 4..11 taken from the input: the clamping edges).
 *
 * Build and run: make fuzz-c   (clang, -fsanitize=fuzzer,address,undefined)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry_core.h"

#define WORK_PER_BYTE 64u
#define WORK_FLOOR 4096u

static int small_limits;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *mode = getenv("RC_FUZZ_LIMITS");
    small_limits = mode && strcmp(mode, "small") == 0;
    return 0;
}

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

    /* measure must agree with apply, without touching data */
    uint64_t measured = 0;
    int mrc = rc_delta_measure(parts[1], lens[1], lens[0], lens[2], lens[3], &measured);
    if (mrc != RC_OK && mrc != RC_ECORRUPT)
        abort();
    if (mrc == RC_OK) {
        if (measured != (uint64_t)lens[2] + lens[3])
            abort();
        if ((rc == RC_OK) != (out_len == measured))
            abort();
        uint8_t *exact = malloc(measured ? (size_t)measured : 1);
        if (!exact)
            abort();
        if (rc_delta_apply(parts[0], lens[0], parts[1], lens[1], parts[2], lens[2], parts[3],
                           lens[3], exact, (size_t)measured) != RC_OK)
            abort();
        free(exact);
    } else if (measured != 0 || rc == RC_OK) {
        abort();
    }

    /* encode/apply round trip: old = first part, new = the rest of the input */
    rc_delta_params params;
    rc_delta_params_default(&params);
    if (small_limits) {
        params.max_chain = 1u + (fr[0] & 7u);
        params.index_step = 1u + (fr[1] & 7u);
        params.min_match = 4u + (fr[2] & 7u);
    }
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
    /* at most new_len + 1 records: delta/_format bounds untrusted CTRL sections on it */
    if (enc.n_records > (uint64_t)new_len + 1)
        abort();
    /* work oracle: linear in the input, whatever the bytes */
    if (enc.work > WORK_FLOOR + (uint64_t)WORK_PER_BYTE * (lens[0] + new_len))
        abort();
    free(back);
    rc_delta_out_free(&enc);
    return 0;
}
