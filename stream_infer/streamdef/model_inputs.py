"""Does a model take the inputs a feature service names? Checked before anything starts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from stream_infer.errors import DefinitionError


class ServiceInputs(Protocol):
    """A feature service's name and its ordered features (a :class:`StreamDefinitions` is one)."""

    @property
    def service(self) -> str: ...

    @property
    def inputs(self) -> tuple[str, ...]: ...


def check_model_inputs(
    defs: ServiceInputs, input_names: Sequence[str] | None, width: int | None
) -> None:
    """Refuse a model whose inputs differ from the service's ordered features.

    ``input_names`` are the model's feature names in its input order (``None`` when the model
    does not record them); ``width`` the number of columns its input takes (``None`` when not
    fixed).

    Raises:
        DefinitionError: the width differs from the service's feature count, or the names
            differ (the message lists what is missing, what is extra, or the first position
            where the order differs).
    """
    expected = defs.inputs
    where = f"feature service {defs.service}"
    if width is not None and width != len(expected):
        raise DefinitionError(f"the model takes {width} inputs; {where} names {len(expected)}")
    if input_names is None:
        return
    names = tuple(input_names)
    missing = [n for n in expected if n not in names]
    extra = [n for n in names if n not in expected]
    if missing or extra:
        raise DefinitionError(
            f"the model's inputs differ from {where}'s features: the model lacks "
            f"{missing or 'nothing'}, and has {extra or 'nothing'} that the service does not name"
        )
    for i, (got, want) in enumerate(zip(names, expected, strict=False)):
        if got != want:
            raise DefinitionError(
                f"the model's input {i} is {got}; {where} puts {want} there "
                "(same features, another order)"
            )
    if len(names) != len(expected):
        raise DefinitionError(f"the model names {len(names)} inputs; {where} names {len(expected)}")
