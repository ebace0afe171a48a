"""Single source of the package version; the C core is compiled with the same string."""

__version__ = "0.1.0"
