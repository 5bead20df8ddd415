"""Sans-IO core of rig coordination: experiment messages, typed payloads, datagrams, status.

Messages
--------
The experiment vocabulary is :class:`ExpMessage` (the integer codes of the deployed
``iblutil.io.net`` protocol: ``EXPINIT=1`` ... ``ALYX=128``; 0 marks an error reply) and the rig
status is :class:`ExpStatus` (``CONNECTED=0``, ``INITIALIZED=10``, ``RUNNING=20``,
``STOPPED=30``). Each message has one typed payload class (:class:`Init`, :class:`Start`, ...):
:func:`build_payload` checks the caller's arguments and :func:`payload_from_items` checks what
arrived, so a wrong argument is an error at the caller and a malformed one is an error reply
from the rig, never a crash.

Deployed datagram format (UDP, one datagram per message)
--------------------------------------------------------
Each datagram is a UTF-8 JSON array whose first element is the message code::

    [1, data]                     EXPINIT       (reply: [1, data])
    [2, exp_ref, data]            EXPSTART      (reply: [2, exp_ref, data])
    [4, data]                     EXPEND        (reply: [4, data])
    [8, data]                     EXPCLEANUP    (reply: [8, data])
    [16, data]                    EXPINTERRUPT  (reply: [16, data])
    [32, status]                  EXPSTATUS     (reply: [32, status])
    [64, status, data]            EXPINFO       (reply: [64, status, data])
    [128, base_url, token]        ALYX          (reply: [128, base_url, token])
    [0, "Type: message", code]    error reply to the message ``code`` (never echoed)

The receiver of any non-error datagram sends the exact bytes back as confirmation (the echo);
the application's answer comes later as a new datagram with the same code, which is echoed in
turn. The default port is :data:`LISTEN_PORT`. The wire carries no request id, so a reply is
matched to the pending request of the same code from the same peer.

Between two labwire ends the same payload items travel inside an RPC call
(:mod:`labwire.wire.rpc`), which adds request ids, deadlines and CurveZMQ.

Status machine
--------------
:data:`TRANSITIONS` is the rig's status table ``{status: {message: next status}}``;
:func:`next_status` applies it and raises :class:`IllegalTransition` for a message the current
status does not allow. EXPSTATUS, EXPINFO and ALYX never change the status; EXPINTERRUPT is
allowed in every status (an experiment may fail before it initialised every rig).

Protocol version: :data:`PROTOCOL_VERSION` (the deployed enumerations' version).

Modules: :mod:`~labwire.wire.rigs.messages` (codes and statuses),
:mod:`~labwire.wire.rigs.payloads`, :mod:`~labwire.wire.rigs.datagrams`,
:mod:`~labwire.wire.rigs.status` (the status machine) and :mod:`~labwire.wire.rigs.addresses`
(rig URIs); every name is re-exported here.
"""

from labwire.wire.rigs.addresses import (
    RigAddress,
    parse_rig_uri,
)
from labwire.wire.rigs.datagrams import (
    Datagram,
    decode_datagram,
    encode_datagram,
    encode_error,
)
from labwire.wire.rigs.messages import (
    LISTEN_PORT,
    MAX_DATAGRAM_BYTES,
    PROTOCOL_VERSION,
    REVERSED_MESSAGES,
    ExpMessage,
    ExpStatus,
    parse_message,
    parse_status,
)
from labwire.wire.rigs.payloads import (
    Alyx,
    Cleanup,
    End,
    Info,
    Init,
    Interrupt,
    Payload,
    Start,
    Status,
    build_payload,
    error_details,
    payload_from_items,
)
from labwire.wire.rigs.status import (
    TRANSITIONS,
    IllegalTransition,
    next_status,
)

__all__ = [
    "LISTEN_PORT",
    "MAX_DATAGRAM_BYTES",
    "PROTOCOL_VERSION",
    "REVERSED_MESSAGES",
    "TRANSITIONS",
    "Alyx",
    "Cleanup",
    "Datagram",
    "End",
    "ExpMessage",
    "ExpStatus",
    "IllegalTransition",
    "Info",
    "Init",
    "Interrupt",
    "Payload",
    "RigAddress",
    "Start",
    "Status",
    "build_payload",
    "decode_datagram",
    "encode_datagram",
    "encode_error",
    "error_details",
    "next_status",
    "parse_message",
    "parse_rig_uri",
    "parse_status",
    "payload_from_items",
]
