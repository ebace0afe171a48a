/*
 * libFuzzer target for the executable transforms: for any bytes, architecture, window, start
 * address and range, forward then inverse is the identity, nothing outside the range changes,
 * and every access stays inside the buffer (ASan on a heap copy of exactly the range's size).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry_core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 12)
        return 0;
    int arch = 1 + (data[0] & 1);
    int bits = RC_EXE_X86_MIN_BITS + data[1] % (RC_EXE_X86_MAX_BITS - RC_EXE_X86_MIN_BITS + 1);
    uint64_t vaddr = 0;
    memcpy(&vaddr, data + 2, 8);
    if (data[10] & 1)
        vaddr &= 0xFFFFFFull; /* small addresses, as in real images */
    size_t skip = data[11] % 8;
    data += 12;
    size -= 12;
    if (skip > size)
        skip = size;
    size_t len = size - skip;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return 0;
    memcpy(buf, data + skip, len);
    int64_t n = rc_exe_transform(buf, len, vaddr, arch, bits, 0);
    if (n < 0 || (uint64_t)n > len)
        abort();
    int64_t m = rc_exe_transform(buf, len, vaddr, arch, bits, 1);
    if (m != n || memcmp(buf, data + skip, len) != 0)
        abort();
    /* argument checks */
    if (rc_exe_transform(buf, len, vaddr, 3, bits, 0) != (len ? RC_EINVAL : 0))
        abort();
    if (len && rc_exe_transform(buf, len, vaddr, RC_EXE_X86_64, 33, 0) != RC_EINVAL)
        abort();
    free(buf);
    return 0;
}
