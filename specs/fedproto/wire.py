"""The base of every wire model: frozen; strict when built here, forgiving when received.

Built on this side (``Model(...)``, ``model_validate``), an unknown field is an error, so a
typo in our own code, a config file or an administrator's request body fails loudly.
Received from the other side of the federation (:meth:`WireModel.received`), unknown fields
are dropped, so a peer one minor protocol version ahead is understood rather than refused
(see :mod:`fedproto.version`). Nested models are received the same way.
"""

from __future__ import annotations

import typing
from functools import cache
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

_RECEIVED = "fedproto.received"
RECEIVED_CONTEXT = {_RECEIVED: True}


@cache
def _known_fields(cls: type[BaseModel]) -> frozenset[str] | None:
    """The field names and aliases ``cls`` accepts (None: it keeps unknown fields), once per class:
    a status ad is 16 nested models, and working this out per received object was a tenth of a poll."""
    if cls.model_config.get("extra") != "forbid":
        return None
    fields = cls.model_fields
    return frozenset(fields) | {f.alias for f in fields.values() if f.alias}


def _models_in(annotation: Any) -> typing.Iterator[type[BaseModel]]:
    """The pydantic models an annotation names, at any depth (``list[X] | None`` names ``X``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


@cache
def _drops_unknown_everywhere(cls: type[BaseModel]) -> bool:
    """Whether every model reachable from ``cls`` forbids unknown fields, so validating with
    ``extra="ignore"`` drops exactly what :meth:`WireModel._drop_unknown_when_received` would.

    pydantic's ``extra`` argument applies to every nested model, those that keep unknown fields
    (``extra="allow"``, launch events) included; a tree holding one of those takes the validator.
    The argument is what a status ad (16 nested models) is received with: calling the validator
    for each of them cost a tenth of the broker's verification of an ad.
    """
    seen: set[type[BaseModel]] = set()
    todo = [cls]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        if model.model_config.get("extra") != "forbid":
            return False
        for field in model.model_fields.values():
            todo.extend(_models_in(field.annotation))
    return True


class WireModel(BaseModel):
    """A message on the wire. See the module docstring for unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown_when_received(cls, data: Any, info: ValidationInfo) -> Any:
        if not (isinstance(data, dict) and info.context and info.context.get(_RECEIVED)):
            return data
        known = _known_fields(cls)
        if known is None:
            return data  # models that keep unknown fields (launch events) keep them when received too
        if data.keys() <= known:
            return data  # the common case: a peer on our version sent nothing new
        return {k: v for k, v in data.items() if k in known}

    @classmethod
    def received(cls, data: Any) -> Self:
        """``data`` from a peer (a parsed JSON value): unknown fields ignored, known ones checked."""
        if _drops_unknown_everywhere(cls):
            return cls.model_validate(data, extra="ignore")
        return cls.model_validate(data, context=RECEIVED_CONTEXT)

    @classmethod
    def received_json(cls, text: str | bytes) -> Self:
        """:meth:`received` for JSON text."""
        if _drops_unknown_everywhere(cls):
            return cls.model_validate_json(text, extra="ignore")
        return cls.model_validate_json(text, context=RECEIVED_CONTEXT)
