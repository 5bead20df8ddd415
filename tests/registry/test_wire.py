"""Sans-IO registry core: messages, the lease table and the watch tracker (no sockets)."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labwire.errors import LimitExceeded, ProtocolError
from labwire.wire.limits import Limits
from labwire.wire.registry import (
    LEASE_TRANSITIONS,
    Ack,
    ChangeKind,
    CheckAliveRequest,
    DeviceEvent,
    DeviceInfo,
    DeviceListing,
    EventType,
    Lease,
    LeaseEvent,
    LeaseState,
    LeaseTable,
    ListDevicesRequest,
    RegisterAck,
    RegisterRequest,
    RegistryHeartbeat,
    RemovalReason,
    RenewResult,
    RequestMeta,
    RequestRejected,
    UnregisterRequest,
    Unsupported,
    WatchTracker,
    WatchVerdict,
    decode_event,
    decode_reply,
    decode_request,
    device_name_problem,
    encode_event,
    encode_reply,
    encode_request,
)

LIMITS = Limits()

names = st.text(max_size=20)
device_names = st.text(
    st.characters(blacklist_categories=("C", "Z"), blacklist_characters="/\\"), max_size=20
).filter(lambda name: name not in (".", ".."))
timeouts = st.none() | st.floats(min_value=0.01, max_value=1000, allow_nan=False)
requests = st.one_of(
    st.builds(
        RegisterRequest,
        device_names,
        names,
        device_names,
        st.booleans(),
        st.text(max_size=8),
        timeouts,
    ),
    st.builds(UnregisterRequest, names),
    st.builds(CheckAliveRequest, names, timeouts),
    st.builds(ListDevicesRequest, st.none() | names, st.none() | names),
)
devices = st.builds(
    DeviceInfo,
    names,
    names,
    names,
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.floats(min_value=0.01, max_value=1e5),
)
replies = st.one_of(
    st.builds(RegisterAck, names, names),
    st.builds(Ack, st.sampled_from(["UNREGISTER", "CHECK_ALIVE"]), st.booleans(), names),
    st.builds(
        DeviceListing,
        st.lists(devices, max_size=3).map(tuple),
        st.text(max_size=8),
        st.integers(0, 10**9),
        st.integers(0, 65535),
        st.floats(min_value=0.01, max_value=10),
    ),
    st.builds(Unsupported, st.none() | names, names),
)


# ----------------------------------------------------------------------------- codec


@given(requests, st.none() | st.integers(0, 2**40))
def test_request_round_trip(request, request_id):
    decoded, meta = decode_request(encode_request(request, request_id), LIMITS)
    assert decoded == request
    assert (meta is None) == (request_id is None)
    if meta is not None:
        assert meta.request_id == request_id


@given(names, names)
def test_a_register_request_decodes_only_with_names_that_follow_the_rule(name, device_type):
    request = RegisterRequest(device_type, "tcp://h:1", name, False)
    try:
        decoded, _meta = decode_request(encode_request(request, 1), LIMITS)
    except RequestRejected as exc:
        assert exc.req_event == "REGISTER"
        assert any(device_name_problem(text) for text in (name, device_type) if text)
    else:
        assert decoded == request
        assert not any(device_name_problem(text) for text in (name, device_type) if text)


@given(replies, st.none() | st.integers(0, 2**40))
def test_reply_round_trip(reply, request_id):
    meta = None if request_id is None else RequestMeta(1, request_id)
    decoded, rid = decode_reply(encode_reply(reply, meta), LIMITS)
    if isinstance(reply, Ack) and reply.success:
        reply = Ack(reply.req_event, True, reply.reason)
    assert decoded == reply
    assert rid == request_id


@given(
    st.one_of(
        st.builds(
            DeviceEvent,
            st.sampled_from(ChangeKind),
            devices,
            names,
            st.integers(0, 10**9),
            st.sampled_from(["", "expired"]),
        ),
        st.builds(
            RegistryHeartbeat, names, st.integers(0, 10**9), st.floats(min_value=0.01, max_value=10)
        ),
    )
)
def test_event_round_trip(event):
    decoded = decode_event(encode_event(event), LIMITS)
    if isinstance(event, DeviceEvent) and event.kind == ChangeKind.ADDED:
        event = DeviceEvent(event.kind, event.device, event.registry_id, event.seq, "")
    assert decoded == event


@given(st.binary(max_size=200))
def test_any_bytes_give_a_request_or_one_rejection(data):
    try:
        decode_request(data, LIMITS)
    except RequestRejected as exc:
        assert isinstance(exc, ProtocolError)


@given(st.binary(max_size=200))
def test_any_bytes_give_a_reply_or_a_protocol_error(data):
    with contextlib.suppress(ProtocolError):
        decode_reply(data, LIMITS)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.sampled_from([*list(EventType), "LIST_DEVICES", "NOPE"]), json_values, json_values)
def test_any_json_request_gives_a_request_or_one_rejection(event, payload, extension):
    data = json.dumps({"event": event, "payload": payload, "lw": extension}).encode()
    try:
        decode_request(data, LIMITS)
    except RequestRejected as exc:
        assert exc.req_event in (event, None)


def test_deployed_register_is_understood():
    data = json.dumps(
        {
            "event": "REGISTER",
            "payload": {"device_type": "camera", "addr": "tcp://10.0.0.2:5000", "name": "cam"},
        }
    ).encode()
    request, meta = decode_request(data, LIMITS)
    assert request == RegisterRequest("camera", "tcp://10.0.0.2:5000", "cam", False)
    assert meta is None


def test_reply_to_deployed_request_has_exactly_the_deployed_fields():
    assert json.loads(encode_reply(RegisterAck("cam", "u-1"))) == {
        "event": "REGISTER_ACK",
        "payload": {"name": "cam", "uuid": "u-1"},
    }
    assert json.loads(encode_reply(Ack("CHECK_ALIVE", True))) == {
        "event": "ACK",
        "payload": {"req_event": "CHECK_ALIVE", "success": True},
    }
    assert json.loads(encode_reply(Unsupported("FOO"))) == {
        "event": "UNSUPPORTED",
        "payload": {"req_event": "FOO"},
    }


@pytest.mark.parametrize(
    ("message", "req_event", "fragment"),
    [
        (b"\xff", None, "UTF-8"),
        (b"[1]", None, "JSON object"),
        (b'{"payload": {}}', None, "'event'"),
        (b'{"event": "FOO", "payload": {}}', "FOO", "unsupported"),
        (
            b'{"event": "REGISTER", "payload": {"addr": "x", "name": "n"}}',
            "REGISTER",
            "device_type",
        ),
        (
            b'{"event": "REGISTER", "payload": {"device_type": 1, "addr": "x"}}',
            "REGISTER",
            "string",
        ),
        (
            b'{"event": "CHECK_ALIVE", "payload": {"uuid": "u", "alive_timeout": -1}}',
            "CHECK_ALIVE",
            "alive_timeout",
        ),
        (
            b'{"event": "CHECK_ALIVE", "payload": {"uuid": "u", "alive_timeout": true}}',
            "CHECK_ALIVE",
            "number",
        ),
        (b'{"event": "UNREGISTER", "payload": []}', "UNREGISTER", "payload"),
        (
            b'{"event": "UNREGISTER", "payload": {"uuid": "u"}, "lw": {"v": 0}}',
            "UNREGISTER",
            "lw.v",
        ),
        (b'{"event": "UNREGISTER", "payload": {"uuid": "u", "uuid": "v"}}', None, "duplicate"),
        (b'{"event": "CHECK_ALIVE", "payload": {"uuid": "u", "alive_timeout": NaN}}', None, "NaN"),
    ],
)
def test_rejections_name_the_problem(message, req_event, fragment):
    with pytest.raises(RequestRejected) as info:
        decode_request(message, LIMITS)
    assert info.value.req_event == req_event
    assert fragment in str(info.value)


def test_rejection_keeps_the_request_id():
    data = b'{"event": "REGISTER", "payload": {}, "lw": {"v": 1, "rid": 42}}'
    with pytest.raises(RequestRejected) as info:
        decode_request(data, LIMITS)
    assert info.value.meta == RequestMeta(1, 42)


def test_over_long_name_is_a_limit():
    data = json.dumps(
        {"event": "REGISTER", "payload": {"device_type": "t", "addr": "a", "name": "x" * 1000}}
    ).encode()
    with pytest.raises(RequestRejected, match="longer than"):
        decode_request(data, LIMITS)


# ----------------------------------------------------------------------------- leases


def register(
    table,
    now,
    name,
    *,
    device_type="camera",
    addr="tcp://h:1",
    overwrite=False,
    incarnation="",
    ttl=None,
):
    return table.register(
        now, RegisterRequest(device_type, addr, name, overwrite, incarnation, ttl)
    )


def counter_uuids():
    count = iter(range(1, 10**9))
    return lambda: f"u{next(count)}"


def test_taken_name_gets_suffixes_in_order():
    table = LeaseTable(new_uuid=counter_uuids())
    assert register(table, 0, "cam").name == "cam"
    assert register(table, 0, "cam", addr="tcp://h:2").name == "cam-1"
    assert register(table, 0, "cam", addr="tcp://h:3").name == "cam-2"
    assert register(table, 0, "cam-1", addr="tcp://h:4").name == "cam-1-1"


def test_suffix_skips_names_registered_literally():
    table = LeaseTable()
    register(table, 0, "cam")
    register(table, 0, "cam-1", addr="tcp://h:2")
    assert register(table, 0, "cam", addr="tcp://h:3").name == "cam-2"


def test_freed_name_is_reused():
    table = LeaseTable()
    first = register(table, 0, "cam")
    register(table, 0, "cam", addr="tcp://h:2")
    assert table.unregister(1, first.uuid)
    assert register(table, 2, "cam", addr="tcp://h:3").name == "cam"


def test_empty_name_gives_type_and_number_never_bare_suffix():
    table = LeaseTable()
    assert register(table, 0, "").name == "camera-1"
    assert register(table, 0, "", addr="tcp://h:2").name == "camera-2"
    assert register(table, 0, "", device_type="", addr="tcp://h:3").name == "device-1"
    assert register(table, 0, "", device_type="stage", addr="tcp://h:4").name == "stage-1"
    assert all(not name.startswith("-") for name in table.addresses())


def test_overwrite_takes_the_name_and_reports_the_holder_replaced():
    table = LeaseTable(new_uuid=counter_uuids())
    old = register(table, 0, "cam")
    table.pop_changes()
    new = register(table, 1, "cam", addr="tcp://h:2", overwrite=True)
    assert new.name == "cam"
    assert table.addresses() == {"cam": ("camera", "tcp://h:2")}
    changes = table.pop_changes()
    assert [(c.kind, c.device.address, c.reason) for c in changes] == [
        (ChangeKind.REMOVED, "tcp://h:1", RemovalReason.REPLACED),
        (ChangeKind.ADDED, "tcp://h:2", ""),
    ]
    assert table.renew(2, old.uuid) is RenewResult.REPLACED


def test_same_incarnation_gets_its_lease_back():
    table = LeaseTable()
    first = register(table, 0, "cam", incarnation="i1")
    register(table, 0, "cam", addr="tcp://h:9", incarnation="other")  # cam-1
    table.pop_changes()
    again = register(table, 1, "cam", incarnation="i1")
    assert (again.name, again.uuid, again.is_new) == (first.name, first.uuid, False)
    assert table.pop_changes() == []


def test_incarnation_at_a_new_address_replaces_its_old_lease():
    table = LeaseTable()
    first = register(table, 0, "cam", incarnation="i1")
    table.pop_changes()
    second = register(table, 1, "cam", addr="tcp://h:2", incarnation="i1")
    assert second.name == "cam" and second.uuid != first.uuid
    kinds = [c.kind for c in table.pop_changes()]
    assert kinds == [ChangeKind.REMOVED, ChangeKind.ADDED]
    assert len(table) == 1


def test_lease_expires_after_its_alive_timeout_and_renewal_moves_it():
    table = LeaseTable(default_alive_timeout=10)
    lease = register(table, 100.0, "cam", ttl=2.0)
    assert table.next_expiry() == 102.0
    assert table.renew(101.5, lease.uuid, 3.0) is RenewResult.OK
    assert table.next_expiry() == 104.5
    assert table.expire(104.4) == 0
    assert table.expire(104.5) == 1
    assert table.renew(104.6, lease.uuid) is RenewResult.EXPIRED
    assert table.get("cam") is None


def test_default_alive_timeout_applies_without_one():
    table = LeaseTable(default_alive_timeout=7)
    register(table, 0, "cam")
    assert table.next_expiry() == 7


def test_renewal_after_expiry_time_is_refused_even_before_a_sweep():
    table = LeaseTable()
    lease = register(table, 0, "cam", ttl=1)
    assert table.renew(1.0, lease.uuid) is RenewResult.EXPIRED


def test_time_going_backwards_changes_nothing():
    table = LeaseTable()
    lease = register(table, 50, "cam", ttl=5)
    assert table.renew(10, lease.uuid) is RenewResult.OK  # treated as now = 50
    assert table.next_expiry() == 55
    assert table.expire(54.9) == 0


def test_unregister_outcomes():
    table = LeaseTable()
    lease = register(table, 0, "cam")
    assert table.unregister(1, "nope") is False
    assert table.unregister(1, lease.uuid) is True
    assert table.unregister(1, lease.uuid) is False
    assert table.renew(1, lease.uuid) is RenewResult.UNREGISTERED
    assert table.renew(1, "never") is RenewResult.UNKNOWN


def test_changes_are_numbered_without_gaps():
    table = LeaseTable()
    a = register(table, 0, "a")
    register(table, 0, "b")
    table.unregister(0, a.uuid)
    register(table, 0, "b", overwrite=True, addr="tcp://h:2")
    changes = table.pop_changes()
    assert [c.seq for c in changes] == [1, 2, 3, 4, 5]
    assert table.seq == 5
    assert table.pop_changes() == []


def test_full_table_refuses_new_names_but_allows_takeover():
    table = LeaseTable(max_devices=2)
    register(table, 0, "a")
    register(table, 0, "b")
    with pytest.raises(LimitExceeded):
        register(table, 0, "c")
    assert register(table, 0, "a", overwrite=True, addr="tcp://h:2").name == "a"


def test_heap_stays_bounded_under_many_renewals():
    table = LeaseTable()
    leases = [register(table, 0, f"d{i}", ttl=5) for i in range(10)]
    for step in range(1000):
        for lease in leases:
            table.renew(step * 0.001, lease.uuid)
    assert len(table._expiries) <= 4 * len(table) + 64


def test_lease_state_machine_is_a_table_and_illegal_events_raise():
    assert set(LEASE_TRANSITIONS[LeaseState.ACTIVE]) == set(LeaseEvent)
    lease = Lease("u", "n", "n", "t", "a", "", 1, 0, 0, 1)
    assert lease.handle(LeaseEvent.EXPIRE) is LeaseState.EXPIRED
    with pytest.raises(RuntimeError, match="illegal"):
        lease.handle(LeaseEvent.RENEW)


operations = st.lists(
    st.tuples(
        st.sampled_from(["register", "renew", "unregister", "tick"]),
        st.sampled_from(["", "a", "a-1", "b"]),
        st.booleans(),
        st.sampled_from(["", "i1", "i2"]),
        st.integers(0, 5),
    ),
    max_size=60,
)


@settings(max_examples=200)
@given(operations)
def test_table_invariants_hold_for_any_sequence(ops):
    table = LeaseTable(new_uuid=counter_uuids())
    now = 0.0
    uuids: list[str] = []
    view: dict[str, DeviceInfo] = {}
    for op, name, overwrite, incarnation, pick in ops:
        if op == "register":
            result = register(
                table,
                now,
                name,
                overwrite=overwrite,
                incarnation=incarnation,
                addr=f"tcp://h:{pick}",
                ttl=3,
            )
            uuids.append(result.uuid)
            assert result.name and not result.name.startswith("-")
        elif op == "renew" and uuids:
            table.renew(now, uuids[pick % len(uuids)])
        elif op == "unregister" and uuids:
            table.unregister(now, uuids[pick % len(uuids)])
        else:
            now += pick
            table.expire(now)
        for change in table.pop_changes():
            if change.kind == ChangeKind.ADDED:
                assert change.device.name not in view
                view[change.device.name] = change.device
            else:
                before = view.pop(change.device.name)
                assert (before.address, before.registered_since) == (
                    change.device.address,
                    change.device.registered_since,
                )
        assert set(view) == set(table.addresses())
        assert len(table) == len(view)


# ----------------------------------------------------------------------------- watching


def device(name, incarnation=""):
    return DeviceInfo(name, "camera", f"tcp://h/{name}", incarnation=incarnation)


def added(seq, name, registry_id="r1"):
    return DeviceEvent(ChangeKind.ADDED, device(name), registry_id, seq)


def removed(seq, name, registry_id="r1"):
    return DeviceEvent(ChangeKind.REMOVED, device(name), registry_id, seq, "expired")


def test_watch_buffers_until_snapshot_then_replays_newer_events():
    tracker = WatchTracker()
    assert tracker.apply_event(added(3, "c")) is WatchVerdict.BUFFERED
    assert tracker.apply_event(added(4, "d")) is WatchVerdict.BUFFERED
    replayed = tracker.apply_snapshot(DeviceListing((device("a"), device("c")), "r1", 3))
    assert [e.seq for e in replayed] == [4]
    assert set(tracker.devices) == {"a", "c", "d"}
    assert tracker.is_synced and tracker.seq == 4


def test_watch_applies_in_order_and_drops_stale():
    tracker = WatchTracker()
    tracker.apply_snapshot(DeviceListing((device("a"),), "r1", 10))
    assert tracker.apply_event(added(10, "x")) is WatchVerdict.STALE
    assert tracker.apply_event(removed(11, "a")) is WatchVerdict.APPLIED
    assert tracker.devices == {}


def test_watch_gap_or_new_registry_asks_for_resync():
    tracker = WatchTracker()
    tracker.apply_snapshot(DeviceListing((), "r1", 1))
    assert tracker.apply_event(added(3, "x")) is WatchVerdict.RESYNC
    assert not tracker.is_synced
    assert tracker.resyncs == 1
    tracker = WatchTracker()
    tracker.apply_snapshot(DeviceListing((), "r1", 1))
    assert tracker.apply_event(added(1, "x", registry_id="r2")) is WatchVerdict.RESYNC
    assert not tracker.is_synced


def test_watch_heartbeat_reveals_missed_trailing_events():
    tracker = WatchTracker()
    tracker.apply_snapshot(DeviceListing((), "r1", 5))
    assert tracker.apply_heartbeat(RegistryHeartbeat("r1", 5, 1.0)) is WatchVerdict.STALE
    assert tracker.apply_heartbeat(RegistryHeartbeat("r1", 6, 1.0)) is WatchVerdict.RESYNC
    tracker.apply_snapshot(DeviceListing((), "r1", 6))
    assert tracker.apply_heartbeat(RegistryHeartbeat("r2", 0, 1.0)) is WatchVerdict.RESYNC


def test_watch_replay_stops_at_a_gap():
    tracker = WatchTracker()
    tracker.apply_event(added(2, "b"))
    tracker.apply_event(added(4, "d"))
    replayed = tracker.apply_snapshot(DeviceListing((), "r1", 1))
    assert [e.seq for e in replayed] == [2]
    assert not tracker.is_synced


def test_watch_buffer_is_bounded():
    tracker = WatchTracker(max_buffered=5)
    for seq in range(1, 100):
        tracker.apply_event(added(seq, f"d{seq}"))
    assert len(tracker._buffer) == 5
