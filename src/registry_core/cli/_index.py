"""``registry-core index rebuild|yank|unyank``: maintain the index database; and where the
token and role commands find a tenant's state (:func:`open_target`).

A v1 index directory ``DIR`` is tenant "default" with its one index "main" and its tenant
store at ``DIR/.registry-core/tenant.sqlite3`` (opened through the Index, so the index's old
tokens are imported first). With ``--config FILE --tenant NAME`` (schema v2) the tenant store
is ``ROOT/NAME/.registry-core/tenant.sqlite3``, ``ROOT`` the config's storage directory, and
the config's role grants are the store's static bindings. Whoever runs these commands has file
access to that state: the local operator, admin of the tenant.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from ._output import counts

if TYPE_CHECKING:
    from ..auth import Principal, Resource, TenantStore
TENANT_FILE = "tenant.sqlite3"
AS_TOKEN_ENV = "REGISTRY_CORE_AS_TOKEN"


def open_index(directory: str) -> Any:
    """``Index(directory)``; refuses a path that is not an existing directory (an index is
    never created by a typo)."""
    if not Path(directory).is_dir():
        raise InvalidArgumentError(f"{directory}: not a directory")
    from ..index import Index

    return Index(directory)


def v1_store(directory: str) -> Any:
    """The tenant store of what ``serve DIR`` serves: tenant "default" with the bindings of
    its v1 config (public: everyone reads), so the command decides as the server does."""
    from ..auth import TenantStore
    from ..config import single_tenant
    from ..server._tenancy import static_bindings
    from ..storage import STATE_DIR

    tenant = single_tenant(directory).tenants["default"]
    return TenantStore(
        Path(directory) / STATE_DIR / TENANT_FILE,
        tenant=tenant.name,
        static_bindings=static_bindings(tenant),
    )


# -- the tenant a token or role command acts on --------------------------------------------------


@dataclass
class Target:
    """One tenant's store and the names of its indexes (what a token or role command edits).

    ``where`` names it in messages; ``max_ttl_s`` is the tenant's token lifetime bound
    (``token_max_ttl_s``; None: unbounded)."""

    tenant: str
    indexes: tuple[str, ...]
    store: TenantStore
    where: str
    max_ttl_s: float | None = None
    _close: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def store_audit(self) -> Any:
        """The store's audit sink (denials go where its grants go), if it has one."""
        return getattr(self.store, "audit", None)

    @property
    def default_index(self) -> str:
        return self.indexes[0]

    def resource(self, text: str | None) -> Resource:
        """``text`` ("*", "INDEX", "INDEX/PROJECT"; None: "*") in this tenant; an index the
        tenant does not have is refused (a typo never grants on nothing)."""
        from ..auth import Resource

        resource = Resource.parse(self.tenant, "*" if text is None else text)
        if resource.index is not None and resource.index not in self.indexes:
            raise InvalidArgumentError(
                f"{self.where}: no index {resource.index!r} (indexes: {', '.join(self.indexes)})"
            )
        return resource

    def close(self) -> None:
        while self._close:
            self._close.pop()()

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def add_acting_argument(p: argparse.ArgumentParser) -> None:
    """``--as-token-file FILE``: act as a token's principal instead of the local operator."""
    p.add_argument(
        "--as-token-file",
        metavar="FILE",
        help=f"act as this token (or ${AS_TOKEN_ENV}); default: the local operator (admin)",
    )


def _as_token(args: argparse.Namespace) -> str | None:
    """The acting token (first line of ``--as-token-file``, else ``$REGISTRY_CORE_AS_TOKEN``;
    never a command-line argument, which other users of the machine could read)."""
    path = getattr(args, "as_token_file", None)
    if path is not None:
        try:
            lines = Path(path).read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or "not readable UTF-8 text"
            raise InvalidArgumentError(f"--as-token-file {path}: {why}") from None
        if not lines or not lines[0].strip():
            raise InvalidArgumentError(f"--as-token-file {path} is empty")
        return lines[0].strip()
    return os.environ.get(AS_TOKEN_ENV, "").strip() or None


def acting_principal(target: Target, args: argparse.Namespace) -> Principal:
    """Who the command acts as: the acting token's principal (authenticated against the
    tenant's store), else the local operator (file access: the tenant's admin)."""
    from ..auth import Principal

    raw = _as_token(args)
    if raw is None:
        return Principal.local(target.tenant)
    return target.store.authenticate_token(raw)


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    """``--config FILE --tenant NAME`` (v2), the alternative to a leading DIR (v1)."""
    p.add_argument("--config", metavar="FILE", help="a v2 config file (with --tenant), not DIR")
    p.add_argument("--tenant", metavar="NAME", help="the tenant of --config")


def split_target(
    args: argparse.Namespace, words: Sequence[str], names: Sequence[str], optional: int = 0
) -> dict[str, str | None]:
    """The positional ``words`` as ``names`` (the last ``optional`` of them may be missing),
    after a leading DIR unless ``--config`` is given; sets ``args.directory``."""
    words = list(words)
    if args.config is None:
        if args.tenant is not None:
            raise InvalidArgumentError("--tenant goes with --config (a DIR is tenant 'default')")
        if not words:
            raise InvalidArgumentError("give the index DIR, or --config FILE --tenant NAME")
        args.directory = words.pop(0)
    else:
        if args.tenant is None:
            raise InvalidArgumentError("--config needs --tenant NAME")
        args.directory = None
    if not len(names) - optional <= len(words) <= len(names):
        want = " ".join(names[: len(names) - optional])
        if optional:
            want += " [" + " ".join(names[len(names) - optional :]) + "]"
        where = "--config FILE --tenant NAME" if args.config else "DIR"
        raise InvalidArgumentError(f"expected {where} {want}".replace("  ", " ").strip())
    out: dict[str, str | None] = dict.fromkeys(names)
    out.update(zip(names, words, strict=False))
    return out


