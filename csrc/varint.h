/* LEB128 varints and zigzag signed integers for the control stream (header-only, internal). */
#ifndef RC_VARINT_H
#define RC_VARINT_H

#include <stddef.h>
#include <stdint.h>

#define RC_VARINT_MAX 10

/* Write v at buf (which has at least RC_VARINT_MAX bytes). Returns bytes written. */
static inline size_t rc_put_uvarint(uint8_t *buf, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        buf[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    buf[n++] = (uint8_t)v;
    return n;
}

static inline uint64_t rc_zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t rc_unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* Read a varint from buf[*pos:len]. Returns 0 on success, -1 when truncated or longer than
 * ten bytes or above 2^63 - 1 (no value in a valid patch is larger). */
static inline int rc_get_uvarint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    unsigned shift = 0;
    size_t p = *pos;
    for (int i = 0; i < RC_VARINT_MAX; i++) {
        if (p >= len)
            return -1;
        uint8_t b = buf[p++];
        if (shift == 63 && (b & 0x7e))
            return -1;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if (v > (uint64_t)INT64_MAX)
                return -1;
            *pos = p;
            *out = v;
            return 0;
        }
        shift += 7;
    }
    return -1;
}

#endif /* RC_VARINT_H */
