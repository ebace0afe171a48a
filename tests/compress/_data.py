"""Real test data: registry metadata records built from installed packages' METADATA."""

from __future__ import annotations

import email.parser
import glob
import json
import site
import sys
from functools import lru_cache

_LIST_FIELDS = ("Classifier", "Requires-Dist", "Provides-Extra", "Project-URL", "Platform")


def metadata_record(text: str) -> dict:
    """A registry-style JSON record (PyPI JSON API 'info' shape, no long description)."""
    msg = email.parser.Parser().parsestr(text, headersonly=True)
    record: dict = {}
    for key in (
        "Name",
        "Version",
        "Summary",
        "Home-page",
        "Author",
        "Author-email",
        "License",
        "Requires-Python",
        "Metadata-Version",
        "Keywords",
    ):
        value = msg.get(key)
        if value is not None:
            record[key.lower().replace("-", "_")] = str(value)
    for key in _LIST_FIELDS:
        values = msg.get_all(key)
        if values:
            record[key.lower().replace("-", "_")] = [str(v) for v in values]
    return record


@lru_cache(maxsize=1)
def metadata_records() -> tuple[bytes, ...]:
    """JSON documents from every METADATA of the Python environment running the tests."""
    roots = set(site.getsitepackages()) | {site.getusersitepackages()}
    roots |= {p for p in sys.path if p.endswith("site-packages")}
    seen = set()
    out = []
    for root in sorted(roots):
        for path in sorted(glob.glob(f"{root}/*.dist-info/METADATA")):
            with open(path, encoding="utf-8", errors="replace") as fh:
                record = metadata_record(fh.read())
            key = (record.get("name"), record.get("version"))
            if key in seen or not record.get("name"):
                continue
            seen.add(key)
            out.append(json.dumps(record, sort_keys=True).encode())
    return tuple(out)


@lru_cache(maxsize=1)
def file_records() -> tuple[bytes, ...]:
    """Per-file JSON documents (name, version, path, digest, size) from installed RECORD files.

    A registry serves such file entries next to project metadata; they supplement the METADATA
    records when the test environment holds few distributions.
    """
    out = []
    roots = sorted(set(site.getsitepackages()) | {p for p in sys.path if p.endswith("-packages")})
    for root in roots:
        for path in sorted(glob.glob(f"{root}/*.dist-info/RECORD")):
            dist = path.split("/")[-2][: -len(".dist-info")]
            name, _, version = dist.partition("-")
            with open(path, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    parts = line.rstrip("\n").rsplit(",", 2)
                    if len(parts) != 3 or not parts[1]:
                        continue
                    entry = {
                        "name": name,
                        "version": version,
                        "path": parts[0],
                        "digest": parts[1],
                        "size": int(parts[2] or 0),
                    }
                    out.append(json.dumps(entry, sort_keys=True).encode())
    return tuple(out)
