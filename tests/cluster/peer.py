"""A cluster device in a process of its own, driven line by line; and the test side's handle.

Run as ``python -m tests.cluster.peer --name N --group G --network NET [--key K]
[--subscribe PATTERN ...]``. It prints one line per fact::

    READY <data port>
    EVENT <event> <data as JSON>                  for each event matching --subscribe
    RESULT <JSON> | ERROR <type> <message>        for each "request" command
    PEERS <name,name,...>                         for each "peers" command
    STATS <JSON>                                  for each "stats" command

and reads commands on stdin: ``publish TOPIC JSON``, ``request DEST ENDPOINT [JSON list of
arguments]``, ``peers``, ``stats``, ``quit``. Its request endpoints: ``whoami`` (name and
pid) and ``add``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from tests.commands import LineProcess


class Peer(LineProcess):
    """One peer process (test side), told to quit on close."""

    def __init__(self, argv: Sequence[str], prefix: Sequence[str] = ()) -> None:
        super().__init__("tests.cluster.peer", argv, prefix)

    def expect(self, word: str, timeout: float = 10.0) -> str:
        """The rest of the next unread line that starts with ``word``."""
        return self.next_line((word,), timeout).partition(" ")[2]

    def ask(self, line: str, word: str, timeout: float = 10.0) -> str:
        self.send(line)
        return self.expect(word, timeout)

    def peers(self) -> list[str]:
        return [name for name in self.ask("peers", "PEERS").split(",") if name]

    def request(self, line: str, timeout: float = 10.0) -> tuple[str, str]:
        """Send a request command; ``("RESULT", json)`` or ``("ERROR", "type message")``."""
        self.send(f"request {line}")
        head, _, rest = self.next_line(("RESULT", "ERROR"), timeout).partition(" ")
        return head, rest

    def wait_peers(self, names: set[str], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while set(self.peers()) != names:
            if time.monotonic() > deadline:
                raise AssertionError(f"peers never became {names}; saw {self.history[-3:]}")
            time.sleep(0.05)

    def ask_to_stop(self) -> None:
        self.send("quit")


# ------------------------------------------------------------------------ process side


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _main(options: argparse.Namespace) -> None:
    from labwire.cluster import Device

    device = Device(
        options.name,
        options.group,
        options.network,
        key=options.key,
        beacon_interval=options.beacon,
        expiry=options.expiry,
        timeout=options.timeout,
        discovery=options.discovery.split(","),
    )
    for pattern in options.subscribe:
        device.on(pattern, lambda event, data: _say(f"EVENT {event} {json.dumps(data)}"))
    device.on_request("whoami", lambda: [device.name, os.getpid()])
    device.on_request("add", lambda *numbers: sum(numbers))
    loop = asyncio.get_running_loop()
    async with device:
        _say(f"READY {device.member.data_port}")
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or line.strip() == "quit":
                return
            if not line.strip():
                continue
            await _command(device, line.split(maxsplit=3 if line.startswith("request") else 2))


async def _command(device: Any, words: list[str]) -> None:
    if words[0] == "publish":
        await device.publish(words[1], json.loads(words[2]))
    elif words[0] == "peers":
        _say("PEERS " + ",".join(peer.name for peer in device.peers() if peer.has_catalog))
    elif words[0] == "stats":
        _say(f"STATS {json.dumps(device.stats)}")
    elif words[0] == "request":
        arguments = json.loads(words[3]) if len(words) > 3 else []
        try:
            result = await device.request(words[1], words[2], *arguments)
        except Exception as exc:
            _say(f"ERROR {type(exc).__name__} {exc}")
        else:
            _say(f"RESULT {json.dumps(result)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--network", default="127.0.0.0/8")
    parser.add_argument("--key")
    parser.add_argument("--subscribe", action="append", default=[])
    parser.add_argument("--beacon", type=float, default=0.05)
    parser.add_argument("--expiry", type=float, default=0.6)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--discovery", default="broadcast,multicast")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
