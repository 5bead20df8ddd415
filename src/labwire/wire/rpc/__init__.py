"""RPC messages: the deployed plant-imaging protocol plus labwire's negotiated additions.

Theory of operation
-------------------
A request is a multi-frame ZeroMQ message. Between peers the envelope is the one a REQ socket
writes (an empty delimiter frame, then the body), so a deployed REQ client, a deployed REP
server, a labwire DEALER client and a labwire ROUTER server all understand each other. Once a
labwire client has read a labwire server's inventory it leaves the delimiter out (one frame
fewer each way); the server answers every request with the envelope it came with.

Calls take a compact layout. Once a labwire client knows it talks to a labwire server, it
writes a method call whose arguments are plain JSON data (scalars, and lists and str-keyed
dicts of them: no buffers inside them, no NaN), and every property read, as one JSON array
(:func:`encode_call`, :func:`encode_get`)::

    ["METHOD_CALL", method, args, kwargs, cid, rid, ttl, exp, sid]
    ["PROPERTY_GET", property, cid, rid, ttl, exp, sid]

where the last five are the ``"lw"`` fields below. A call whose arguments include buffers
(bytes, bytearrays, memoryviews, numpy arrays) as arguments of their own has each one's
placeholder (below) in the array, numbered in order, and the buffers as frames after it
(:func:`encode_call_frames`), to servers of protocol version 2 and later
(:data:`BUFFER_CALLS_VERSION`). A server decodes that in one typed pass
(:func:`decode_compact`); anything the pass declines goes to the general path, which reads the
array as the header it stands for (:func:`expand_compact_request`) and checks every field, so
a message the general path refuses never passes the fast one. A labwire server answers a
labwire request that succeeded with a plain JSON value in one compact frame,
``[rid, sid, value]`` (:func:`encode_plain_reply`; :func:`decode_plain_reply` and
:func:`read_plain_reply` read it); every other reply has the object layout below.

Request body, frame by frame::

    frame 0   UTF-8 JSON object (the header)
                "event"    one of RPCEvents (or a labwire extension event, see below)
                "method"   METHOD_CALL: method name
                "params"   METHOD_CALL: {"args": [...], "kwargs": {...}}
                "property" PROPERTY_GET / PROPERTY_SET: property name
                "value"    PROPERTY_SET: the new value
                "lw"       labwire only (absent from deployed clients):
                             "v"     protocol version (PROTOCOL_VERSION)
                             "cid"   client id (hex string, one per client object)
                             "rid"   request id (int, unique per client id)
                             "ttl"   milliseconds the caller will wait, or null (forever)
                             "exp"   expiry on the server's monotonic clock, or null
                             "sid"   the server incarnation "exp" was computed against
                             "nbuf"  number of buffer frames that follow
    frame 1+  raw buffers, referenced from the JSON by placeholders (labwire only)

A buffer placeholder is the JSON object ``{"$lwbuf": i, "kind": k, ...}`` where ``i`` indexes
the buffer frames and ``k`` is ``"bytes"``, ``"buffer"`` or ``"ndarray"`` (the latter with
``"dtype"`` and ``"shape"``). The key ``"$lwbuf"`` is reserved in labwire payloads.

Replies carry no ``"event"``. To a deployed client (no ``"lw"`` in the request) a server answers
exactly as the deployed server does: ``{"success": true, "result": ...}`` for a JSON method,
two frames ``[json(buffer_info), raw bytes]`` for a buffer method, ``{"success": false, "error":
..., "traceback": ...}`` on failure, and the inventory and signal-port objects of
``WIRE-COMPAT.md``. To a labwire client every reply is::

    frame 0   {"success": bool, "result": ..., "error": ..., "traceback": ...,
               <event-specific fields>, "lw": {"v", "rid", "sid", "etype", "code", "nbuf"}}
    frame 1+  raw buffers referenced from "result" (buffer methods return
              [placeholder, buffer_info])

Signals are one frame each: ``{"signal": name, "event": "EMIT_SIGNAL", "args": [...],
"blocking": false, "epoch": hex, "seq": n}``. The JSON starts with the signal name so a SUB
socket can filter on the exact prefix ``{"signal":"name",``; deployed subscribers, which
subscribe to everything, ignore the extra fields.

Extension events (labwire servers only; a client sends them once the inventory showed a
protocol version)::

    PING            -> {"success": true, "lw": {..., "now": server's monotonic clock}}
    GET_PROPERTIES  -> {"success": true, "values": {name: value}} (every readable property)
    SIGNAL_CHECK    "token": str (1-64 characters)
                    -> {"success": true, "subscribed": bool}: whether a subscription to
                       :func:`labwire.wire.signals.probe_prefix` (token) has reached the
                       server's publisher. A client subscribes to that prefix right after a
                       signal's and asks until it has: subscriptions travel in order, so the
                       signal's is then in place too, and an emission right after
                       ``connect()`` is not lost.

Operations (labwire servers only; see :mod:`labwire.wire.operations`). A method declared with
``RPCServer.register_operation`` is listed with the JSON methods, so a deployed client (and a
plain METHOD_CALL from labwire) calls it as it always did and gets the plain reply; the
server cancels the handler once the call's expiry passes. Started as an operation, it runs in
a thread of its own and is watched by polling::

    OP_START        "method", "params" as in METHOD_CALL; "deadline": milliseconds the
                    operation may run, or null (no limit); buffers as in METHOD_CALL
                    -> {"success": true, "op": info}
    OP_POLL         "op": operation id (1-64 characters); "after": the last update number
                    seen (an integer >= 0)
                    -> {"success": true, "op": info, "updates": [update, ...],
                        "result": value (once succeeded; buffers as in a method reply)}
    OP_CANCEL       "op": operation id; "reason": str (at most 256 characters)
                    -> {"success": true, "op": info}
    OP_LIST         -> {"success": true, "ops": [info, ...]} (running and recently ended)

where ``info`` is ``{"id", "method", "state", "seq", "started", "elapsed", "remaining", "deadline",
"on_disconnect", "fraction", "message", "error", "cause", "etype", "traceback"}`` and an ``update``
is ``[seq, fraction or null, message, intermediate result or null]``, numbered from 1.
Updates after ``after`` come in the same reply as the outcome, so the last update always
reaches a client before the result. Every OP_POLL or OP_CANCEL renews the operation's lease:
an operation declared ``on_disconnect="cancel"`` is cancelled once no client has polled it
for its lease (a few seconds). An unknown id is answered ``code: "not_found"``; one from an
earlier incarnation of the server says the operation was lost when the server restarted.

Modules: :mod:`~labwire.wire.rpc.events` (event types, error codes, the protocol version),
:mod:`~labwire.wire.rpc.buffers` (buffers in messages), :mod:`~labwire.wire.rpc.frames`
(frames and the general request), :mod:`~labwire.wire.rpc.compact` (the compact layout of
requests), :mod:`~labwire.wire.rpc.compact_replies` (of replies) and
:mod:`~labwire.wire.rpc.plain` (the checks both use); every name is re-exported here.
"""

