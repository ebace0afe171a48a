/*
 * x86-64 code: relative operands rewritten as image-relative absolute targets.
 *
 * Recognised forms (the operand is the 32-bit displacement, the target is the address of
 * the next instruction plus the displacement):
 *   E8 rel32 (call), E9 rel32 (jmp)                     operand at +1, length 5
 *   0F 80..8F rel32 (jcc)                               operand at +2, length 6
 *   FF 15 / FF 25 disp32 (call/jmp [rip+disp32])        operand at +2, length 6
 *   REX(40..4F) op modrm(mod 00, rm 101) disp32, op a ModRM ALU/mov/lea form without
 *   immediate                                           operand at +3, length 7
 *   8B/89/8D modrm(rip) disp32 (no REX)                 operand at +2, length 6
 *   0F op modrm(rip) disp32 (SSE moves and arithmetic, movzx/movsx) operand at +3, length 7
 *
 * The scan is a left-to-right walk that, after a recognised form (rewritten or not), resumes
 * behind it. Whether a position is rewritten depends on its opcode bytes (never changed: every
 * changed byte lies inside an operand that the walk skips, and the opcode tests that read a
 * third byte require a second byte that is not E8/E9, so no later rewrite changes what they
 * read) and on the operand being a sign-extended bits-bit value; the rewrite maps that set onto itself (addition modulo 2^bits), so the inverse walk
 * sees the same decisions and subtracts what the forward walk added. The window keeps random
 * data (E8 inside constants) mostly untouched: with bits = 25 only 1 in 128 four-byte values
 * qualifies, while every real displacement of an image under 16 MiB does.
 */
#include "exe_arch.h"

static int in_window(uint32_t v, unsigned bits)
{
    uint32_t top = v >> (bits - 1);                     /* 33 - bits bits: all equal */
    uint32_t all = (uint32_t)((1ull << (33 - bits)) - 1);
    return top == 0 || top == all;
}

static uint32_t rewrite(uint32_t v, uint32_t pc, unsigned bits, int inverse)
{
    uint32_t mask = (uint32_t)((1ull << bits) - 1);
    uint32_t w = (inverse ? v - pc : v + pc) & mask;
    if (w & (1u << (bits - 1)))
        w |= ~mask;
    return w;
}

/* ModRM forms with a memory operand and no immediate, after a REX prefix. */
static int rex_modrm_op(uint8_t op)
{
    switch (op) {
    case 0x01: case 0x03: case 0x09: case 0x0B: case 0x21: case 0x23: case 0x29: case 0x2B:
    case 0x31: case 0x33: case 0x39: case 0x3B: case 0x63: case 0x85: case 0x87: case 0x89:
    case 0x8B: case 0x8D:
        return 1;
    default:
        return 0;
    }
}

/* 0F-prefixed ModRM forms with no immediate (SSE loads/stores/arithmetic, movzx, movsx). */
static int twobyte_modrm_op(uint8_t op)
{
    switch (op) {
    case 0x10: case 0x11: case 0x28: case 0x29: case 0x2E: case 0x2F: case 0x54: case 0x57:
    case 0x58: case 0x59: case 0x5C: case 0x5E: case 0x6F: case 0x7F: case 0xB6: case 0xB7:
    case 0xBE: case 0xBF:
        return 1;
    default:
        return 0;
    }
}

uint64_t rc_exe_x86_64(uint8_t *buf, size_t len, uint64_t vaddr, unsigned bits, int inverse)
{
    uint64_t count = 0;
    size_t i = 0;
    while (len >= 5 && i <= len - 5) {
        uint8_t b0 = buf[i], b1 = buf[i + 1], b2 = buf[i + 2];
        size_t op = 0, end = 0;
        if (b0 == 0xE8 || b0 == 0xE9) {
            op = i + 1;
            end = i + 5;
        } else if (b0 == 0x0F && (b1 & 0xF0) == 0x80) {
            op = i + 2;
            end = i + 6;
        } else if (b0 == 0xFF && (b1 == 0x15 || b1 == 0x25)) {
            op = i + 2;
            end = i + 6;
        } else if ((b0 & 0xF0) == 0x40 && rex_modrm_op(b1) && (b2 & 0xC7) == 0x05) {
            op = i + 3;
            end = i + 7;
        } else if ((b0 == 0x8B || b0 == 0x89 || b0 == 0x8D) && (b1 & 0xC7) == 0x05) {
            op = i + 2;
            end = i + 6;
        } else if (b0 == 0x0F && twobyte_modrm_op(b1) && (b2 & 0xC7) == 0x05) {
            op = i + 3;
            end = i + 7;
        }
        if (end != 0 && end <= len) {
            /* A recognised form consumes its bytes even when its operand is outside the
             * window: no later rewrite may then change a byte this decision read. */
            uint32_t v = rc_exe_rd32(buf + op);
            if (in_window(v, bits)) {
                uint32_t pc = (uint32_t)(vaddr + end);
                rc_exe_wr32(buf + op, rewrite(v, pc, bits, inverse));
                count++;
            }
            i = end;
            continue;
        }
        i++;
    }
    return count;
}
