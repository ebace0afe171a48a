/* Delta match finding: PLACEHOLDER. */
#include <stdlib.h>
#include "registry_core.h"

void rc_delta_params_default(rc_delta_params *params)
{
    params->min_match = 8; params->max_chain = 32; params->index_step = 1; params->reserved = 0;
}

int rc_delta_encode(const uint8_t *old, size_t old_len, const uint8_t *new_, size_t new_len,
                    const rc_delta_params *params, rc_delta_out *out)
{
    (void)old; (void)old_len; (void)new_; (void)new_len; (void)params; (void)out;
    return RC_EINVAL;
}

void rc_delta_out_free(rc_delta_out *out)
{
    free(out->ctrl); free(out->diff); free(out->extra);
    out->ctrl = out->diff = out->extra = NULL;
}
