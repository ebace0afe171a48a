/* FastCDC content-defined chunking: PLACEHOLDER, replaced by the chunking work. */
#include "registry_core.h"

uint64_t rc_gear_entry(unsigned int index) { (void)index; return 0; }

int rc_cdc_params_init(rc_cdc_params *params, uint32_t min_size, uint32_t avg_size,
                       uint32_t max_size)
{
    (void)params; (void)min_size; (void)avg_size; (void)max_size;
    return RC_EINVAL;
}

int64_t rc_cdc_find(const rc_cdc_params *params, const uint8_t *data, size_t len,
                    int is_final, uint64_t *out, size_t out_cap)
{
    (void)params; (void)data; (void)len; (void)is_final; (void)out; (void)out_cap;
    return RC_EINVAL;
}
