"""Build glue: metadata lives in pyproject.toml; this file only names the cffi module.

The C core is mandatory. If it fails to compile, installation fails: there is no pure-Python
fallback, by design (see README, "Building").
"""

import os
import sysconfig

from setuptools import setup

try:
    from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:  # pragma: no cover - setuptools >= 70.1 ships bdist_wheel
    _bdist_wheel = None

cmdclass = {}
if _bdist_wheel is not None and not sysconfig.get_config_var("Py_GIL_DISABLED"):

    class bdist_wheel_abi3(_bdist_wheel):
        """Tag the wheel abi3: cffi's generated C uses only the limited API."""

        def finalize_options(self):
            self.py_limited_api = "cp310"
            super().finalize_options()

    cmdclass["bdist_wheel"] = bdist_wheel_abi3

# Nothing built for one flavour may be reused by another: setuptools skips compiling sources
# older than their objects, and `build_ext --inplace` copies an up-to-date module from build_lib
# into src/ without rebuilding. With one shared build/lib, `make sanitize` (an in-tree wheel build)
# left an ASan-linked module there that the next plain in-place build copied into the editable
# checkout. So each flavour gets its own build base: build/flavour-<name>/{lib,temp}.*
_flavour = (
    "-".join(
        f"{k.lower()}{v}"
        for k, v in (
            ("SAN", os.environ.get("REGISTRY_CORE_SANITIZE", "")),
            ("PGO", os.environ.get("REGISTRY_CORE_PGO", "")),
        )
        if v
    )
    or "plain"
)

setup(
    cffi_modules=["src/registry_core/_native/_build.py:ffibuilder"],
    cmdclass=cmdclass,
    options={"build": {"build_base": os.path.join("build", f"flavour-{_flavour}")}},
    zip_safe=False,
)
