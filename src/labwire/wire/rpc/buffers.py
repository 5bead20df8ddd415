"""Buffers in messages: placeholders in the JSON, the raw bytes in frames of their own.

:func:`restore_buffers` puts them back; ``_extract`` takes them out for the encoders of
:mod:`~labwire.wire.rpc.frames`, :mod:`~labwire.wire.rpc.compact` and
:mod:`~labwire.wire.rpc.compact_replies`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labwire.errors import ProtocolError

#: The reserved placeholder key for out-of-band buffers.
BUFFER_KEY = "$lwbuf"

Buffer = bytes | bytearray | memoryview


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:  # numpy is an optional extra
        return None
    return numpy


def _extract(value: Any, buffers: list[Buffer]) -> Any:
    """Replace buffers inside ``value`` by placeholders, appending them to ``buffers``."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_extract(item, buffers) for item in value]
    if isinstance(value, dict):
        if BUFFER_KEY in value:
            raise TypeError(f"the key {BUFFER_KEY!r} is reserved by labwire")
        return {key: _extract(item, buffers) for key, item in value.items()}
    if isinstance(value, (bytes, bytearray)):
        buffers.append(value)
        return {BUFFER_KEY: len(buffers) - 1, "kind": "bytes"}
    if isinstance(value, memoryview):
        buffers.append(value if value.contiguous else value.tobytes())
        return {BUFFER_KEY: len(buffers) - 1, "kind": "buffer"}
    numpy = _numpy()
    if numpy is not None and isinstance(value, numpy.ndarray):
        if value.dtype.hasobject:
            raise TypeError("numpy arrays of Python objects cannot be sent")
        if numpy.dtype(value.dtype.str) != value.dtype:  # structured and sub-array dtypes
            raise TypeError(f"numpy dtype {value.dtype} cannot be sent: only plain dtypes are")
        array = value if value.flags.c_contiguous else numpy.ascontiguousarray(value)
        try:
            buffers.append(memoryview(array).cast("B") if array.size else b"")
        except ValueError as exc:  # dtypes without buffer support, e.g. datetime64
            raise TypeError(f"numpy array of dtype {array.dtype} cannot be sent: {exc}") from None
        return {
            BUFFER_KEY: len(buffers) - 1,
            "kind": "ndarray",
            "dtype": array.dtype.str,
            "shape": list(array.shape),
        }
    if numpy is not None and isinstance(value, numpy.generic):
        return value.item()
    return value  # let the JSON encoder name the offending type


def _restore(value: Any, buffers: Sequence[memoryview]) -> Any:
    if isinstance(value, list):
        return [_restore(item, buffers) for item in value]
    if isinstance(value, dict):
        if BUFFER_KEY in value:
            return _buffer_from_placeholder(value, buffers)
        return {key: _restore(item, buffers) for key, item in value.items()}
    return value


def _find_placeholder(value: Any) -> dict[str, Any] | None:
    """The first buffer placeholder inside decoded JSON ``value``, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            if BUFFER_KEY in item:
                return item
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return None


def _restore_request_field(value: Any, buffers: Sequence[memoryview]) -> Any:
    """:func:`restore_buffers` for a request field, which must not point at absent frames.

    Without buffer frames, :func:`restore_buffers` returns its input untouched; a request's
    placeholders would then reach the handler as plain objects, so they are looked for here.
    """
    if not buffers:
        placeholder = _find_placeholder(value)
        if placeholder is not None:
            index = placeholder[BUFFER_KEY]
            raise ProtocolError(f"buffer placeholder refers to missing frame {index!r}")
    return restore_buffers(value, buffers)


def _buffer_from_placeholder(placeholder: dict[str, Any], buffers: Sequence[memoryview]) -> Any:
    index = placeholder[BUFFER_KEY]
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(buffers):
        raise ProtocolError(f"buffer placeholder refers to missing frame {index!r}")
    data = buffers[index]
    kind = placeholder.get("kind")
    if kind == "bytes":
        return data.tobytes()
    if kind == "buffer":
        return data
    if kind == "ndarray":
        numpy = _numpy()
        if numpy is None:
            return data  # without numpy the raw bytes are the best we can give
        dtype, shape = placeholder.get("dtype"), placeholder.get("shape")
        if not isinstance(dtype, str) or not isinstance(shape, list):
            raise ProtocolError("ndarray placeholder needs a 'dtype' string and a 'shape' list")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise ProtocolError("ndarray shape must be a list of non-negative integers")
        try:
            array_type = numpy.dtype(dtype)
            if array_type.hasobject:
                raise TypeError("object dtype")
            return numpy.frombuffer(data, dtype=array_type).reshape(shape)
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"ndarray placeholder does not match its frame: {exc}") from None
    raise ProtocolError(f"unknown buffer kind {kind!r}")


def restore_buffers(value: Any, buffers: Sequence[memoryview]) -> Any:
    """Replace buffer placeholders in decoded JSON by the buffers they refer to.

    Raises:
        ProtocolError: A placeholder is malformed or refers to a missing frame.
    """
    if not buffers:
        return value
    return _restore(value, buffers)
