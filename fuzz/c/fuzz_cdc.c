/*
 * libFuzzer target for content-defined chunking: for arbitrary sizes and data, cut points are
 * strictly increasing, within [min, max] except the final chunk, and the same whether the data
 * is cut in one call or resumed after every returned boundary.
 */
#include <stdint.h>
#include <stdlib.h>

#include "registry_core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint32_t min = 64u << (data[0] % 4), avg = min << (data[1] % 4), max = avg << (data[2] % 4);
    data += 3;
    size -= 3;
    rc_cdc_params p;
    if (rc_cdc_params_init(&p, min, avg, max) != RC_OK)
        return 0;
    uint64_t cuts[4096];
    int64_t n = rc_cdc_find(&p, data, size, 1, cuts, 4096);
    if (n < 0)
        abort();
    uint64_t prev = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t len = cuts[i] - prev;
        if (cuts[i] <= prev || cuts[i] > size || len > max)
            abort();
        if (len < min && cuts[i] != size)
            abort();
        /* resuming at the previous cut must find the same next cut */
        uint64_t one;
        if (rc_cdc_find(&p, data + prev, size - prev, 1, &one, 1) != 1 || prev + one != cuts[i])
            abort();
        prev = cuts[i];
    }
    return 0;
}
