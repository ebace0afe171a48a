/*
 * Executable transforms: argument checks and dispatch to the per-architecture rewriters.
 * The format of the records naming the ranges lives in Python (delta/_exe.py); this layer
 * only rewrites one range at a time, in place, with no allocation and no global state.
 */
#include "exe_arch.h"
#include "registry_core.h"

int64_t rc_exe_transform(uint8_t *buf, size_t len, uint64_t vaddr, int arch, int x86_bits,
                         int inverse)
{
    if (buf == NULL && len > 0)
        return RC_EINVAL;
    if (len == 0)
        return 0;
    switch (arch) {
    case RC_EXE_X86_64:
        if (x86_bits < RC_EXE_X86_MIN_BITS || x86_bits > RC_EXE_X86_MAX_BITS)
            return RC_EINVAL;
        return (int64_t)rc_exe_x86_64(buf, len, vaddr, (unsigned)x86_bits, inverse != 0);
    case RC_EXE_ARM64:
        return (int64_t)rc_exe_arm64(buf, len, vaddr, inverse != 0);
    default:
        return RC_EINVAL;
    }
}
