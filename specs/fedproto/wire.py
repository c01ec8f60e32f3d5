"""The base of every wire model: frozen; strict when built here, forgiving when received.

Built on this side (``Model(...)``, ``model_validate``), an unknown field is an error, so a
typo in our own code, a config file or an administrator's request body fails loudly.
Received from the other side of the federation (:meth:`WireModel.received`), unknown fields
are dropped, so a peer one minor protocol version ahead is understood rather than refused
(see :mod:`fedproto.version`). Nested models are received the same way. Models that keep
unknown fields (``extra="allow"``: launch events, which relay a newer BinderHub's fields) keep
them when received too.
"""

from __future__ import annotations

import typing
from functools import cache
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict


def _models_in(annotation: Any) -> typing.Iterator[type[BaseModel]]:
    """The pydantic models an annotation names, at any depth (``list[X] | None`` names ``X``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


@cache
def _received_extra(cls: type[BaseModel]) -> Literal["ignore"] | None:
    """How ``cls`` is validated when received: pydantic's ``extra="ignore"``, which reaches every
    nested model, when none of them keeps unknown fields; else as declared (None), when none of
    them forbids them. Worked out once per class.

    (A Python validator on every model that dropped unknown keys did this before; a status ad is
    16 nested models, and those calls cost a tenth of the broker's verification of an ad.)
    """
    seen: set[type[BaseModel]] = set()
    todo = [cls]
    while todo:
        model = todo.pop()
        if model not in seen:
            seen.add(model)
            todo.extend(m for field in model.model_fields.values() for m in _models_in(field.annotation))
    kinds = {model.model_config.get("extra") for model in seen}
    if "allow" not in kinds:
        return "ignore"
    if "forbid" not in kinds:
        return None
    raise TypeError(f"{cls.__name__} nests models that keep unknown fields and models that forbid them; "
                    "pydantic cannot receive both at once (give the nested models one rule)")


class WireModel(BaseModel):
    """A message on the wire. See the module docstring for unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @classmethod
    def received(cls, data: Any) -> Self:
        """``data`` from a peer (a parsed JSON value): unknown fields ignored, known ones checked."""
        return cls.model_validate(data, extra=_received_extra(cls))

    @classmethod
    def received_json(cls, text: str | bytes) -> Self:
        """:meth:`received` for JSON text."""
        return cls.model_validate_json(text, extra=_received_extra(cls))

    @classmethod
    def trusted(cls, **values: Any) -> Self:
        """A model from values this process computed from validated inputs, every field given:
        no validation and no defaults, which is what makes it about twice as cheap as pydantic's
        ``model_construct`` (the broker builds one candidate per member it lists on every launch).
        Missing or unknown fields fall back to ``model_construct``, which fills the defaults."""
        if values.keys() != _field_names(cls):
            return typing.cast(Self, cls.model_construct(**values))
        model = cls.__new__(cls)
        # The four slots model_construct sets; pydantic reads nothing else from an instance.
        object.__setattr__(model, "__dict__", values)
        object.__setattr__(model, "__pydantic_fields_set__", set(values))
        object.__setattr__(model, "__pydantic_extra__", None)
        object.__setattr__(model, "__pydantic_private__", None)
        return model


@cache
def _field_names(cls: type[BaseModel]) -> typing.KeysView[str]:
    return cls.model_fields.keys()
