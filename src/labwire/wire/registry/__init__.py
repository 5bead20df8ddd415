"""Registry messages, the lease table and the watch tracker: sans-IO, "now" is an argument.

Theory of operation
-------------------
The registry protocol is the deployed plant-imaging one (``WIRE-COMPAT.md``): every message is
ONE frame of UTF-8 JSON, ``{"event": <event>, "payload": {...}}``. labwire's additions ride
along as extra fields that a deployed peer ignores, plus one request (``LIST_DEVICES``) that a
deployed registry answers with ``UNSUPPORTED``, which is how a labwire client tells the two
apart. Frame by frame, protocol version :data:`REGISTRY_PROTOCOL_VERSION`::

    requests (device or client -> registry)
      REGISTER       payload: device_type str, addr str, name str (proposed), overwrite bool
                     labwire: incarnation str (one per registering process/keeper),
                              alive_timeout number (lease length in seconds),
                              public_key str (the device server's CurveZMQ public key, 40
                              Z85 characters; sent only when the device runs with security)
      UNREGISTER     payload: uuid str
      CHECK_ALIVE    payload: uuid str, alive_timeout number (optional)
      LIST_DEVICES   labwire only. payload: name str (optional), device_type str (optional)
      every labwire request also has a top-level "lw": {"v": version, "rid": request id}

    replies (registry -> requester; "lw" echoed with the same "rid" to labwire requesters)
      REGISTER_ACK   payload: name (accepted), uuid
      ACK            payload: req_event, success
                     labwire: reason ("unknown", "expired", "replaced", "unregistered") when
                              success is false: why the uuid has no lease
      ACK to a refused REGISTER (labwire, security on): req_event "REGISTER", success false,
                     reason :data:`REGISTER_DENIED` (see "Authorisation" below)
      ACK to LIST_DEVICES: req_event, success, devices [device...], registry_id, seq,
                     event_port, heartbeat_interval, version
      UNSUPPORTED    payload: req_event (the event sent, or null)
                     labwire: error (what was wrong with the request)

    events (labwire only; the registry's PUB socket on "event_port", one frame each)
      DEVICE_ADDED   payload: registry_id, seq, device
      DEVICE_REMOVED payload: registry_id, seq, device, reason
      HEARTBEAT      payload: registry_id, seq, interval

    device = {"name", "device_type", "address", "registered_since", "last_seen",
              "incarnation", "alive_timeout", "public_key"}
              (times: UNIX seconds, for display only; public_key "" when none was registered)

Leases. :class:`LeaseTable` holds one :class:`Lease` per registered device. A lease is a small
state machine (:data:`LEASE_TRANSITIONS`): it is ACTIVE until it is unregistered, expires (no
CHECK_ALIVE within its alive_timeout, measured on the caller's monotonic clock) or is replaced
by another registration of the same name (``overwrite=True``). Every change is numbered
(``seq``) so that the event stream and snapshots can be matched up; the table keeps a bounded
memory of ended leases so a CHECK_ALIVE for one can say *why* it failed.

Names and device types are 1 to 256 characters, printable and without whitespace (no control
or format characters: no NUL, newline, escape sequence or bidirectional override), without
``/`` or a backslash, and neither ``.`` nor ``..``: a name is safe to print in a terminal, to use as
a file name and to put in a URL path. :func:`device_name_problem` says what is wrong with one;
a REGISTER that breaks the rule is refused with that reason.

Names follow the seed's rule: a free proposed name is granted as is; a taken one gets the first
free suffix ``-1``, ``-2``...; ``overwrite=True`` takes the name over (the holder's lease ends
with reason "replaced"); an empty proposed name yields ``<device_type>-<n>`` with n >= 1. A
REGISTER from an incarnation that already holds a lease for the same type and address gets
that lease back (so a retried REGISTER never creates a second entry).

Authorisation. With security on, the registry knows the authenticated public key of every
requester; a lease remembers the key that registered it (its *owner*, never sent). Ending a
lease owned by another key through REGISTER (``overwrite=True`` on a held name) is allowed
only when the registry's policy says so (admin keys): :meth:`LeaseTable.register` is told with
``may_take_over``. A refused REGISTER is answered with an ``ACK`` (req_event ``REGISTER``,
success false, reason :data:`REGISTER_DENIED`): deployed devices treat every reply other than
REGISTER_ACK as a failed registration, and labwire recognises the reason. The same owner may
always take its own names back (a device restarting under the same key), and an incarnation
id only hands back or replaces leases of the same owner. Without security every owner is ""
and the seed's rule applies unchanged.

Watching. :class:`WatchTracker` turns "snapshot + numbered events" into a consistent view: an
event whose seq is not the next one, a registry id that changed, or a heartbeat that shows a
seq the watcher never saw all mean "resynchronise from a new snapshot".

Modules: :mod:`~labwire.wire.registry.messages` (limits, typed messages, field checks),
:mod:`~labwire.wire.registry.codec` (frames), :mod:`~labwire.wire.registry.leases` (the lease
table) and :mod:`~labwire.wire.registry.watch` (the watch tracker); every name is re-exported
here.
"""

from labwire.wire.registry.codec import (
    decode_event,
    decode_reply,
    decode_request,
    encode_event,
    encode_reply,
    encode_request,
)
from labwire.wire.registry.leases import (
    LEASE_TRANSITIONS,
    Change,
    Lease,
    LeaseEvent,
    LeaseState,
    LeaseTable,
    Registration,
    changes_to_events,
)
from labwire.wire.registry.messages import (
    ALIVE_TIMEOUT,
    MAX_ALIVE_TIMEOUT,
    REGISTER_DENIED,
    REGISTRY_PROTOCOL_VERSION,
    Ack,
    AliveCheckState,
    ChangeKind,
    CheckAliveRequest,
    DeviceEvent,
    DeviceInfo,
    DeviceListing,
    EventType,
    ExtensionEvent,
    ListDevicesRequest,
    RegisterAck,
    RegisterRequest,
    RegistryHeartbeat,
    RegistryReply,
    RegistryRequest,
    RemovalReason,
    RenewResult,
    RequestMeta,
    RequestRejected,
    UnregisterRequest,
    Unsupported,
    device_name_problem,
)
from labwire.wire.registry.watch import (
    WatchTracker,
    WatchVerdict,
)

__all__ = [
    "ALIVE_TIMEOUT",
    "LEASE_TRANSITIONS",
    "MAX_ALIVE_TIMEOUT",
    "REGISTER_DENIED",
    "REGISTRY_PROTOCOL_VERSION",
    "Ack",
    "AliveCheckState",
    "Change",
    "ChangeKind",
    "CheckAliveRequest",
    "DeviceEvent",
    "DeviceInfo",
    "DeviceListing",
    "EventType",
    "ExtensionEvent",
    "Lease",
    "LeaseEvent",
    "LeaseState",
    "LeaseTable",
    "ListDevicesRequest",
    "RegisterAck",
    "RegisterRequest",
    "Registration",
    "RegistryHeartbeat",
    "RegistryReply",
    "RegistryRequest",
    "RemovalReason",
    "RenewResult",
    "RequestMeta",
    "RequestRejected",
    "UnregisterRequest",
    "Unsupported",
    "WatchTracker",
    "WatchVerdict",
    "changes_to_events",
    "decode_event",
    "decode_reply",
    "decode_request",
    "device_name_problem",
    "encode_event",
    "encode_reply",
    "encode_request",
]
