"""A served prediction gateway: the models of an index's registry behind its tenant's RBAC.

:func:`build_gateway_app` puts a :class:`~.PredictionGateway` (the models ``{name: stage}`` of
a :class:`~.ModelRegistry`) behind authentication and authorization decided by the index's
:class:`~registry_core.auth.TenantStore`, the same decisions the registry server makes:

- a request carries a token (``Authorization: Bearer <token>``, or HTTP Basic ``__token__``,
  as pip and twine send it); without one every ``/v1/`` route answers 401 with a
  ``WWW-Authenticate`` challenge (whatever the model: a 401 tells nothing about what exists);
  a bad, revoked or expired token is 401 too;
- ``POST /v1/models/{name}:predict`` needs ``read`` on the model's project
  (``rc-model-<name>``): a model that is not served and one the caller may not read get the
  same uniform 404 as the server's private projects (byte-identical, so nobody learns which
  models exist); every denial is audited by :meth:`Index.authorize`;
- ``GET /v1/models`` needs ``read`` on the index and lists only the models the caller may read;
- ``GET /v1/scaling`` (when an advisor is given: :func:`~.scaling_endpoint`) needs
  ``index.admin`` on the tenant, as the server's ``<tenant>/_/scaling`` does (else the 404);
- ``GET /readyz`` is open (a load balancer's probe; it says only ready or not).

The next-download loader is registered with a :class:`~.FeatureExtractor` bound to every
version loaded (``extractor``: fed from an access log by :func:`extractor_from_log`), so a
hot-swapped model keeps the features the previous one saw. Deny by default: an authorization
hook that raises denies.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError

if TYPE_CHECKING:
    from ..auth import Principal
    from ..index import Index
    from ._features import FeatureExtractor
    from ._gateway import PredictionGateway
    from ._registry import ModelRegistry
    from ._scaling import ScalingAdvisor
    from .traces import Trace

__all__ = [
    "GatewayApp",
    "build_gateway_app",
    "extractor_from_log",
    "extractor_from_trace",
    "parse_model_specs",
    "scaling_advisor",
]

log = logging.getLogger("registry_core.ml.serve")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_PREFIX = "/v1/models"
_SCALING = "/v1/scaling"
_CHALLENGE = ("www-authenticate", 'Bearer realm="registry-core"')


def parse_model_specs(specs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["next=production", "evict"]`` as ``{name: stage}`` (stage default production)."""
    from ._registry import _check_name, _check_stage

    out: dict[str, str] = {}
    for spec in specs:
        name, sep, stage = spec.partition("=")
        name, stage = name.strip(), (stage.strip() if sep else "production")
        _check_name(name)
        _check_stage(stage)
        if name in out:
            raise InvalidArgumentError(f"--model {name} is given twice")
        out[name] = stage
    if not out:
        raise InvalidArgumentError("give at least one --model NAME=STAGE")
    return out


def extractor_from_log(
    path: str | os.PathLike[str] | None, *, format: str = "auto"
) -> FeatureExtractor:
    """A FeatureExtractor fed from an access log (who holds what, which releases exist), the
    catalogue inferred from it; an empty one (releases learned as seen) without a log."""
    from ._features import FeatureExtractor

    if path is None:
        return FeatureExtractor(None)
    from .traces import load_trace

    return extractor_from_trace(load_trace(path, format=format))


def extractor_from_trace(trace: Trace) -> FeatureExtractor:
    """A FeatureExtractor on ``trace``'s catalogue, fed every request of it in order."""
    from ._features import FeatureExtractor

    ex = FeatureExtractor(trace.catalogue)
    for r in trace.requests:
        ex.update(r)
    return ex


def scaling_advisor(
    registry: ModelRegistry,
    name: str,
    stage: str = "production",
    *,
    per_worker_rps: float,
    history: Trace | None = None,
    **advisor_args: Any,
) -> ScalingAdvisor:
    """A ScalingAdvisor on the ``forecast`` model ``name`` current in ``stage`` (loaded and
    checked by the registry), its count history fed from ``history`` (the forecaster knows
    only the traffic it has observed: without a recent log its hint is the floor)."""
    from ._forecast import Forecaster
    from ._scaling import ScalingAdvisor

    forecaster = Forecaster.from_artifact(registry.load(name, stage))
    for r in history.requests if history is not None else ():
        forecaster.observe(r)
    return ScalingAdvisor(forecaster, per_worker_rps=per_worker_rps, **advisor_args)


