"""Suspicious-content heuristics for an uploaded wheel or sdist; nothing is ever executed.

Malicious packages on public indexes mostly follow a few patterns (Socket, Phylum and
PyPI's own malware reports): a ``setup.py`` that downloads or runs something at install time,
code hidden in base64/zlib/marshal blobs passed to ``exec``, a ``.pth`` file (run by ``site`` at
every interpreter start) that imports code, native binaries shipped in a package that claims to
be pure Python, and ``cmdclass`` install hooks. Each rule below is a plain pattern over the
archive's member names and the text of its small Python files; the findings say which member and
which rule, so a reviewer can look. They are heuristics: legitimate packages trip some of them
(setuptools ships a ``.pth``; build helpers download in ``setup.py``), which is why the default
action is to warn.

Bounds: at most ``max_members`` members are listed, at most ``max_member_bytes`` of each text
member and ``max_total_bytes`` in all are read (decompressed), so a zip bomb costs a bounded
amount; an archive that cannot be opened is a finding, not an exception.
"""

from __future__ import annotations

import re
import tarfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import InvalidArgumentError
from ..index._checks import Finding, UploadCandidate

__all__ = ["ContentCheck", "ContentFinding", "scan_archive"]

_NETWORK = re.compile(
    rb"\b(urllib\.request|urlopen|urlretrieve|requests\.(get|post)|http\.client|"
    rb"socket\.socket|httpx\.|curl\s|wget\s|Invoke-WebRequest)"
)
# exec/eval/compile (not re.compile and the like) with a decoder inside its argument
_EXEC_DECODED = re.compile(
    rb"(?<![\w.])(exec|eval|compile)\s*\([^\n]{0,300}?"
    rb"(b64decode|b32decode|b16decode|a85decode|decompress|marshal\.loads|codecs\.decode|"
    rb"fromhex|\[::-1\])"
)
_EXEC_BARE = re.compile(rb"(?<![\w.])(exec|eval)\s*\(")
_DECODER = re.compile(rb"(b64decode|zlib\.decompress|marshal\.loads|lzma\.decompress)\s*\(")
_SUBPROCESS = re.compile(rb"\b(subprocess\.|os\.system|os\.popen|pty\.spawn)")
_BLOB = re.compile(rb"[A-Za-z0-9+/]{512,}={0,2}")
_CMDCLASS = re.compile(
    rb"cmdclass\s*=\s*\{[^}]*[\"'](install|develop|egg_info|build_py|bdist_wheel)[\"']"
    rb"|class\s+\w+\s*\(\s*(install|develop|egg_info)\s*\)"
)
_PTH_EXEC = re.compile(rb"^\s*import\s", re.MULTILINE)
_BINARY_MAGIC = (b"\x7fELF", b"MZ", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe")
_BINARY_SUFFIXES = (".so", ".pyd", ".dll", ".dylib", ".exe")


@dataclass(frozen=True)
class ContentFinding:
    """``rule`` fired on ``member`` of the archive; ``severity`` as in index/_checks.py."""

    rule: str
    severity: str
    member: str
    message: str


def _pure(filename: str) -> bool:
    return filename.endswith("-none-any.whl")


class _Budget:
    def __init__(self, total: int) -> None:
        self.left = total


_Member = tuple[str, int, "Callable[[int], bytes]"]


def _members_zip(f: BinaryIO, max_members: int) -> Iterator[_Member]:
    with zipfile.ZipFile(f) as zf:
        for n, info in enumerate(zf.infolist()):
            if n >= max_members:
                yield "", -1, _nothing
                return
            if not info.is_dir():

                def read(limit: int, info: zipfile.ZipInfo = info) -> bytes:
                    with zf.open(info) as m:
                        return bytes(m.read(limit))

                yield info.filename, info.file_size, read


def _members_tar(f: BinaryIO, max_members: int) -> Iterator[_Member]:
    with tarfile.open(fileobj=f, mode="r:*") as tf:
        for n, info in enumerate(tf):
            if n >= max_members:
                yield "", -1, _nothing
                return
            if info.isfile():

                def read(limit: int, info: tarfile.TarInfo = info) -> bytes:
                    m = tf.extractfile(info)
                    return b"" if m is None else bytes(m.read(limit))

                yield info.name, info.size, read


def _nothing(limit: int) -> bytes:
    return b""


def scan_archive(
    f: BinaryIO,
    filename: str,
    *,
    max_members: int = 10_000,
    max_member_bytes: int = 1 << 20,
    max_total_bytes: int = 32 << 20,
) -> list[ContentFinding]:
    """The findings for the wheel/sdist ``f`` named ``filename`` (by its suffix)."""
    for name, value in (
        ("max_members", max_members),
        ("max_member_bytes", max_member_bytes),
        ("max_total_bytes", max_total_bytes),
    ):
        if not isinstance(value, int) or value <= 0:
            raise InvalidArgumentError(f"{name} must be a positive int, not {value!r}")
    lower = filename.lower()
    if lower.endswith((".whl", ".zip")):
        members = _members_zip
    elif lower.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")):
        members = _members_tar
    else:
        return []
    out: list[ContentFinding] = []
    budget = _Budget(max_total_bytes)
    try:
        for member, size, read in members(f, max_members):
            if size < 0:
                out.append(
                    ContentFinding(
                        "too-many-members",
                        "medium",
                        "",
                        f"more than {max_members} members; the rest were not scanned",
                    )
                )
                break
            out.extend(_scan_member(member, read, filename, budget, max_member_bytes))
            if budget.left <= 0:
                out.append(
                    ContentFinding(
                        "scan-budget",
                        "low",
                        member,
                        f"stopped after {max_total_bytes} bytes read; the rest were not scanned",
                    )
                )
                break
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
        out.append(ContentFinding("unreadable", "medium", "", f"archive unreadable: {exc}"))
    return out


def _scan_member(
    member: str,
    read: Callable[[int], bytes],
    filename: str,
    budget: _Budget,
    max_member_bytes: int,
) -> Iterator[ContentFinding]:
    base = member.rsplit("/", 1)[-1]
    lower = base.lower()
    is_text = lower.endswith((".py", ".pth", ".cfg", ".toml", ".txt", ".sh")) or lower == "setup.py"
    want_magic = _pure(filename) and not is_text
    if not is_text and not want_magic:
        return
    limit = min(max_member_bytes, budget.left) if is_text else 4
    if limit <= 0:
        return
    data = read(limit)
    budget.left -= len(data)
    if want_magic:
        if lower.endswith(_BINARY_SUFFIXES) or data.startswith(_BINARY_MAGIC):
            yield ContentFinding(
                "binary-in-pure-package",
                "medium",
                member,
                "a native binary in a wheel tagged pure Python (none-any)",
            )
        return
    setup = lower == "setup.py" and member.count("/") <= 1
    if lower.endswith(".pth") and _PTH_EXEC.search(data):
        yield ContentFinding(
            "pth-executes-code",
            "high",
            member,
            ".pth file with an import line: runs code at every interpreter start",
        )
    if _EXEC_DECODED.search(data):
        yield ContentFinding(
            "exec-of-encoded-data",
            "high",
            member,
            "exec/eval/compile of base64/zlib/marshal-decoded data",
        )
    elif _EXEC_BARE.search(data) and _DECODER.search(data):
        yield ContentFinding(
            "exec-and-decoder",
            "low",
            member,
            "exec/eval and a base64/zlib/marshal decoder in the same file",
        )
    if setup and _NETWORK.search(data):
        yield ContentFinding(
            "setup-network-call", "high", member, "setup.py opens network connections"
        )
    if setup and _SUBPROCESS.search(data):
        yield ContentFinding(
            "setup-runs-commands", "medium", member, "setup.py runs shell commands"
        )
    if setup and _CMDCLASS.search(data):
        yield ContentFinding(
            "install-hook", "medium", member, "setup.py overrides install commands (cmdclass)"
        )
    if _BLOB.search(data):
        yield ContentFinding(
            "encoded-blob", "low", member, "a base64-like run of 512+ characters in source"
        )


class ContentCheck:
    """The upload check over :func:`scan_archive`; findings keep the rule's severity."""

    name = "content"

    def __init__(
        self,
        *,
        max_members: int = 10_000,
        max_member_bytes: int = 1 << 20,
        max_total_bytes: int = 32 << 20,
    ) -> None:
        self.max_members = max_members
        self.max_member_bytes = max_member_bytes
        self.max_total_bytes = max_total_bytes

    def check(self, upload: UploadCandidate) -> Sequence[Finding]:
        found = scan_archive(
            upload.file,
            upload.filename,
            max_members=self.max_members,
            max_member_bytes=self.max_member_bytes,
            max_total_bytes=self.max_total_bytes,
        )
        return [
            Finding(self.name, c.severity, c.message, {"rule": c.rule, "member": c.member})
            for c in found
        ]
