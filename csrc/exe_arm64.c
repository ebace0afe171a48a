/*
 * AArch64 code: PC-relative immediates rewritten as absolute (image-relative) targets.
 *
 * Every instruction is one little-endian 32-bit word at an address that is a multiple of 4;
 * words are rewritten independently. Recognised forms (the class test reads only bits the
 * rewrite leaves alone, so the inverse classifies every word the same way):
 *   B / BL        imm26 words      class (w & 0x7C000000) == 0x14000000
 *   B.cond        imm19 words      class (w & 0xFF000010) == 0x54000000
 *   CBZ / CBNZ    imm19 words      class (w & 0x7E000000) == 0x34000000
 *   ADR           imm21 bytes      class (w & 0x9F000000) == 0x10000000
 *   ADRP          imm21 pages      class (w & 0x9F000000) == 0x90000000
 * The field becomes (field + pc / unit) modulo 2^width (unit 4 bytes, 1 byte or 4 KiB pages),
 * a bijection on the field, so the inverse subtracts it back exactly.
 */
#include "exe_arch.h"

static uint32_t field_add(uint32_t field, uint64_t adj, unsigned width, int inverse)
{
    uint32_t mask = (uint32_t)((1ull << width) - 1);
    uint32_t a = (uint32_t)adj;
    return (inverse ? field - a : field + a) & mask;
}

uint64_t rc_exe_arm64(uint8_t *buf, size_t len, uint64_t vaddr, int inverse)
{
    uint64_t count = 0;
    size_t i = (size_t)((4 - (vaddr & 3)) & 3);
    for (; len >= 4 && i <= len - 4; i += 4) {
        uint32_t w = rc_exe_rd32(buf + i);
        uint64_t pc = vaddr + i;
        uint32_t out;
        if ((w & 0x7C000000u) == 0x14000000u) {
            uint32_t f = field_add(w & 0x03FFFFFFu, pc >> 2, 26, inverse);
            out = (w & ~0x03FFFFFFu) | f;
        } else if ((w & 0xFF000010u) == 0x54000000u || (w & 0x7E000000u) == 0x34000000u) {
            uint32_t f = field_add((w >> 5) & 0x7FFFFu, pc >> 2, 19, inverse);
            out = (w & ~(0x7FFFFu << 5)) | (f << 5);
        } else if ((w & 0x1F000000u) == 0x10000000u) {
            uint32_t imm = (((w >> 5) & 0x7FFFFu) << 2) | ((w >> 29) & 3u);
            uint64_t adj = (w & 0x80000000u) ? (pc >> 12) : pc;
            uint32_t f = field_add(imm, adj, 21, inverse);
            out = (w & 0x9F00001Fu) | ((f & 3u) << 29) | ((f >> 2) << 5);
        } else {
            continue;
        }
        rc_exe_wr32(buf + i, out);
        count++;
    }
    return count;
}
