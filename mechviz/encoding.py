"""Arrays in trace JSON: plain nested lists, or packed (zlib + base64) for large ones.

A packed array is a JSON object::

    {"encoding": "zlib+base64", "dtype": "float16", "shape": [30, 9, 5, 5],
     "data": "eJzt..."}

``data`` is the base64 text of the zlib-compressed little-endian bytes of the
array in C (row-major) order. Any language reads it with its standard
library: base64-decode, inflate, reinterpret as ``dtype``, reshape.

Both forms are read with exact types: in a nested list a float is not an id
and ``true`` is not a number; every float must be finite in the precision it
is read into (float32), so ``1e300`` is refused, not drawn as infinity.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any

import numpy as np

from mechviz.errors import MechvizError

ENCODING = "zlib+base64"
PACK_ABOVE = 64  # arrays with more numbers than this are packed; smaller stay readable
MAX_ELEMENTS = 1 << 31  # refuse before inflating: no trace array is this large
FLOAT16_MAX = float(np.finfo(np.float16).max)

FLOAT_DTYPES = ("float16", "float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")


def encode(value: np.ndarray, *, kind: str, low_precision: bool = False) -> Any:
    """An array as JSON: a nested list when small, else a packed object.

    ``kind`` is ``"int"`` or ``"float"``. Floats are packed as float32, or as
    float16 when ``low_precision`` and every value fits (|x| <= 65504): that is
    for views drawn to two decimals (attention weights, pooled rows). Integers
    are packed as int32 when they fit.
    """
    if value.size <= PACK_ABOVE:
        if kind == "int":
            return value.astype(np.int64).tolist()
        return round_significant(value).tolist()
    if kind == "int":
        fits = value.size == 0 or (value.min() >= -(2**31) and value.max() < 2**31)
        packed = value.astype("<i4" if fits else "<i8")
    elif low_precision and (value.size == 0 or float(np.abs(value).max()) <= FLOAT16_MAX):
        packed = value.astype("<f2")
    else:
        packed = value.astype("<f4")
    # Level 6: level 9 saves under 1% here at twice the time.
    data = zlib.compress(np.ascontiguousarray(packed).tobytes(), 6)
    return {
        "encoding": ENCODING,
        "dtype": packed.dtype.name,
        "shape": list(value.shape),
        "data": base64.b64encode(data).decode("ascii"),
    }


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
    allowed = INT_DTYPES if kind == "int" else FLOAT_DTYPES
    dtype = value.get("dtype")
    if dtype not in allowed:
        what = "integer" if kind == "int" else "float"
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
        raise MechvizError(f"Field '{name}' has packed data that is not zlib+base64.") from None
    if len(body) != expected or not inflater.eof:
        raise MechvizError(
            f"Field '{name}' has packed data of the wrong length for shape {shape} "
            f"and dtype {dtype}."
        )
    return np.frombuffer(body, dtype=np_dtype).reshape(shape)


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
