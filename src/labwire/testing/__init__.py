"""Test kit for labwire users and labwire's own tests.

* :class:`NamespaceNetwork` / :class:`NamespaceHost`: several hosts on one Linux machine
  (network namespaces and a private bridge), with links that can be cut and healed.
"""

from labwire.testing.netns import NamespaceHost, NamespaceNetwork, namespaces_unavailable

__all__ = ["NamespaceHost", "NamespaceNetwork", "namespaces_unavailable"]
