"""Build glue: metadata lives in pyproject.toml; this file only names the cffi module.

The C core is mandatory. If it fails to compile, installation fails: there is no pure-Python
fallback, by design (see README, "Building").
"""

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
            self.py_limited_api = "cp39"
            super().finalize_options()

    cmdclass["bdist_wheel"] = bdist_wheel_abi3

setup(
    cffi_modules=["src/registry_core/_native/_build.py:ffibuilder"],
    cmdclass=cmdclass,
    zip_safe=False,
)
