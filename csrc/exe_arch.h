/* Internal interface between the executable-transform dispatcher (exe_transform.c) and the
 * per-architecture rewriters (exe_x86.c, exe_arm64.c). Not part of the cffi surface. */
#ifndef RC_EXE_ARCH_H
#define RC_EXE_ARCH_H

#include <stddef.h>
#include <stdint.h>

/* Little-endian 32-bit load and store (the two architectures are little-endian). */
static inline uint32_t rc_exe_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline void rc_exe_wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Arguments are checked by the dispatcher: buf non-NULL when len > 0, bits in 8..32. */
uint64_t rc_exe_x86_64(uint8_t *buf, size_t len, uint64_t vaddr, unsigned bits, int inverse);
uint64_t rc_exe_arm64(uint8_t *buf, size_t len, uint64_t vaddr, int inverse);

#endif /* RC_EXE_ARCH_H */
