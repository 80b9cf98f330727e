"""The worker's own connections to PostgreSQL, each owned by one duty.

A duty's connection is opened when first needed and dropped after any error, so the
next round reconnects: after a restart or a failover nothing keeps using a dead
socket. Connections also carry TCP keepalives and a user timeout, so that a
half-open connection (a peer that vanished without closing) fails within seconds
instead of hanging, and every statement runs under a timeout of its own.

Task code does not use these: tasks run on Django's connection of their thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row

logger = logging.getLogger("kgc.worker")

# libpq options for every worker connection; DATABASE_URL's query string overrides them.
# A dead peer is noticed after about 25 s of idleness (10 + 3 × 5), and unacknowledged
# writes fail after 15 s, instead of the kernel's default of two hours or more.
CONNECTION_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
}


def connection_params(alias: str = "default") -> dict[str, Any]:
    """psycopg connection arguments for Django's ``alias`` database, with the worker's defaults."""
    from django.db import connections

    params = dict(connections[alias].get_connection_params())
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    if str(params.get("host", "")).startswith("/"):
        # TCP options mean nothing on a Unix socket (the embedded server).
        return {**params, "connect_timeout": params.get("connect_timeout", CONNECTION_DEFAULTS["connect_timeout"])}
    return {**CONNECTION_DEFAULTS, **params}


class StatementTimeout(TimeoutError):
    """The database did not answer in time; the connection was dropped."""


def _sever(conn: psycopg.AsyncConnection[Any], severed: list[int]) -> None:
    """Shut the connection's socket down under whoever is waiting on it; note its server process."""
    with contextlib.suppress(psycopg.Error):
        severed.append(conn.info.backend_pid)
    with contextlib.suppress(OSError, psycopg.Error):
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


async def _server_notices_severing(conn: psycopg.AsyncConnection[Any]) -> None:
    """Make the server abort this connection's statement within seconds once we sever it.

    Otherwise a statement stuck on a lock would run on after the timeout, and might even
    commit behind our back. PostgreSQL 14 and newer; on older servers the statement runs
    on until the worker ends that server process itself (``Worker._reconcile``).
    """
    with contextlib.suppress(psycopg.errors.UndefinedObject):
        await conn.execute("SET client_connection_check_interval = 2000")


class Link:
    """One duty's connection: opened on first use, dropped after any error.

    ``execute`` runs one statement in autocommit (its own transaction) under ``timeout``
    seconds; a timeout, like any error, drops the connection. A ``shared`` link serves
    several duties, one statement at a time.
    """

    def __init__(
        self, name: str, params: Mapping[str, Any], *, connect_timeout: float = 10.0, shared: bool = False
    ) -> None:
        self.name = name
        self.params = {**params, "application_name": f"kgc-worker:{name}"}
        self.connect_timeout = connect_timeout
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None
        self._lock = asyncio.Lock() if shared else None
        # Server processes of statements severed at their timeout: they may still be running
        # (and could still commit) until the server notices the connection is gone.
        self.severed_backends: list[int] = []

    async def connection(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            await self.drop()
            async with asyncio.timeout(self.connect_timeout):
                conn = await psycopg.AsyncConnection.connect(autocommit=True, row_factory=dict_row, **self.params)
                # psycopg's OpenTelemetry instrumentation, where installed, would trace every claim,
                # heartbeat and poll as a trace of its own: the worker's own statements opt out.
                conn.cursor_factory = psycopg.AsyncCursor
                await _server_notices_severing(conn)
            self._conn = conn
        return self._conn

    @contextlib.asynccontextmanager
    async def using(self, timeout: float) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        """The connection, for statements that must all answer within ``timeout`` seconds.

        Past the timeout the connection is severed (its socket shut down), which makes the
        waiting statement fail at once: cancelling it instead would make psycopg try to
        cancel it on the server, which on a dead connection takes several seconds more.
        Any error drops the connection; the next use reconnects.
        """
        conn = await self.connection()
        severed: list[int] = []
        timer = asyncio.get_running_loop().call_later(timeout, _sever, conn, severed)
        try:
            yield conn
        except BaseException as exc:
            await self.drop()
            self.severed_backends.extend(severed)
            if severed and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
                raise StatementTimeout(f"no answer from the database within {timeout:g} s") from exc
            raise
        finally:
            timer.cancel()

    async def execute(
        self, query: Any, params: Mapping[str, Any] | None = None, *, timeout: float
    ) -> list[dict[str, Any]]:
        async with self._lock or contextlib.nullcontext(), self.using(timeout) as conn:
            cursor = await conn.execute(query, params)
            return await cursor.fetchall() if cursor.description else []

    async def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing left to close cleanly
                await conn.close()


TERMINATE_BACKENDS = "SELECT pg_terminate_backend(pid) FROM unnest(%(pids)s::int[]) AS severed(pid)"
BACKENDS_ALIVE = "SELECT count(*) AS alive FROM pg_stat_activity WHERE pid = ANY(%(pids)s::int[])"


async def severed_backends_end(link: Link, *, timeout: float) -> None:
    """End the server processes of ``link``'s severed statements, and wait (5 s at most) until
    they are gone, so that none of them can still commit (a claim whose answer was lost).

    Best effort: without the right to end them (another role's), such a statement may still
    commit later; a periodic reconciliation then sees what it claimed.
    """
    pids, link.severed_backends = list(link.severed_backends), []
    if not pids:
        return
    try:
        await link.execute(TERMINATE_BACKENDS, {"pids": pids}, timeout=timeout)
        for _ in range(50):
            [found] = await link.execute(BACKENDS_ALIVE, {"pids": pids}, timeout=timeout)
            if not found["alive"]:
                return
            await asyncio.sleep(0.1)
    except psycopg.errors.InsufficientPrivilege as exc:
        logger.warning(f"could not end the server process of a severed claim: {exc}", extra={"event": "claim_severed"})