class GatewayApp:
    """ASGI app: the gateway's routes behind the tenant's authentication and RBAC (see the
    module doc). ``gateway``: what answers; ``index``: whose store authenticates and whose
    policy decides; ``scaling``: an optional ASGI handler for ``GET /v1/scaling``."""

    def __init__(
        self, gateway: PredictionGateway, index: Index, *, scaling: Any | None = None
    ) -> None:
        self.gateway = gateway
        self.index = index
        self.scaling = scaling

    def may_read(self, principal: Principal, model: str | None) -> bool:
        """``read`` on ``rc-model-<model>`` (None: on the index); False on any error."""
        from ._registry import model_project

        try:
            project = model_project(model) if model is not None else None
            return bool(self.index.authorize(principal, "read", project))
        except Exception:  # deny by default: a failing decision is a denial
            log.exception("authorization failed")
            return False

    def may_see_scaling(self, principal: Principal) -> bool:
        """``index.admin`` on the tenant: who sees the server's own ``/_/scaling`` hint."""
        from ..auth import Resource, authorize

        try:
            decision = authorize(
                principal,
                "index.admin",
                Resource(self.index.tenant),
                self.index.policy(),
                audit=self.index.audit,
            )
            return bool(decision.allowed)
        except Exception:  # deny by default
            log.exception("authorization failed")
            return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.gateway.asgi(scope, receive, send)  # lifespan
            return
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        if path == "/readyz":
            await self.gateway.asgi(scope, receive, send)
            return
        from ..errors import PackageIndexError
        from ..server._app import _drain  # a refused request's body is read (bounded) first
        from ..server._auth_middleware import (
            PRINCIPAL_KEY,
            authenticate_async,
            credentials,
            send_not_found,
            send_text,
        )

        async def refuse(status: int, message: str = "", *extra: tuple[str, str]) -> None:
            await _drain(receive, self.gateway.max_body)
            if status == 404:
                await send_not_found(send, method)
            else:
                await send_text(send, status, message, extra, method=method)

        if not (path.startswith(_PREFIX) or path == _SCALING):
            await refuse(404)
            return
        try:
            creds = credentials(scope.get("headers", []))
            if creds is None:
                await refuse(401, "a token is required (Authorization: Bearer)", _CHALLENGE)
                return
            principal = await authenticate_async(self.index.auth, creds)
        except PackageIndexError as exc:
            await refuse(exc.status, str(exc), _CHALLENGE)
            return
        if not principal.authenticated:  # a session that expired: sign in again
            await refuse(401, "a token is required (Authorization: Bearer)", _CHALLENGE)
            return
        scope = {**scope, PRINCIPAL_KEY: principal}
        if path == _SCALING:
            if self.scaling is None or not self.may_see_scaling(principal):
                await refuse(404)
                return
            await self.scaling(scope, receive, send)
            return
        if path in (_PREFIX, _PREFIX + "/"):
            if not self.may_read(principal, None):
                await refuse(404)
                return
            if method not in ("GET", "HEAD"):
                await refuse(405, "use GET", ("allow", "GET"))
                return
            await _send_list(send, self, principal)
            return
        rest = path[len(_PREFIX) + 1 :]
        name = rest[: -len(":predict")] if rest.endswith(":predict") else None
        if name is None or name not in self.gateway.models or not self.may_read(principal, name):
            await refuse(404)  # not served, or not for this caller: the same answer
            return
        await self.gateway.asgi(scope, receive, send)


async def _send_list(send: Send, app: GatewayApp, principal: Principal) -> None:
    import json

    models = [m for m in app.gateway.status() if app.may_read(principal, m["name"])]
    body = json.dumps({"models": models}, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_gateway_app(
    index: Index,
    models: Mapping[str, str],
    *,
    registry: ModelRegistry | None = None,
    extractor: FeatureExtractor | None = None,
    scaling: ScalingAdvisor | None = None,
    trusted_keys: Mapping[str, Any] | None = None,
    metrics: Any = None,
    offload: bool = False,
) -> GatewayApp:
    """The ASGI app serving ``models`` (``{name: stage}``) of ``index``'s model registry.

    ``registry`` defaults to ``ModelRegistry(index, state_dir=<the index's state dir>)``
    (``trusted_keys``: only models signed by them load). ``extractor`` feeds next-download
    models (default: an empty one). ``scaling`` mounts the advisor's hint at ``/v1/scaling``.
    The models are loaded once here (:meth:`PredictionGateway.refresh`); call
    ``app.gateway.start_refresh(seconds)`` to follow promotions and rollbacks (hot swap).
    """
    from ._features import FeatureExtractor
    from ._gateway import PredictionGateway
    from ._predict import KIND, Predictor
    from ._registry import ModelRegistry

    if registry is None:
        state = getattr(index.storage, "state_dir", None)
        if state is None:
            raise InvalidArgumentError("the index has no state directory: pass registry=")
        registry = ModelRegistry(index, state_dir=state, trusted_keys=trusted_keys)
    ex = extractor if extractor is not None else FeatureExtractor(None)

    def load_next(payload: bytes) -> Predictor:
        return Predictor.from_bytes(payload, ex)

    gateway = PredictionGateway(
        registry,
        models=models,
        loaders={KIND: load_next},
        metrics=metrics,
        offload=offload,
    )
    report = gateway.refresh()
    for name, error in report.errors.items():
        log.warning("model %s not loaded yet: %s", name, error)
    handler = None
    if scaling is not None:
        from ._scaling import scaling_endpoint

        handler = scaling_endpoint(scaling)
    return GatewayApp(gateway, index, scaling=handler)
