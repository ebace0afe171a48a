/* The gear table of the FastCDC rolling hash (see csrc/gear_table.h and
 * scripts/gen_gear_table.py for how it is generated). */
#include "registry_core.h"
#include "gear_table.h"

/* Entry `index` of the gear table; 0 for an index outside [0, 255] (tests and docs use this). */
RC_API uint64_t rc_gear_entry(unsigned int index)
{
    return index < 256u ? RC_GEAR[index] : 0;
}
