"""Arrays in trace JSON: plain nested lists, or packed (shuffled, zlib, base64) when large.

A packed array is a JSON object::

    {"encoding": "shuffle+zlib+base64", "dtype": "uint16", "divisor": 65535,
     "shape": [30, 9, 5, 5], "data": "eJzt..."}

To read it: base64-decode ``data``; inflate it (zlib); the result is the
array's little-endian bytes in C order, *byte-shuffled*: for an item size of
``n`` bytes, first byte 0 of every item, then byte 1 of every item, and so on
(HDF5's shuffle filter; it groups the slowly varying exponent bytes so they
compress). Un-shuffle, reinterpret as ``dtype``, reshape to ``shape``, and,
when ``divisor`` is present, divide by it (a fixed-point fraction). Any
language does this with its standard library.

Both forms are read with exact types: in a nested list a float is not an id
and ``true`` is not a number; every float must be finite in the precision it
is read into (float32), so ``1e300`` is refused, not drawn as infinity.

How a field is stored (``storage`` in the schema's field metadata):

- default: float32, ids and ranks int32 (int64 if they do not fit);
- ``"float16"``: views drawn at a glance (pooled rows), when every value fits
  (|x| <= 65504), else float32; relative error at most 2**-11;
- ``"unit16"``: weights in [0, 1] whose rows sum to 1 (attention), as uint16
  fractions of 65535, rounded so that each row's stored sum is exact (the
  largest-remainder method); absolute error below 1/65535 per weight.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any

import numpy as np

from mechviz.errors import MechvizError

ENCODING = "shuffle+zlib+base64"
PACK_ABOVE = 64  # arrays with more numbers than this are packed; smaller stay readable
MAX_ELEMENTS = 1 << 31  # refuse before inflating: no trace array is this large
FLOAT16_MAX = float(np.finfo(np.float16).max)
UNIT16 = 65535  # the divisor of "unit16" storage

FLOAT_DTYPES = ("float16", "float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")


def encode(value: np.ndarray, *, kind: str, storage: str | None = None) -> Any:
    """An array as JSON: a nested list when small, else a packed object.

    Args:
        value: the array.
        kind: ``"int"`` or ``"float"``.
        storage: ``None``, ``"float16"`` or ``"unit16"`` (see the module docstring).

    """
    if value.size <= PACK_ABOVE:
        if kind == "int":
            return value.astype(np.int64).tolist()
        return round_significant(value).tolist()
    extra: dict[str, Any] = {}
    if kind == "int":
        fits = value.size == 0 or (value.min() >= -(2**31) and value.max() < 2**31)
        packed = value.astype("<i4" if fits else "<i8")
    elif storage == "unit16" and value.min() >= 0 and value.max() <= 1:
        packed = unit_fractions(value, UNIT16).astype("<u2")
        extra["divisor"] = UNIT16
    elif storage in ("float16", "unit16") and float(np.abs(value).max()) <= FLOAT16_MAX:
        packed = value.astype("<f2")
    else:
        packed = value.astype("<f4")
    raw = np.ascontiguousarray(packed).view(np.uint8).reshape(-1, packed.itemsize)
    # Level 6: level 9 saves under 1% here at twice the time.
    data = zlib.compress(raw.T.tobytes(), 6)
    return {
        "encoding": ENCODING,
        "dtype": packed.dtype.name,
        "shape": list(value.shape),
        **extra,
        "data": base64.b64encode(data).decode("ascii"),
    }


def unit_fractions(value: np.ndarray, divisor: int) -> np.ndarray:
    """``round(value * divisor)`` as integers, each last-axis row keeping its rounded sum.

    Rounding each weight alone can move a row's sum by half a step per weight;
    the largest-remainder method rounds up exactly the weights with the largest
    remainders, so a row summing to 1 is stored summing to ``divisor``.
    """
    scaled = value.astype(np.float64) * divisor
    floor = np.floor(scaled)
    remainder = scaled - floor
    deficit = np.round(scaled.sum(-1)) - floor.sum(-1)  # in [0, row length]
    order = np.argsort(-remainder, axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(value.shape[-1]), axis=-1)
    return (floor + (rank < deficit[..., None])).astype(np.int64)


def decode(value: Any, kind: str, name: str) -> np.ndarray:
    """A read-only int64 or float32 array from either JSON form, with exact types."""
    if isinstance(value, dict):
        arr = _unpack(value, kind, name)
    elif isinstance(value, list):
        arr = _from_lists(value, kind, name)
    else:
        raise MechvizError(
            f"Field '{name}' must be an array (a nested list or a packed object); "
            f"got {type(value).__name__}."
        )
    if kind == "int":
        arr = arr.astype(np.int64)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            read = arr.astype(np.float32)
        bad = ~np.isfinite(read)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            value = float(arr[at])
            shown = (
                "NaN"
                if np.isnan(value)
                else "an infinite value"
                if np.isinf(value)
                else (f"{value:g}")
            )
            raise MechvizError(
                f"Field '{name}' holds {shown} at index {list(at)}; every number "
                "must be finite in float32 (|x| < 3.4e38), the precision it is read into."
            )
        arr = read
    arr.setflags(write=False)
    return arr


def _unpack(value: dict, kind: str, name: str) -> np.ndarray:
    if value.get("encoding") != ENCODING:
        raise MechvizError(
            f"Field '{name}' is a packed array with unknown encoding "
            f"{value.get('encoding')!r}; expected '{ENCODING}'."
        )
    divisor = value.get("divisor")
    if divisor is not None and (type(divisor) is not int or divisor < 1 or kind == "int"):
        raise MechvizError(
            f"Field '{name}' has divisor {divisor!r}; a divisor is a positive integer, "
            "and only fractions (not ids) have one."
        )
    allowed = INT_DTYPES if kind == "int" or divisor else FLOAT_DTYPES
    dtype = value.get("dtype")
    if dtype not in allowed:
        what = "integer" if kind == "int" or divisor else "float"
        raise MechvizError(
            f"Field '{name}' has dtype {dtype!r}; it must be one of the {what} dtypes "
            f"{', '.join(allowed)}."
        )
    shape = value.get("shape")
    if not (
        isinstance(shape, list)
        and all(type(d) is int and 0 <= d < MAX_ELEMENTS for d in shape)
        and len(shape) <= 8
    ):
        raise MechvizError(f"Field '{name}' has a shape that is not a list of sizes.")
    count = int(np.prod(shape, dtype=object)) if shape else 1
    if count > MAX_ELEMENTS:
        raise MechvizError(f"Field '{name}' has shape {shape}, too large for a trace.")
    data = value.get("data")
    if not isinstance(data, str):
        raise MechvizError(f"Field '{name}' is a packed array without a 'data' string.")
    np_dtype = np.dtype(dtype).newbyteorder("<")
    expected = count * np_dtype.itemsize
    try:
        raw = base64.b64decode(data, validate=True)
        inflater = zlib.decompressobj()
        # max_length: a tiny file cannot inflate into gigabytes.
        body = inflater.decompress(raw, expected + 1)
    except (binascii.Error, ValueError, zlib.error):
        raise MechvizError(f"Field '{name}' has packed data that is not {ENCODING}.") from None
    if len(body) != expected or not inflater.eof:
        raise MechvizError(
            f"Field '{name}' has packed data of the wrong length for shape {shape} "
            f"and dtype {dtype}."
        )
    planes = np.frombuffer(body, dtype=np.uint8).reshape(np_dtype.itemsize, count)
    arr = np.ascontiguousarray(planes.T).view(np_dtype).reshape(shape)
    if divisor:
        return arr.astype(np.float32) / np.float32(divisor)
    return arr


def _from_lists(value: list, kind: str, name: str) -> np.ndarray:
    """A nested list to an array, refusing ragged lists and any non-number."""
    shape: list[int] = []
    level: list[Any] = [value]
    while level and all(type(x) is list for x in level):
        sizes = set(map(len, level))
        if len(sizes) != 1:
            raise MechvizError(f"Field '{name}' must be a rectangular array of numbers.")
        shape.append(sizes.pop())
        level = [y for x in level for y in x]
    if any(type(x) is list for x in level):
        raise MechvizError(f"Field '{name}' must be a rectangular array of numbers.")
    allowed = (int,) if kind == "int" else (int, float)
    for x in level:
        if type(x) not in allowed:
            what = "integers" if kind == "int" else "numbers"
            raise MechvizError(f"Field '{name}' must hold {what} only; it holds {_json(x)}.")
    try:
        flat = np.array(level, dtype=np.int64 if kind == "int" else np.float64)
    except OverflowError:
        raise MechvizError(f"Field '{name}' holds a number too large to read.") from None
    return flat.reshape(shape)


def _json(value: Any) -> str:
    import json

    text = json.dumps(value)
    return text if len(text) <= 30 else text[:27] + "..."


def round_significant(value: np.ndarray, digits: int = 6) -> np.ndarray:
    """Round to ``digits`` significant digits, vectorised.

    Six digits sit far below every tolerance we test and keep plain lists short
    and byte-stable. Scaling by an exact power of ten and dividing back gives
    the double nearest the rounded decimal, which JSON prints in short form.
    """
    x = value.astype(np.float64)
    with np.errstate(divide="ignore"):
        exp10 = np.floor(np.log10(np.abs(x)))
    shift = np.where(np.isfinite(exp10), digits - 1 - exp10, 0).astype(np.int64)
    up = np.power(10.0, np.clip(shift, 0, None))
    down = np.power(10.0, np.clip(-shift, 0, None))
    return np.round(x * up / down) * down / up
