"""Size and shape limits applied to every message labwire decodes.

ZeroMQ's ``MAXMSGSIZE`` only bounds single frames, so the total size of a multi-frame message,
the number of frames, the JSON nesting depth and string lengths are checked here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Limits"]

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits on incoming messages. The defaults suit camera-sized buffers on a LAN.

    Attributes:
        max_frames: Most frames in one message (header and buffers together).
        max_frame_bytes: Largest single frame; also applied as ZeroMQ ``MAXMSGSIZE``.
        max_total_bytes: Largest message, all frames added up.
        max_json_bytes: Largest JSON header frame.
        max_depth: Deepest nesting of JSON arrays and objects.
        max_string_chars: Longest JSON string (keys included).
        max_int_digits: Most decimal digits in a JSON integer.
        int_bound: ``10 ** max_int_digits``, derived: every allowed integer is strictly
            between ``-int_bound`` and ``int_bound``.
        short_json_bytes: The smaller of ``max_json_bytes`` and ``max_string_chars``,
            derived: a JSON frame no longer than this is within the one and holds no string
            over the other.
    """

    max_frames: int = 1024
    max_frame_bytes: int = 512 * _MIB
    max_total_bytes: int = 1024 * _MIB
    max_json_bytes: int = 16 * _MIB
    max_depth: int = 64
    max_string_chars: int = 4 * _MIB
    max_int_digits: int = 20
    int_bound: int = field(init=False, repr=False, compare=False)
    short_json_bytes: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, spec in self.__dataclass_fields__.items():
            if not spec.init:
                continue
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")
        # Computed once: the checks on every call compare against them.
        object.__setattr__(self, "int_bound", 10**self.max_int_digits)
        object.__setattr__(
            self, "short_json_bytes", min(self.max_json_bytes, self.max_string_chars)
        )
