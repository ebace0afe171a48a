/* Patch application: PLACEHOLDER. */
#include "registry_core.h"

int rc_delta_apply(const uint8_t *old, size_t old_len, const uint8_t *ctrl, size_t ctrl_len,
                   const uint8_t *diff, size_t diff_len, const uint8_t *extra, size_t extra_len,
                   uint8_t *out, size_t out_len)
{
    (void)old; (void)old_len; (void)ctrl; (void)ctrl_len; (void)diff; (void)diff_len;
    (void)extra; (void)extra_len; (void)out; (void)out_len;
    return RC_EINVAL;
}

void rc_add_bytes(uint8_t *dst, const uint8_t *a, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = (uint8_t)(a[i] + b[i]);
}