def open_target(args: argparse.Namespace) -> Target:
    """The tenant of ``args`` (``directory``, or ``config`` + ``tenant``)."""
    if args.config is None:
        if not Path(args.directory).is_dir():
            raise InvalidArgumentError(f"{args.directory}: not a directory")
        from ..index import Index

        store = v1_store(args.directory)
        try:  # opened through the Index: its old tokens are imported into the store first
            index = Index(args.directory, auth=store)
        except BaseException:
            store.close()
            raise
        target = Target(
            tenant=index.tenant, indexes=(index.name,), store=store, where=args.directory
        )
        target._close += [store.close, index.close]  # closed last to first
        return target
    return _open_config_target(args.config, args.tenant)


def _open_config_target(path: str, tenant: str) -> Target:
    from ..auth import TenantStore
    from ..config import load

    config = load(path)
    tc = config.tenants.get(tenant)
    if tc is None:
        known = ", ".join(sorted(config.tenants)) or "none"
        raise InvalidArgumentError(f"{path}: no tenant {tenant!r} (tenants: {known})")
    base = Path(path).resolve().parent  # relative storage paths are the config file's

    def located(p: str) -> Path:
        return Path(p) if Path(p).is_absolute() else base / p

    root = located(config.storage.directory)
    if not root.is_dir():
        raise InvalidArgumentError(f"{path}: storage directory {root}: not a directory")
    indexes = tuple(i.name for i in tc.indexes) or ("main",)
    where = f"{path} tenant {tenant!r}"
    if config.default_tenant == tenant:
        # a v1-derived config: its one index directory holds the tenant store too
        directory = located(config.index_directory(tenant, indexes[0]))
        target = open_target(argparse.Namespace(config=None, directory=str(directory)))
        target.where, target.max_ttl_s = where, tc.token_max_ttl_s
        return target
    from ..server._tenancy import static_bindings  # the server's: the same decisions

    state = located(config.tenant_directory(tenant)) / ".registry-core"
    store = TenantStore(state / TENANT_FILE, tenant=tenant, static_bindings=static_bindings(tc))
    target = Target(
        tenant=tenant, indexes=indexes, store=store, where=where, max_ttl_s=tc.token_max_ttl_s
    )
    target._close.append(store.close)
    return target


# -- index rebuild | yank | unyank ---------------------------------------------------------------


def _cmd_rebuild(args: argparse.Namespace) -> int:
    index = open_index(args.directory)
    try:
        report = index.rebuild()
        projects = len(index.projects())
    finally:
        index.close()
    print(f"{args.directory}: index rebuilt ({counts(report)}); {projects} projects")
    for path, reason in report.rejected:  # left out, say why (the files stay where they are)
        print(f"  rejected {path}: {reason}")
    return 0


def _cmd_yank(args: argparse.Namespace) -> int:
    index = open_index(args.directory)
    try:  # the local operator (file access): no principal, allowed (and audited by the index)
        if args.index_command == "yank":
            index.yank(args.filename, args.reason)
            why = f" ({args.reason})" if args.reason else ""
            print(f"{args.filename}: yanked{why}; installers skip it unless it is pinned with ==")
        else:
            index.unyank(args.filename)
            print(f"{args.filename}: no longer yanked")
    finally:
        index.close()
    return 0


def add_index_parser(sub: Any) -> None:
    """Add ``index rebuild|yank|unyank`` to an ``argparse`` subparsers object."""
    index = sub.add_parser("index", help="maintain the index database")
    verbs = index.add_subparsers(
        dest="index_command", required=True, metavar="{rebuild,yank,unyank}"
    )
    p = verbs.add_parser(
        "rebuild",
        help="index files added to DIR by hand, drop rows of vanished files",
        description="Index every distribution file in DIR that the database does not know "
        "(core metadata extracted), drop rows whose file is gone and fix rows whose bytes "
        "changed; prints the counts. serve does this at every start.",
    )
    p.add_argument("directory", help="the index directory")
    p.set_defaults(func=_cmd_rebuild, command_name="index rebuild")
    p = verbs.add_parser(
        "yank",
        help="mark a file yanked (PEP 592): kept and downloadable, skipped unless pinned",
        description='Mark FILENAME yanked: its pages say so (data-yanked / "yanked"), pip and '
        "uv skip it unless a requirement pins its version with ==. The file is not removed.",
    )
    p.add_argument("directory", help="the index directory")
    p.add_argument("filename", help="the distribution's file name, e.g. demo-1.0-py3-none-any.whl")
    p.add_argument("--reason", default="", help="shown by installers (default: none)")
    p.set_defaults(func=_cmd_yank, command_name="index yank")
    p = verbs.add_parser("unyank", help="undo yank")
    p.add_argument("directory", help="the index directory")
    p.add_argument("filename", help="the distribution's file name")
    p.set_defaults(func=_cmd_yank, command_name="index unyank")
