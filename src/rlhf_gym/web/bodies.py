"""Request bodies of the annotation API (pydantic): unknown fields, NaN, Infinity, NUL and lone surrogates refused."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rlhf_gym.store.jsonsafe import UnsafeValue, check_json

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, raw: Any) -> Any:
        # NaN, Infinity, NUL and lone surrogates parse as JSON in Python but cannot be stored or served.
        try:
            check_json(raw, "body")
        except UnsafeValue as e:
            raise ValueError(f"{e.where.removeprefix('body.')}: {e.why}") from None
        return raw


class ConsentIn(_Body):
    agree: bool
    version: str = Field(min_length=1, max_length=64)


class WithdrawIn(_Body):
    confirm: bool


class FeedbackIn(_Body):
    query_id: str = Field(pattern=ID_PATTERN)
    value: float | None = Field(description="step: 1 good, 0 bad; pair: 1 left, 0 right, 0.5 equal; null = skip")
    client_key: str = Field(min_length=1, max_length=128, description="unique per answer; a resend is refused")
    step: int | None = Field(default=None, ge=0, le=10**9, description="step shown when the key was pressed")
    shown_at: float | None = Field(default=None, description="unix time the query was shown")
    data: dict[str, str | int | float | bool | None] | None = Field(default=None, max_length=16)

    @field_validator("value", "shown_at")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class ActionIn(_Body):
    action: int = Field(ge=0, le=1000)


class PostQueriesIn(_Body):
    run_id: str | None = Field(default=None, pattern=ID_PATTERN)
    env_id: str | None = Field(default=None, max_length=128, description="environment of step queries")
    assigned_to: str | None = Field(default=None, pattern=ID_PATTERN)
    queries: list[dict[str, Any]] = Field(max_length=5000)
