"""The span seam every component uses: ``with span("name", attr=value): ...``.

It is a no-op (one contextvar read, a shared do-nothing context manager) unless the request
wrapper of :class:`~registry_core.telemetry.Telemetry` put a tracer in the contextvar for the
current request, so code paths stay cheap when tracing is off and nothing here imports
OpenTelemetry. Telemetry never raises into the caller: a failing tracer is ignored.

Context variables follow ``asyncio`` tasks and ``asyncio.to_thread``; work handed to a plain
``loop.run_in_executor`` or a thread pool must be wrapped with ``contextvars.copy_context().run``
to keep its spans under the request.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any, Protocol

__all__ = [
    "SpanLike",
    "TracerLike",
    "annotate",
    "begin_request",
    "current_tracer",
    "end_request",
    "reset_tracer",
    "set_tracer",
    "span",
]

AttributeValue = str | bool | int | float


class SpanLike(Protocol):
    """The part of an OpenTelemetry span the seam exposes."""

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...


class TracerLike(Protocol):
    """The part of an OpenTelemetry tracer the seam needs."""

    def start_as_current_span(
        self, name: str, *, attributes: dict[str, AttributeValue] | None = None
    ) -> AbstractContextManager[Any]: ...


_TRACER: contextvars.ContextVar[TracerLike | None] = contextvars.ContextVar(
    "registry_core.telemetry.tracer", default=None
)


class _NoopSpan:
    """Answers the span calls and does nothing (tracing off)."""

    __slots__ = ()

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        return None

    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_NOOP = _NoopSpan()


def current_tracer() -> TracerLike | None:
    """The tracer of the current request, or None when tracing is off."""
    return _TRACER.get()


def set_tracer(tracer: TracerLike | None) -> contextvars.Token[TracerLike | None]:
    """Put ``tracer`` in the context (the request wrapper's job); reset with the token."""
    return _TRACER.set(tracer)


def reset_tracer(token: contextvars.Token[TracerLike | None]) -> None:
    """Undo :func:`set_tracer`."""
    _TRACER.reset(token)


def _clean(attributes: dict[str, Any]) -> dict[str, AttributeValue]:
    """Keep the attribute values OpenTelemetry accepts; drop None, stringify the rest."""
    out: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, str | bool | int | float) else str(value)
    return out


@contextmanager
def _traced(tracer: TracerLike, name: str, attributes: dict[str, Any]) -> Iterator[SpanLike]:
    try:
        manager = tracer.start_as_current_span(name, attributes=_clean(attributes))
        current = manager.__enter__()
    except Exception:  # telemetry never breaks the traced code
        yield _NOOP
        return
    try:
        yield current
    except BaseException as exc:
        with suppress(Exception):
            manager.__exit__(type(exc), exc, exc.__traceback__)
        raise
    else:
        with suppress(Exception):
            manager.__exit__(None, None, None)


def span(name: str, **attributes: Any) -> AbstractContextManager[SpanLike]:
    """A child span named ``name`` of the current request's span; a no-op when tracing is off.

    ``attributes`` with a None value are left out; values other than str/bool/int/float are
    stringified. The yielded object has ``set_attribute(key, value)`` either way.
    """
    tracer = _TRACER.get()
    if tracer is None:
        return _NOOP
    return _traced(tracer, name, attributes)


_REQUEST: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "registry_core.telemetry.request", default=None
)


def annotate(**fields: Any) -> None:
    """Tell the request wrapper what the app resolved for the current request: ``tenant``,
    ``subject`` (the principal), ``route`` (a template). A no-op outside a wrapped request."""
    current = _REQUEST.get()
    if current is not None:
        current.update(fields)


def begin_request() -> tuple[dict[str, Any], contextvars.Token[dict[str, Any] | None]]:
    """A fresh annotation record for a request (the wrapper's job); reset with the token."""
    record: dict[str, Any] = {}
    return record, _REQUEST.set(record)


def end_request(token: contextvars.Token[dict[str, Any] | None]) -> None:
    _REQUEST.reset(token)
