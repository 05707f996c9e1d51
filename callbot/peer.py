"""Who is at the other end of a local socket. The speech and store processes listen on abstract
Unix sockets, which have no file permissions: any local user could connect. Both take requests
only from their own user (or root): another user's process could otherwise write answers and
do-not-call entries through the store, or read residents' words through the speech process."""

from __future__ import annotations

import os
import socket
import struct

_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end of the Unix socket *conn* (None: unknown)."""
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    except (OSError, AttributeError):  # not a Unix socket, or no SO_PEERCRED on this system
        return None
    return int(_CRED.unpack(raw)[1])


def trusted(conn: socket.socket) -> bool:
    """*conn* comes from this process's own user, or from root."""
    uid = peer_uid(conn)
    return uid is not None and uid in (os.getuid(), 0)
