/* Compile-time capabilities of the core, decided in one place (internal header).
 *
 * (Not named features.h: that would shadow glibc's <features.h> under -Icsrc.)
 * cdc.c uses RC_CDC_ASM to choose its gear update; version.c reports the same macros through
 * rc_features(), so build_info() can never claim a path that was not compiled. */
#ifndef RC_FEATURES_H
#define RC_FEATURES_H

/* The x86-64 inline-assembly two-byte gear update (two LEAs) in cdc.c. */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(RC_CDC_NO_ASM)
#define RC_CDC_ASM 1
#else
#define RC_CDC_ASM 0
#endif

/* A SIMD (SSE / AVX2 / NEON) chunking path. None exists: the gear hash is a serial shift-add
 * per byte, and the scan is scalar. Kept as a macro so a future SIMD path sets it here. */
#define RC_CDC_SIMD 0

#endif /* RC_FEATURES_H */
