"""labwire's own work per call, warm and in one process: what each call of the mix costs in Python.

For each call of :data:`benchmarks.peers.MIX` and a property read:

* the client's part: encoding the request in the compact layout a labwire client sends its
  server, and reading the reply (``labwire.wire.rpc``); the client's socket calls and
  bookkeeping are left out;
* the server's part: a real :class:`~labwire.rpc.RPCServer` handling the request, from its
  decoding to the reply queued on the server's socket (the request handler called in a loop,
  as the thread that receives requests calls it; each request has an id of its own, so none is
  a duplicate);
* beside them, in the row's name, the least any JSON RPC does for that call: its four JSON
  passes alone (the arguments and the result, each encoded and decoded once by msgspec,
  labwire's JSON library). Raw pyzmq's echo, the baseline of the latency rows, does no such
  work at all, so the raw pyzmq column is empty.

Each figure is the best of several rounds: what the work costs on a warm CPU. In a round trip
the same work runs on a CPU that has just woken up, or just moved a large message, and takes
longer; ``rpc_bench`` measures that.
"""

from __future__ import annotations

import itertools
import time
import timeit
from collections.abc import Callable
from typing import Any

import msgspec

from benchmarks import row
from benchmarks.peers import MIX, PROPERTY_READ, BenchDevice
from labwire.config import default_settings
from labwire.wire.rpc import encode_call, encode_get, encode_plain_reply, read_plain_reply

_CLIENT_ID = "0123456789abcdef"
_TIMEOUT_MS = 30_000
_IDENTITY = b"\x00bench"  # a routing id no peer has: the replies are queued, then dropped


def _json_passes(args: list[Any], kwargs: dict[str, Any], result: Any) -> list[Callable[[], Any]]:
    """The four JSON passes of a call: its arguments and result, each encoded and decoded."""
    encoder, decoder = msgspec.json.Encoder(), msgspec.json.Decoder()
    request, reply = encoder.encode([args, kwargs]), encoder.encode(result)
    return [
        lambda: encoder.encode([args, kwargs]),
        lambda: decoder.decode(request),
        lambda: encoder.encode(result),
        lambda: decoder.decode(reply),
    ]


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Each call's own work: its client and server parts, and its JSON passes alone."""
    number, rounds = (300, 3) if quick else (5_000, 15)
    limits = default_settings().limits
    server = BenchDevice(None, "tcp://127.0.0.1:0").start()
    handle = server._pool._handle
    server_id = server._server_id
    rids = itertools.count(1)

    def request(method: str, args: list[Any], kwargs: dict[str, Any]) -> bytes | None:
        expiry = time.monotonic() + 3600.0
        rid = next(rids)
        if method == PROPERTY_READ:
            return encode_get("position", _CLIENT_ID, rid, _TIMEOUT_MS, expiry, server_id)
        return encode_call(method, args, kwargs, _CLIENT_ID, rid, _TIMEOUT_MS, expiry, server_id)

    # label -> part -> the calls whose times add up to it
    parts: dict[str, dict[str, list[Callable[[], Any]]]] = {}
    try:
        calls = {label: (m, list(a), k) for label, (m, a, k) in MIX.items()}
        calls[PROPERTY_READ] = (PROPERTY_READ, [], {})
        for label, (method, args, kwargs) in calls.items():
            if method == PROPERTY_READ:
                result = server.position
            else:
                result = getattr(server, method)(*args, **kwargs)
            # Every step takes the path a labwire client and server take, never a refusal's.
            reply = encode_plain_reply(1, server_id, result)
            assert reply is not None and read_plain_reply(reply, server_id, limits) is not None
            requests = [request(method, args, kwargs) for _ in range(number * rounds)]
            assert None not in requests, label
            frames = iter(requests)
            parts[label] = {
                "client": [
                    lambda m=method, a=args, k=kwargs: request(m, a, k),
                    lambda r=reply: read_plain_reply(r, server_id, limits),
                ],
                "server": [lambda f=frames: handle(_IDENTITY, [next(f)], None)],
                "json": _json_passes(args, kwargs, result),
            }
        # Round after round over every call, so that a machine whose speed drifts (a shared
        # or virtual one) drifts for all of them; each call's best round is reported.
        best: dict[tuple[str, str, int], float] = {}
        for _ in range(rounds):
            for label, by_part in parts.items():
                for part, steps in by_part.items():
                    for index, step in enumerate(steps):
                        spent = timeit.timeit(step, number=number) / number * 1e6
                        key = (label, part, index)
                        best[key] = min(best.get(key, spent), spent)
        refused = server.stats.bad_requests + server.stats.expired + server.stats.duplicates
        assert refused == 0, server.stats.as_dict()
    finally:
        server.close()
    rows = []
    for label, by_part in parts.items():
        client, served, passes = (
            sum(best[label, part, index] for index in range(len(by_part[part])))
            for part in ("client", "server", "json")
        )
        rows.append(
            row(
                f"{label}: labwire's own work per call, warm (client {client:.1f} + server "
                f"{served:.1f} us; its JSON passes alone {passes:.1f} us)",
                client + served,
                "-",
                "us",
                None,
                "-",
            )
        )
    return rows
