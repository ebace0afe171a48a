"""Fuzz target: executable image parsing and the EXEC record codec on hostile input (atheris).

Byte 0 even: the rest is a buffer for :func:`registry_core.delta._exe.plan`; every range it
returns must be sorted, disjoint and inside the buffer, and ``inverse(forward(x))`` must give
the buffer back. Byte 0 odd: the rest is an untrusted EXEC section body for
:func:`decode_record` (limits: 64 KiB buffers, 64 ranges); it either raises
:class:`registry_core.errors.CorruptPatchError` or gives records whose ranges fit, which are
then run forward and back over zero buffers of those sizes. Anything else escaping is a bug.

Seeds: a minimal ELF64 (x86-64 and aarch64), Mach-O 64 (x86-64, arm64) and PE32+ image built
here with valid headers, a gcc-built shared object when gcc is installed, and encoded records.

    .venv/bin/python fuzz/fuzz_exe.py -max_total_time=300 [corpus dir]
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from registry_core.errors import CorruptPatchError

SIZE = 65536


def _elf(machine: int) -> bytes:
    code = b"\xe8\x10\x00\x00\x00" * 20 + b"\x94" * 16
    ehdr = bytearray(64)
    ehdr[0:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HHIQQQIHHHHHH", ehdr, 16, 3, machine, 1, 0, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, 0x200, 0x200, 0x1000)
    body = bytearray(ehdr + phdr)
    body += bytes(0x100 - len(body)) + code
    shoff = len(body)
    struct.pack_into("<Q", body, 40, shoff)
    struct.pack_into("<HH", body, 58, 64, 2)
    body += bytes(64) + struct.pack("<IIQQQQIIQQ", 1, 1, 6, 0x100, 0x100, len(code), 0, 0, 16, 0)
    return bytes(body)


def _macho(cputype: int) -> bytes:
    code = b"\x00\x00\x00\x94" * 32
    sect = struct.pack("<16s16sQQIIIIIIII", b"__text", b"__TEXT", 0x1000, len(code), 0x200, 2,
                       0, 0, 0x80000400, 0, 0, 0)  # fmt: skip
    seg = struct.pack("<II16sQQQQiiII", 0x19, 72 + 80, b"__TEXT", 0, 0x2000, 0, 0x400, 7, 5, 1, 0)
    hdr = struct.pack("<IiiIIIII", 0xFEEDFACF, cputype, 0, 6, 1, len(seg + sect), 0, 0)
    body = bytearray(hdr + seg + sect)
    body += bytes(0x200 - len(body)) + code
    return bytes(body)


def _pe() -> bytes:
    body = bytearray(0x400)
    body[0:2] = b"MZ"
    struct.pack_into("<I", body, 0x3C, 0x80)
    body[0x80:0x84] = b"PE\0\0"
    struct.pack_into("<HHIIIHH", body, 0x84, 0x8664, 1, 0, 0, 0, 240, 0x22)
    opt = 0x98
    struct.pack_into("<H", body, opt, 0x20B)
    struct.pack_into("<Q", body, opt + 24, 0x180000000)
    struct.pack_into("<I", body, opt + 56, 0x3000)
    struct.pack_into("<8sIIIIIIHHI", body, opt + 240, b".text", 0x100, 0x1000, 0x100, 0x200,
                     0, 0, 0, 0, 0x60000020)  # fmt: skip
    body[0x200:0x300] = b"\xe8\x00\x01\x00\x00\x90\x90\x90" * 32
    return bytes(body)


def seeds() -> list[bytes]:
    """Seed inputs (with the mode byte)."""
    from registry_core.delta._exe import encode_record, plan

    images = [_elf(62), _elf(183), _macho(0x01000007), _macho(0x0100000C), _pe()]
    gcc = shutil.which("gcc")
    if gcc:
        with tempfile.TemporaryDirectory() as d:
            src = Path(d) / "s.c"
            src.write_text("int g(int);\nint f(int x) { return g(x) + g(x + 1); }\n")
            out = Path(d) / "s.so"
            subprocess.run([gcc, "-O1", "-fPIC", "-shared", str(src), "-o", str(out)], check=True)
            images.append(out.read_bytes()[:SIZE])
    out_seeds = [b"\0" + img for img in images]
    for img in images:
        out_seeds.append(b"\1" + encode_record(plan(img), plan(img)))
    return out_seeds


def one_input(data: bytes) -> None:
    """Check one input; raises only on a bug."""
    from registry_core.delta._exe import ExeLimits, decode_record, forward, inverse, plan

    if not data:
        return
    body = data[1:]
    if data[0] % 2 == 0:
        rec = plan(body)
        if rec is None:
            return
        end = 0
        for r in rec.ranges:
            assert end <= r.offset and r.length > 0 and r.offset + r.length <= len(body)
            end = r.offset + r.length
        out = forward(body, rec)
        inverse(out, rec)
        assert bytes(out) == body
        return
    try:
        src, tgt = decode_record(body, limits=ExeLimits(SIZE, SIZE, max_ranges=64))
    except CorruptPatchError:
        return
    for rec in (src, tgt):
        if rec is not None:
            assert len(rec.ranges) <= 64
            zero = bytes(SIZE)
            out = forward(zero, rec)
            inverse(out, rec)
            assert bytes(out) == zero


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["registry_core.delta._exe"]):
        import registry_core.delta._exe  # noqa: F401

    argv = list(sys.argv)
    dirs = [a for a in argv[1:] if not a.startswith("-")]
    if not dirs:
        corpus = Path("fuzz/corpus/exe")
        corpus.mkdir(parents=True, exist_ok=True)
        if not any(corpus.iterdir()):
            for i, s in enumerate(seeds()):
                (corpus / f"seed-{i}").write_bytes(s)
        argv.append(str(corpus))
    if not any(a.startswith("-artifact_prefix=") for a in argv):
        Path("fuzz/crashers/exe").mkdir(parents=True, exist_ok=True)
        argv.append("-artifact_prefix=fuzz/crashers/exe/")
    if not any(a.startswith("-max_len=") for a in argv):
        argv.append(f"-max_len={SIZE}")
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