from labwire.wire.rpc.buffers import BUFFER_KEY, Buffer, restore_buffers
from labwire.wire.rpc.compact import (
    CompactCall,
    CompactGet,
    decode_compact,
    encode_call,
    encode_call_frames,
    encode_get,
    expand_compact_request,
)
from labwire.wire.rpc.compact_replies import (
    NOT_PLAIN,
    decode_buffer_reply,
    decode_plain_reply,
    encode_buffer_reply,
    encode_plain_reply,
    expand_compact_reply,
    read_plain_reply,
)
from labwire.wire.rpc.events import (
    BUFFER_CALLS_VERSION,
    EXTENSION_EVENTS,
    PROTOCOL_VERSION,
    ErrorCode,
    ExtensionEvents,
    RPCEvents,
    is_private_name,
)
from labwire.wire.rpc.frames import (
    Request,
    check_frame_sizes,
    claimed_request_id,
    decode_frames,
    encode_frames,
    parse_request,
    reply_extension,
)

__all__ = [
    "BUFFER_CALLS_VERSION",
    "BUFFER_KEY",
    "EXTENSION_EVENTS",
    "NOT_PLAIN",
    "PROTOCOL_VERSION",
    "Buffer",
    "CompactCall",
    "CompactGet",
    "ErrorCode",
    "ExtensionEvents",
    "RPCEvents",
    "Request",
    "check_frame_sizes",
    "claimed_request_id",
    "decode_buffer_reply",
    "decode_compact",
    "decode_frames",
    "decode_plain_reply",
    "encode_buffer_reply",
    "encode_call",
    "encode_call_frames",
    "encode_frames",
    "encode_get",
    "encode_plain_reply",
    "expand_compact_reply",
    "expand_compact_request",
    "is_private_name",
    "parse_request",
    "read_plain_reply",
    "reply_extension",
    "restore_buffers",
]
