"""An OpenFeature provider over FeatureFlags, for applications that evaluate through OpenFeature.

Context mapping: ``targeting_key`` -> ``key``; the ``tenant`` attribute -> ``tenant``; every
other attribute -> ``attributes``. Only boolean flags exist; the other types report
TYPE_MISMATCH. Unknown names report FLAG_NOT_FOUND (with the closest known name), so the
OpenFeature client returns the caller's default *and* the error code, as the spec requires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import (
    FlagNotFoundError,
    GeneralError,
    InvalidContextError,
    TypeMismatchError,
)
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.hook import Hook
from openfeature.provider import AbstractProvider, Metadata

from ..errors import FlagError, InvalidArgumentError, InvalidTypeError, UnknownFlagError
from ._flags import FeatureFlags, default_flags
from ._targeting import TargetingRule

__all__ = ["RegistryCoreProvider"]


class RegistryCoreProvider(AbstractProvider):
    """``openfeature.api.set_provider(RegistryCoreProvider(flags))``; flags default to
    :func:`default_flags` (looked up on every evaluation, so a replaced default is seen)."""

    def __init__(self, flags: FeatureFlags | None = None) -> None:
        super().__init__()
        if flags is not None and not isinstance(flags, FeatureFlags):
            raise InvalidTypeError(
                f"flags must be FeatureFlags or None, not {type(flags).__name__}"
            )
        self._flags = flags

    @property
    def flags(self) -> FeatureFlags:
        return self._flags if self._flags is not None else default_flags()

    def get_metadata(self) -> Metadata:
        return Metadata(name="registry-core")

    def get_provider_hooks(self) -> list[Hook]:
        return []

    @staticmethod
    def to_context(ctx: EvaluationContext | None) -> dict[str, Any] | None:
        """An OpenFeature EvaluationContext as a registry-core flag context."""
        if ctx is None or (ctx.targeting_key is None and not ctx.attributes):
            return None
        attrs = dict(ctx.attributes)
        out: dict[str, Any] = {"attributes": attrs}
        tenant = attrs.pop("tenant", None)
        if tenant is not None:
            if not isinstance(tenant, str):
                raise InvalidContextError(f"attribute 'tenant' must be a string, got {tenant!r}")
            out["tenant"] = tenant
        if ctx.targeting_key is not None:
            out["key"] = ctx.targeting_key
        return out

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        flags = self.flags
        try:
            value, state = flags.evaluate_details(flag_key, self.to_context(evaluation_context))
        except UnknownFlagError as exc:
            raise FlagNotFoundError(str(exc)) from None
        except (InvalidArgumentError, InvalidTypeError) as exc:
            raise InvalidContextError(str(exc)) from None
        except FlagError as exc:  # pragma: no cover - sources are parsed before evaluation
            raise GeneralError(str(exc)) from None
        targeted = isinstance(state.value, TargetingRule)
        return FlagResolutionDetails(
            value=value,
            variant="on" if value else "off",
            reason=Reason.TARGETING_MATCH if targeted else Reason.STATIC,
            flag_metadata={"stage": str(state.stage), "source": state.source},
        )

    async def resolve_boolean_details_async(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self.resolve_boolean_details(flag_key, default_value, evaluation_context)

    def _mismatch(self, flag_key: str, kind: str) -> FlagResolutionDetails[Any]:
        raise TypeMismatchError(
            f"registry-core flags are boolean; {flag_key!r} was requested as {kind}"
        )

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._mismatch(flag_key, "a string")

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._mismatch(flag_key, "an integer")

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._mismatch(flag_key, "a float")

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[Any] | Mapping[str, Any],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[Any] | Mapping[str, Any]]:
        return self._mismatch(flag_key, "an object")

    async def resolve_string_details_async(self, flag_key, default_value, evaluation_context=None):
        return self.resolve_string_details(flag_key, default_value, evaluation_context)

    async def resolve_integer_details_async(self, flag_key, default_value, evaluation_context=None):
        return self.resolve_integer_details(flag_key, default_value, evaluation_context)

    async def resolve_float_details_async(self, flag_key, default_value, evaluation_context=None):
        return self.resolve_float_details(flag_key, default_value, evaluation_context)

    async def resolve_object_details_async(self, flag_key, default_value, evaluation_context=None):
        return self.resolve_object_details(flag_key, default_value, evaluation_context)
