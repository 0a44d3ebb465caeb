"""uvicorn's HTTP/1.1 protocol with the deadlines and the per-client cap a public server needs.

uvicorn times out only the idle time after a response (``timeout_keep_alive``): a connection that never sends a
byte, or sends half a request line, or a body at a byte a minute, stays open for ever, and 64 of them take
every ``max_connections``. :func:`guarded_protocol` closes each of them after its deadline:

- idle: no byte of a request yet (a fresh connection, or between requests): ``idle_timeout_s``;
- headers: the request line and headers, from their first byte: ``header_timeout_s`` (then 408);
- body: the whole body, from the end of the headers: ``body_timeout_s`` (then 408, the app sees a disconnect);

and refuses a client's connection beyond ``max_connections_per_client`` open at once (503, then closed), so one
address cannot hold all ``max_connections``. ``GET /health`` is answered even when ``max_connections`` are all
taken (uvicorn's ``limit_concurrency`` answers every request 503 then): a monitor must see a busy server as up.
The client is the peer address: behind a reverse proxy every
connection comes from the proxy, so raise the cap to ``max_connections`` there and let the proxy limit clients.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def _response(status: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    """One connection: at most one deadline armed at a time, for the phase the client is in."""

    idle_timeout_s: float = 5.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_per_client: int = 8
    open_per_client: Counter[str]  # per server: set by guarded_protocol

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn's own idle deadline between requests (declared int there; loop.call_later takes float seconds)
        self.timeout_keep_alive = self.idle_timeout_s  # type: ignore[assignment]
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: str | None = None
        self._host: str | None = None
        self._limit = self.limit_concurrency

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else None
        if host is not None:
            self.open_per_client[host] += 1
            self._host = host
            if self.open_per_client[host] > self.max_per_client:
                detail = (
                    f"more than {self.max_per_client} connections at once from {host}; "
                    "close some (serve max_connections_per_client=…)"
                )
                self.logger.warning("Refused a connection: %s", detail)
                transport.write(_response("503 Service Unavailable", detail))
                transport.close()
                return
        # a fresh connection is idle until its first byte, as between requests
        self.timeout_keep_alive_task = self.loop.call_later(self.idle_timeout_s, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._arm(None)
        if self._host is not None:
            self.open_per_client[self._host] -= 1
            if self.open_per_client[self._host] <= 0:
                del self.open_per_client[self._host]
            self._host = None
        super().connection_lost(exc)

    def _should_upgrade(self) -> bool:
        """Called by uvicorn for every request once its scope is known, just before it checks the concurrency
        limit: the health check is exempt from that limit (it costs a dict, never a decode)."""
        health = self.scope["path"] == "/health" and self.scope["method"] in ("GET", "HEAD")
        self.limit_concurrency = None if health else self._limit
        return bool(super()._should_upgrade())

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is not h11.IDLE:  # a pipelined request was read on: follow it
            self._follow()
        else:
            self._arm(None)  # idle again: uvicorn's keep-alive deadline runs

    def _follow(self) -> None:
        """Arm the deadline of the phase the client's side of the connection is in now."""
        state = self.conn.their_state
        if state is h11.IDLE:
            self._arm("headers")
        elif state is h11.SEND_BODY:
            self._arm("body")
        else:  # the request is in (DONE), or the connection is closing: the app's answer has no deadline
            self._arm(None)

    def _arm(self, phase: str | None) -> None:
        if phase == self._phase:
            return  # a deadline runs from the start of its phase, not from the last byte
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = phase
        if phase is not None and not self.transport.is_closing():
            seconds = self.header_timeout_s if phase == "headers" else self.body_timeout_s
            self._deadline = self.loop.call_later(seconds, self._expire, phase, seconds)

    def _expire(self, phase: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        what = "request line and headers" if phase == "headers" else "request body"
        self.logger.warning("Closed a connection that did not send its %s within %g s", what, seconds)
        if self.cycle is None or not self.cycle.response_started:
            detail = f"the {what} did not arrive within {seconds:g} s"
            self.transport.write(_response("408 Request Timeout", detail))
        self.transport.close()


def guarded_protocol(
    idle_timeout_s: float, header_timeout_s: float, body_timeout_s: float, max_per_client: int
) -> type[GuardedH11Protocol]:
    """The protocol class to give ``uvicorn.run(http=…)``: these deadlines, and its own per-client counts."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {
            "idle_timeout_s": float(idle_timeout_s),
            "header_timeout_s": float(header_timeout_s),
            "body_timeout_s": float(body_timeout_s),
            "max_per_client": int(max_per_client),
            "open_per_client": Counter(),
        },
    )
