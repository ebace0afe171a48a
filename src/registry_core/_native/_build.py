"""cffi out-of-line API-mode build of the C core (``registry_core._native._core``).

Named by ``setup.py`` through ``cffi_modules``. The cdef is read from the marked section of
``csrc/registry_core.h`` so the C declarations live in exactly one place. Environment knobs:

- ``REGISTRY_CORE_SANITIZE=1``: build with AddressSanitizer and UndefinedBehaviorSanitizer.
- ``REGISTRY_CORE_PGO=generate`` / ``REGISTRY_CORE_PGO=use``: the two passes of a
  profile-guided build (``scripts/pgo_build.sh`` drives them); the profile directory is
  ``REGISTRY_CORE_PGO_DIR`` (default ``build/pgo``).

Size and link experiments (``benchmarks/bench_pgo.py`` measures each; none is on by default,
``scripts/build_wheel_pgo.sh`` picks the ones that measured free):

- ``REGISTRY_CORE_OPT=3|2|s``: the optimisation level (default ``3``).
- ``REGISTRY_CORE_LTO=1``: link-time optimisation (``-flto``).
- ``REGISTRY_CORE_GC_SECTIONS=1``: one section per function and datum, unused ones dropped at
  link time (``-ffunction-sections -fdata-sections -Wl,--gc-sections``; ELF linkers only).
- ``REGISTRY_CORE_STRIP=1``: no symbol table or debug information in the module (``-s``; the
  interpreter's own ``CFLAGS`` usually carry ``-g``).

Every flag chosen here, compile or link, is compiled into the core and reported by
``build_info()["cflags"]`` (the profile directory is left out: it is a path, not a choice).
"""

from __future__ import annotations

import os
import pathlib
import re
import sys
import sysconfig

from cffi import FFI

ROOT = pathlib.Path(__file__).resolve().parents[3]
CSRC = ROOT / "csrc"
HEADER = CSRC / "registry_core.h"
VERSION_FILE = ROOT / "src" / "registry_core" / "_version.py"


def _cdef() -> str:
    text = HEADER.read_text()
    match = re.search(r"/\* cffi:begin \*/(.*?)/\* cffi:end \*/", text, re.S)
    if not match:
        raise RuntimeError(f"{HEADER}: cffi:begin / cffi:end markers not found")
    return match.group(1)


def _version() -> str:
    match = re.search(r'__version__\s*=\s*"([^"]+)"', VERSION_FILE.read_text())
    if not match:
        raise RuntimeError(f"{VERSION_FILE}: __version__ not found")
    return match.group(1)


OPT_LEVELS = ("3", "2", "s")


def _knob(name: str) -> bool:
    value = os.environ.get(name, "")
    if value not in ("", "0", "1"):
        raise RuntimeError(f"{name} must be 0 or 1, not {value!r}")
    return value == "1"


def _flags() -> tuple[list[str], list[str], bool, bool]:
    opt = os.environ.get("REGISTRY_CORE_OPT", "3") or "3"
    if opt not in OPT_LEVELS:
        raise RuntimeError(f"REGISTRY_CORE_OPT must be one of {', '.join(OPT_LEVELS)}, not {opt!r}")
    compile_args = [
        "-std=c99",
        f"-O{opt}",
        "-fvisibility=hidden",
        "-Wall",
        "-Wextra",
        "-Werror=implicit-function-declaration",
    ]
    link_args: list[str] = []
    sanitize = os.environ.get("REGISTRY_CORE_SANITIZE") == "1"
    if sanitize:
        san = [
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=undefined",
            "-fno-omit-frame-pointer",
            "-g",
        ]
        compile_args = [a for a in compile_args if a != f"-O{opt}"] + ["-O1", *san]
        link_args += san
    elf = sys.platform.startswith(("linux", "freebsd"))
    if _knob("REGISTRY_CORE_LTO"):
        # the link step optimises again: it needs the level (gcc records it, clang does not)
        compile_args.append("-flto")
        link_args += ["-flto", f"-O{opt}"]
    if _knob("REGISTRY_CORE_GC_SECTIONS"):
        compile_args += ["-ffunction-sections", "-fdata-sections"]
        link_args.append("-Wl,--gc-sections" if elf else "-Wl,-dead_strip")
    if _knob("REGISTRY_CORE_STRIP") and not sanitize:
        link_args.append("-s" if elf else "-Wl,-x")
    pgo_mode = os.environ.get("REGISTRY_CORE_PGO", "")
    pgo_dir = os.path.abspath(os.environ.get("REGISTRY_CORE_PGO_DIR", str(ROOT / "build" / "pgo")))
    pgo_used = False
    if pgo_mode == "generate":
        compile_args.append(f"-fprofile-generate={pgo_dir}")
        link_args.append(f"-fprofile-generate={pgo_dir}")
    elif pgo_mode == "use":
        compile_args += [f"-fprofile-use={pgo_dir}", "-fprofile-correction", "-Wno-missing-profile"]
        # cffi writes its wrapper under the flavour build dir, which differs between the two
        # passes: gcc then drops that one function's profile (a warning, not an error)
        compile_args.append("-Wno-error=coverage-mismatch")
        pgo_used = True
    return compile_args, link_args, sanitize, pgo_used


def _reported_flags(compile_args: list[str], link_args: list[str]) -> str:
    """The flags build_info() reports: compile flags, then link-only ones; the profile flags are
    left out (they carry a path; ``build_info()["pgo"]`` says whether a profile was used)."""
    shown = [a for a in compile_args if not a.startswith("-fprofile")]
    shown += [a for a in link_args if a not in shown and not a.startswith("-fprofile")]
    return " ".join(shown)


def _c_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_ffi() -> FFI:
    compile_args, link_args, sanitize, pgo_used = _flags()
    sources = sorted(str(p.relative_to(ROOT)) for p in CSRC.glob("*.c"))
    if not sources:
        raise RuntimeError(f"no C sources under {CSRC}")
    cflags_text = _reported_flags(compile_args, link_args)
    ffi = FFI()
    ffi.cdef(_cdef())
    ffi.set_source(
        "registry_core._native._core",
        '#include "registry_core.h"\n',
        sources=sources,
        # headers too: a change to one (a struct, a capability macro) must rebuild the module
        depends=sorted(str(p.relative_to(ROOT)) for p in CSRC.glob("*.h")),
        include_dirs=[str(CSRC.relative_to(ROOT))],
        define_macros=[
            ("RC_VERSION", _c_string(_version())),
            ("RC_CFLAGS", _c_string(cflags_text)),
            ("RC_PGO", "1" if pgo_used else "0"),
            ("RC_SANITIZED", "1" if sanitize else "0"),
        ],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        py_limited_api=not sysconfig.get_config_var("Py_GIL_DISABLED"),
    )
    return ffi


ffibuilder = make_ffi()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
