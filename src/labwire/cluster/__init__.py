"""Peer cluster: zero-configuration groups on a LAN, with events, requests and periodic tasks.

The processes of a robot (GPS reader, navigation, joystick, motor gateway) join a named group
with no configuration: they find each other by UDP beacons, publish events that others receive
by glob pattern (``'*/GPSPosition'``), send each other data, ask each other questions
(``await device.request('nav', 'route')``) and run fixed-rate loops::

    from labwire.cluster import Device

    gps = Device('gps', 'rover', network='127.0.0.0/8')

    @gps.every('100ms')
    async def read():
        await gps.publish('GPSPosition', {'lat': 52.1, 'lon': -106.6})

    gps.start()
    gps.wait()

Modules: :mod:`~labwire.cluster.device` (:class:`Device`, :class:`Context`,
:class:`AttributeDict`, :func:`group_to_port`), :mod:`~labwire.cluster.member` (discovery,
expiry, data links, security, name conflicts), :mod:`~labwire.cluster.looper`
(:class:`Looper`), :mod:`~labwire.cluster.net` (:class:`AsyncSocket`, where beacons go),
:mod:`~labwire.cluster.util` (:func:`duration_to_seconds`, :func:`debug` and its ``DEBUG``
switch). The wire format is in :mod:`labwire.wire.cluster`.
"""

from labwire.cluster.device import AttributeDict, Context, Device, group_to_port
from labwire.cluster.looper import Looper
from labwire.cluster.member import Member
from labwire.cluster.net import AsyncSocket
from labwire.cluster.peers import Error, Peer, UnknownPeer
from labwire.cluster.util import as_coroutine, debug, duration_to_seconds, ip_info

__all__ = [
    "AsyncSocket",
    "AttributeDict",
    "Context",
    "Device",
    "Error",
    "Looper",
    "Member",
    "Peer",
    "UnknownPeer",
    "as_coroutine",
    "debug",
    "duration_to_seconds",
    "group_to_port",
    "ip_info",
]
