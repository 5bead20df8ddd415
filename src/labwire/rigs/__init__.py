"""Rig coordination (seed ``iblrig.net.Auxiliaries``): push experiment messages to many rigs.

* :class:`Auxiliaries`: the coordinator on the behaviour PC. ``push('EXPINIT', data,
  wait=True)`` sends to every rig and collates the replies; every rig's outcome (reply, remote
  error or timeout) is kept in :class:`RigResults`, and :meth:`RigResults.raise_for_failures`
  raises one :class:`RigsFailed` naming every failed rig.
* :class:`RigService`: the base class of a remote rig (one handler per message, a status
  machine), reachable over the deployed UDP protocol and over labwire's transport at once.
* :class:`ExpMessage`, :class:`ExpStatus`: the experiment vocabulary, with the deployed codes.

How the URI chooses the link: ``udp://HOST[:PORT]``, an IP address or ``HOST:PORT`` speak the
deployed ``iblutil.io.net`` UDP protocol (default port 11001; echo confirmation, resent until
confirmed; replies matched by code, one request at a time per rig; no encryption, no expiry);
``tcp://HOST:PORT`` or a registry name use labwire's RPC transport (request ids, deadlines,
late replies dropped, expired requests never run, CurveZMQ when security is on). A
:class:`RigService` listens on both, so deployed coordinators and labwire ones can drive it.
Code written for ``iblrig.net.Auxiliaries`` runs here by changing only the import.
"""

from labwire.rigs.auxiliaries import Auxiliaries
from labwire.rigs.results import RigResult, RigResults, RigsFailed
from labwire.rigs.service import RigService
from labwire.wire.rigs import (
    LISTEN_PORT,
    ExpMessage,
    ExpStatus,
    IllegalTransition,
    build_payload,
    error_details,
)

__all__ = [
    "LISTEN_PORT",
    "Auxiliaries",
    "ExpMessage",
    "ExpStatus",
    "IllegalTransition",
    "RigResult",
    "RigResults",
    "RigService",
    "RigsFailed",
    "build_payload",
    "error_details",
]
