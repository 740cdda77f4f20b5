"""Open Inference Protocol tensor datatypes: what the model's FP32 input accepts, and how.

The model takes FP32 feature rows. FP32 is used as sent; FP64, FP16, BF16 and the integer
types (INT8-INT64, UINT8-UINT64) are converted to FP32 (FP64 and large integers round to the
nearest FP32, as any FP32 model input would). BOOL and BYTES are refused: a feature is a
number, and a string or a flag given in their place is the caller's mistake, not something to
coerce. Binary data (the HTTP binary tensor extension, gRPC ``raw_input_contents``) is
little-endian, row-major, as the protocol says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_infer.sidecar.protocol import ProtocolError

#: Datatypes converted to the model's FP32 input (BF16 handled apart: numpy has none).
NUMERIC: dict[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in {
        "FP32": "<f4",
        "FP64": "<f8",
        "FP16": "<f2",
        "INT8": "i1",
        "INT16": "<i2",
        "INT32": "<i4",
        "INT64": "<i8",
        "UINT8": "u1",
        "UINT16": "<u2",
        "UINT32": "<u4",
        "UINT64": "<u8",
    }.items()
}
ACCEPTED = (*NUMERIC, "BF16")
#: Every datatype the protocol names; the ones not in ACCEPTED are refused by name.
PROTOCOL = (*ACCEPTED, "BOOL", "BYTES")


class TensorDataError(ProtocolError):
    """Tensor data that cannot be the model's input (answered 400 / INVALID_ARGUMENT)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400)


def check_datatype(name: str, datatype: str) -> None:
    """Refuse a datatype the model's input does not accept.

    Raises:
        TensorDataError: BOOL, BYTES or a name the protocol does not know (the message says
            which datatypes are accepted).
    """
    if datatype in ACCEPTED:
        return
    what = "is not a protocol datatype" if datatype not in PROTOCOL else "is not accepted"
    raise TensorDataError(
        f"input {name!r}: datatype {datatype!r} {what}; the model's input is FP32 "
        f"(also accepted and converted: {', '.join(d for d in ACCEPTED if d != 'FP32')})"
    )


def itemsize(datatype: str) -> int:
    """Bytes per element of an accepted datatype."""
    return 2 if datatype == "BF16" else NUMERIC[datatype].itemsize


def element_count(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def from_bytes(name: str, datatype: str, raw: bytes, shape: Sequence[int]) -> npt.NDArray[Any]:
    """The flat array in ``raw`` (little-endian, row-major).

    Raises:
        TensorDataError: the datatype is refused, or ``raw`` is not the size ``shape`` needs.
    """
    check_datatype(name, datatype)
    expected = element_count(shape) * itemsize(datatype)
    if len(raw) != expected:
        raise TensorDataError(
            f"input {name!r}: {len(raw)} bytes of {datatype} data, but shape {list(shape)} "
            f"needs {expected}"
        )
    if datatype == "BF16":  # the high half of an FP32: widen by 16 zero bits
        halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32)
        return (halves << 16).view(np.float32)
    return np.frombuffer(raw, dtype=NUMERIC[datatype])


def from_json(name: str, datatype: str, data: Any) -> npt.NDArray[Any]:
    """The flat array of JSON ``data`` (a flat or nested list of numbers).

    Raises:
        TensorDataError: the datatype is refused, the data is not numbers (strings are never
            parsed as numbers), or an integer type is given fractions or out-of-range values.
    """
    check_datatype(name, datatype)
    if not isinstance(data, list):
        raise TensorDataError(f"input {name!r}: data must be a list of numbers")
    try:
        values = np.asarray(data)
    except ValueError as exc:  # ragged nesting
        raise TensorDataError(f"input {name!r}: data is not a regular array: {exc}") from exc
    if values.size and values.dtype.kind not in "iuf":
        raise TensorDataError(f"input {name!r}: data must be numbers, not {values.dtype.kind!r}")
    values = values.reshape(-1)
    if datatype in ("FP32", "FP64", "FP16", "BF16"):
        return values.astype(np.float64)
    limits = np.iinfo(NUMERIC[datatype])
    if values.dtype.kind == "f" and not np.array_equal(values, np.floor(values)):
        raise TensorDataError(f"input {name!r}: {datatype} data must be integers")
    if values.size and (values.min() < limits.min or values.max() > limits.max):
        raise TensorDataError(f"input {name!r}: {datatype} data out of range")
    return values.astype(NUMERIC[datatype])


def as_features(name: str, values: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """``values`` as the model's FP32 input.

    Raises:
        TensorDataError: a value is NaN or infinite (before or after the conversion).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become inf
        rows = values.astype(np.float32)
    if not np.isfinite(rows).all():
        raise TensorDataError(f"input {name!r}: data must be finite numbers (as FP32)")
    return rows
