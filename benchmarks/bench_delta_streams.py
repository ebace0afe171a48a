"""Does keeping control, difference and extra bytes in separate zstd streams pay?

Compares the patch body as three separately compressed streams (the format) with one stream
(control records followed by the difference/extra bytes in output order, as single-stream delta
formats lay them out), on the last pair of a few corpus series. Run from the repository root:
``python benchmarks/bench_delta_streams.py``.
"""

import sys

sys.path.insert(0, "benchmarks")
import zstandard

from _corpus import series
from registry_core.delta import _binary
from registry_core.delta._layout import expand


def z(b):
    p = zstandard.ZstdCompressionParameters.from_level(
        19 if len(b) <= 8 << 20 else 13, source_size=len(b), enable_ldm=len(b) > 8 << 20
    )
    return len(zstandard.ZstdCompressor(compression_params=p).compress(b))


for nm in ("requests-wheel", "pydantic-core-wheel", "attrs-sdist", "orjson-wheel"):
    s = next(x for x in series() if x.name == nm)
    o, n = s.paths[-2].read_bytes(), s.paths[-1].read_bytes()
    lo, eo = expand(o)
    ln, en = expand(n)
    st = _binary.encode(eo, en)
    sep = z(st.ctrl) + z(bytes(st.diff)) + z(bytes(st.extra))
    # interleaved: the byte order a single-stream format (xdelta/VCDIFF style) would produce
    from registry_core.delta._compose import segments

    inter = b"".join(bytes(sg.data) for sg in segments(st))
    one = z(st.ctrl + inter)
    print(f"{nm:22s} separate {sep:>9}  one stream {one:>9}  ({100 * (one - sep) / sep:+.1f}%)")
