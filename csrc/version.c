/* Build information compiled into the core (see registry_core.build_info()). */
#include "registry_core.h"
#include "rc_features.h"

#ifndef RC_VERSION
#error "RC_VERSION must be defined by the build (src/registry_core/_native/_build.py)"
#endif
#ifndef RC_CFLAGS
#define RC_CFLAGS "unknown"
#endif
#ifndef RC_PGO
#define RC_PGO 0
#endif
#ifndef RC_SANITIZED
#define RC_SANITIZED 0
#endif

const char *rc_version(void) { return RC_VERSION; }

const char *rc_compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

const char *rc_cflags(void) { return RC_CFLAGS; }
int rc_pgo(void) { return RC_PGO; }
int rc_sanitized(void) { return RC_SANITIZED; }

uint32_t rc_features(void)
{
    uint32_t f = 0;
#if RC_CDC_SIMD
    f |= RC_FEATURE_CDC_SIMD;
#endif
#if RC_CDC_ASM
    f |= RC_FEATURE_CDC_ASM;
#endif
    if (RC_PGO)
        f |= RC_FEATURE_PGO;
    if (RC_SANITIZED)
        f |= RC_FEATURE_SANITIZED;
    return f;
}
