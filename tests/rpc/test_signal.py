"""RPCSignal and RPCProperty on their own (tier 1: no sockets)."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

from labwire.rpc import RPCProperty, RPCSignal
from labwire.rpc.signal import coerce_to_generic, is_instance_of_generic

pytestmark = pytest.mark.timeout(10)


def test_emit_calls_slots_in_order_and_ignores_duplicates() -> None:
    calls: list[tuple[str, Any]] = []
    signal = RPCSignal(int, str)

    def first(x: int, y: str) -> None:
        calls.append(("first", (x, y)))

    def second(x: int, y: str) -> None:
        calls.append(("second", (x, y)))

    signal.connect(first)
    signal.connect(second)
    signal.connect(first)
    signal.emit(10, "hello")
    assert calls == [("first", (10, "hello")), ("second", (10, "hello"))]
    assert signal.arg_types == (int, str) == signal.args


def test_disconnect_one_or_all_and_unknown_slot() -> None:
    signal = RPCSignal()
    calls: list[int] = []
    signal.connect(lambda: calls.append(1))
    slot = calls.clear
    signal.connect(slot)
    signal.disconnect(slot)
    with pytest.raises(ValueError):
        signal.disconnect(slot)
    signal.disconnect()
    signal.emit()
    assert calls == []


def test_connect_refuses_non_callables() -> None:
    with pytest.raises(TypeError):
        RPCSignal().connect(42)  # type: ignore[arg-type]


def test_weak_method_is_skipped_once_its_object_is_gone() -> None:
    received: list[int] = []

    class Listener:
        def on_value(self, value: int) -> None:
            received.append(value)

    listener = Listener()
    signal = RPCSignal(int)
    signal.connect(weakref.WeakMethod(listener.on_value))
    signal.emit(1)
    del listener
    gc.collect()
    signal.emit(2)
    assert received == [1]


def test_slot_exception_propagates_from_emit_but_not_from_dispatch() -> None:
    signal = RPCSignal(int)
    received: list[int] = []

    def broken(value: int) -> None:
        raise RuntimeError("slot failed")

    signal.connect(broken)
    signal.connect(received.append)
    with pytest.raises(RuntimeError):
        signal.emit(1)
    assert signal.dispatch(2) == 1
    assert received == [2]


def test_validate_args_checks_counts_types_and_coerces() -> None:
    signal = RPCSignal(int, list[float], tuple[int, int], dict[str, int] | None)
    assert signal.validate_args(1, [1.0], (1, 2), None) == (1, [1.0], (1, 2), None)
    with pytest.raises(RuntimeError):
        signal.validate_args(1)
    with pytest.raises(TypeError):
        signal.validate_args("1", [1.0], (1, 2), None)
    assert signal.validate_args("1", [1], [3, 4], {"a": "2"}, coerce=True) == (
        1,
        [1.0],
        (3, 4),
        {"a": 2},
    )
    with pytest.raises(TypeError):
        signal.validate_args("x", [1], [3, 4], None, coerce=True)


def test_class_level_signal_gives_each_instance_its_own() -> None:
    class Device:
        changed = RPCSignal(int)

    a, b = Device(), Device()
    received: list[int] = []
    a.changed.connect(received.append)
    b.changed.emit(5)
    a.changed.emit(6)
    assert received == [6]
    assert a.changed is a.changed
    assert Device.changed.name == "changed"


def test_rpc_property_auto_notify_emits_only_on_change_and_survives_setter() -> None:
    class Device:
        modeChanged = RPCSignal(str)

        def __init__(self) -> None:
            self._mode = "A"

        @RPCProperty(notify=modeChanged, auto_notify=True)
        def mode(self) -> str:
            return self._mode

        @mode.setter
        def mode(self, value: str) -> None:
            self._mode = value

    assert isinstance(Device.__dict__["mode"], RPCProperty)
    assert Device.__dict__["mode"].notify is Device.modeChanged
    device = Device()
    seen: list[str] = []
    device.modeChanged.connect(seen.append)
    device.mode = "B"
    device.mode = "B"
    device.mode = "C"
    assert seen == ["B", "C"]


def test_rpc_property_without_auto_notify_leaves_emission_to_the_setter() -> None:
    changed = RPCSignal(int)
    seen: list[int] = []
    changed.connect(seen.append)

    class Device:
        value = RPCProperty(lambda self: 1, lambda self, v: None, notify=changed)

    Device().value = 3
    assert seen == []
    with pytest.raises(AttributeError):
        RPCProperty(lambda self: 1).__set__(Device(), 2)


def test_a_tuple_of_types_matches_as_isinstance_does() -> None:
    expected = (list[int], dict[str, int])
    assert is_instance_of_generic([1, 2], expected)
    assert is_instance_of_generic({"a": 1}, expected)
    assert not is_instance_of_generic({"a": "b"}, expected)
    assert is_instance_of_generic(3, (int, str)) and not is_instance_of_generic(3.5, (int, str))
    assert coerce_to_generic(("1", "2"), (list[int], dict[str, int])) == [1, 2]
    assert coerce_to_generic({"a": "1"}, (list[int], dict[str, int])) == {"a": 1}


@pytest.mark.parametrize("expected", [list[int], tuple[int, ...], set[str], tuple[str, str]])
def test_text_is_never_split_into_a_container(expected: Any) -> None:
    with pytest.raises(TypeError, match="text is not a container"):
        coerce_to_generic("123", expected)
    with pytest.raises(TypeError):
        coerce_to_generic(b"12", expected)


def test_url_parser_imports_from_the_rpc_module_and_splits_deployed_urls() -> None:
    from labwire.rpc import url_parser

    match = url_parser.match("tcp://192.168.1.20:5555")
    assert match is not None and match.groups() == ("tcp", "192.168.1.20", "5555")
    bare = url_parser.match("tcp://localhost")
    assert bare is not None and bare.groups() == ("tcp", "localhost", "")
    assert url_parser.search("ipc:///tmp/x") is not None  # a path: scheme, empty host
