"""A live web dashboard of a registry's devices (the ``web`` extra: ``pip install 'labwire[web]'``).

:class:`Dashboard` serves one page (plain HTML, JavaScript and CSS shipped in the package, no
network access needed) from an aiohttp server in the running event loop;
:class:`DashboardThread` serves it from a thread for programs that are not asyncio. The page
shows the registry's devices as they come and go, each with forms for its methods, its
properties (editable where writable), a log and a plot of its signals. ``labwire dashboard``
runs it from the command line.

Example::

    with DashboardThread("tcp://127.0.0.1:5555", port=0) as board:
        print("open", board.url)
"""

from labwire.web.hub import Hub
from labwire.web.server import (
    DEFAULT_BIND,
    Dashboard,
    DashboardThread,
    is_loopback,
    parse_bind,
)

__all__ = ["DEFAULT_BIND", "Dashboard", "DashboardThread", "Hub", "is_loopback", "parse_bind"]
