"""Addresses people can open, for servers bound to an interface.

A server bound on 0.0.0.0 (or ::) listens on every interface, but `http://0.0.0.0:8088` is no
address anyone can open: printed URLs and lineage namespaces name this machine instead."""

from __future__ import annotations

import socket

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def reachable_host(host: str) -> str:
    """`host`, or this machine's name when `host` is a wildcard bind."""
    if host in WILDCARD_HOSTS:
        return socket.getfqdn() or socket.gethostname()
    return host


def http_url(host: str, port: int) -> str:
    """The http URL of a server bound on host:port (IPv6 addresses in brackets)."""
    name = reachable_host(host)
    return f"http://[{name}]:{port}" if ":" in name else f"http://{name}:{port}"
