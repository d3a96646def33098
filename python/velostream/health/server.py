"""The health and metrics HTTP server (SPEC section 8).

:class:`HealthServer` answers, on a standard-library ``ThreadingHTTPServer`` (one thread
per request, so a blocked ``wait`` never holds up a scrape):

========================================  ==================================================
``GET  /health/tables``                   every table; 200 when all are ``READY``, else 503
``GET  /health/table/{name}``             one table; 404 when unknown
``GET  /health/progress``                 load progress of tables, statement counters
``POST /health/table/{name}/wait``        wait until ``READY`` (``?timeout=`` seconds)
``GET  /metrics``                         Prometheus text format (``prometheus_client``)
========================================  ==================================================

Bodies are JSON (``Content-Type: application/json``) except ``/metrics``; errors are JSON
objects with an ``"error"`` message. A request that fails inside the server is answered
500 and logged; it never stops the server. See ``docs/health.md`` for the status codes
and examples.
"""

from __future__ import annotations

import http.server
import json
import logging
import math
import socket
import threading
import time
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from velostream.errors import ConfigError, TableNotReadyError
from velostream.health.metrics import VelostreamCollector
from velostream.health.views import (
    ProgressCallable,
    StatementsCallable,
    progress_view,
    table_view,
    tables_view,
)
from velostream.tables.registry import TableHandle, TableRegistry

__all__ = [
    "DEFAULT_WAIT_TIMEOUT",
    "MAX_WAIT_TIMEOUT",
    "HealthServer",
    "parse_http_address",
]

_log = logging.getLogger(__name__)

#: Seconds ``POST /health/table/{name}/wait`` waits without ``?timeout=``.
DEFAULT_WAIT_TIMEOUT = 30.0
#: The longest ``?timeout=`` accepted (seconds); a longer one is answered 400.
MAX_WAIT_TIMEOUT = 300.0
#: A waiting request looks at the server's stop flag at least this often (seconds); the
#: registry wakes it at once on a status change.
_WAIT_SLICE = 0.25
#: Request bodies are not used; at most this many bytes of one are read and dropped.
_MAX_BODY = 64 * 1024

_JSON = "application/json"


def parse_http_address(text: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """Parse a listen address such as ``velostream run --http`` takes.

    ``":8080"`` and ``"8080"`` listen on ``default_host`` (loopback), ``"0.0.0.0:8080"``
    on every IPv4 interface, ``"[::1]:8080"`` on an IPv6 address; port 0 picks a free
    port.

    Args:
        text: ``[HOST]:PORT``, ``PORT`` or ``[IPV6]:PORT``.
        default_host: the host when ``text`` has none.

    Returns:
        ``(host, port)``.

    Raises:
        ConfigError: not an address of that shape, or a port outside 0-65535.

    """
    raw = text.strip() if isinstance(text, str) else ""
    host, sep, port_text = raw.rpartition(":")
    if not sep:
        host, port_text = "", raw
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address must be bracketed
        port_text = "x"
    try:
        port = int(port_text, 10)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(
            f"a listen address is [HOST]:PORT with a port from 0 to 65535 (e.g. ':8080', "
            f"'0.0.0.0:8080', '[::1]:8080'), not {text!r}",
            key="http",
            value=str(text),
        )
    return (host or default_host, port)


class _Stopped(Exception):
    """The server is stopping (a waiting request gives up)."""


class _HttpError(Exception):
    """A request answered with an error status and a JSON body."""

    def __init__(self, code: HTTPStatus, message: str, /, **fields: Any) -> None:
        super().__init__(message)
        self.code = code
        self.body: dict[str, Any] = {**fields, "error": message}
        self.headers: dict[str, str] = {}


class _Server(http.server.ThreadingHTTPServer):
    """One thread per request, daemon threads (a waiting request never blocks exit)."""

    daemon_threads = True
    allow_reuse_address = True
    health: HealthServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; a dropped client is routine.
        _log.debug("health server: request from %s failed", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes a request to the health server (one instance per request)."""

    server: _Server
    server_version = "velostream-health"
    # Idle or slow clients must not hold a thread for ever.
    timeout = 60

    # --------------------------------------------------------------- methods

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("health server: %s - " + format, self.address_string(), *args)

    # --------------------------------------------------------------- routing

    def _dispatch(self, method: str) -> None:
        try:
            self._drain_body()
            self._route(method)
        except _HttpError as error:
            self._send_json(error.code, error.body, error.headers)
        except (BrokenPipeError, ConnectionResetError):
            _log.debug("health server: client went away", exc_info=True)
        except Exception as error:  # a bug must not take the server down
            _log.exception("health server: %s %s failed", method, self.path)
            try:
                self._send_json(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    {"error": f"internal error: {type(error).__name__}: {error}"},
                )
            except OSError:
                pass

    def _drain_body(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and 0 < int(length) <= _MAX_BODY:
            self.rfile.read(int(length))

    def _route(self, method: str) -> None:
        health = self.server.health
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        segments = [unquote(s) for s in path.split("/")[1:]]
        query = parse_qs(parts.query, keep_blank_values=True)

        if path == "/health/tables":
            self._allow(method, "GET")
            view = tables_view(health.registry)
            status = HTTPStatus.OK if view["ready"] else HTTPStatus.SERVICE_UNAVAILABLE
            self._send_json(status, view)
        elif path == "/health/progress":
            self._allow(method, "GET")
            self._send_json(
                HTTPStatus.OK,
                progress_view(
                    health.registry, progress=health.progress, statements=health.statements
                ),
            )
        elif path == "/metrics":
            self._allow(method, "GET")
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(HTTPStatus.OK, encoder(health.collector_registry), content_type)
        elif len(segments) == 3 and segments[:2] == ["health", "table"] and segments[2]:
            self._allow(method, "GET")
            handle = health.registry.get(segments[2])
            if handle is None:
                raise _HttpError(
                    HTTPStatus.NOT_FOUND,
                    f"no table {segments[2]!r}",
                    name=segments[2],
                    status="unknown",
                )
            self._send_json(HTTPStatus.OK, table_view(handle))
        elif (
            len(segments) == 4
            and segments[:2] == ["health", "table"]
            and segments[2]
            and segments[3] == "wait"
        ):
            self._allow(method, "POST")
            self._wait(segments[2], _wait_timeout(query))
        else:
            raise _HttpError(
                HTTPStatus.NOT_FOUND,
                f"no such path {parts.path!r}: try /health/tables, /health/table/NAME, "
                "/health/progress, POST /health/table/NAME/wait or /metrics",
            )

    def _allow(self, method: str, allowed: str) -> None:
        if method != allowed:
            error = _HttpError(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{method} is not allowed on {urlsplit(self.path).path}: use {allowed}",
            )
            error.headers["Allow"] = allowed
            raise error

    def _wait(self, name: str, timeout: float) -> None:
        health = self.server.health
        try:
            handle = health._wait_for_table(name, timeout)
        except _Stopped:
            raise _HttpError(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "the health server is stopping",
                name=name,
                timeout=timeout,
            ) from None
        except TableNotReadyError as error:
            current = health.registry.get(name)
            view: dict[str, Any] = table_view(current) if current is not None else {"name": name}
            view["timeout"] = timeout
            if error.status == "unknown":
                view["status"] = "unknown"
                raise _HttpError(
                    HTTPStatus.NOT_FOUND,
                    f"no table {name!r} was registered within {timeout:g}s",
                    **view,
                ) from None
            if error.status == "failed":
                view["status"] = "failed"
                raise _HttpError(
                    HTTPStatus.CONFLICT,
                    view.get("error") or f"table {name!r} failed",
                    **{k: v for k, v in view.items() if k != "error"},
                ) from None
            raise _HttpError(
                HTTPStatus.REQUEST_TIMEOUT,
                f"table {name!r} is not ready after {timeout:g}s (status {error.status})",
                **{k: v for k, v in view.items() if k != "error"},
            ) from None
        self._send_json(HTTPStatus.OK, table_view(handle))

    # --------------------------------------------------------------- answers

    def _send_json(
        self, status: HTTPStatus, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        data = (json.dumps(body, allow_nan=False, sort_keys=False) + "\n").encode()
        self._send(status, data, _JSON, headers)

    def _send(
        self,
        status: HTTPStatus,
        data: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _wait_timeout(query: dict[str, list[str]]) -> float:
    """The ``timeout`` of a wait request, in seconds (400 when bad)."""
    unknown = sorted(set(query) - {"timeout"})
    if unknown:
        raise _HttpError(
            HTTPStatus.BAD_REQUEST,
            f"unknown query parameter {unknown[0]!r}: the wait takes only ?timeout=SECONDS",
        )
    values = query.get("timeout")
    if not values:
        return DEFAULT_WAIT_TIMEOUT
    if len(values) > 1:
        raise _HttpError(HTTPStatus.BAD_REQUEST, "give ?timeout= once")
    text = values[0]
    try:
        timeout = float(text)
    except ValueError:
        timeout = math.nan
    if not math.isfinite(timeout) or not 0 <= timeout <= MAX_WAIT_TIMEOUT:
        raise _HttpError(
            HTTPStatus.BAD_REQUEST,
            f"timeout is a number of seconds from 0 to {MAX_WAIT_TIMEOUT:g}, not {text!r}",
            timeout=text,
        )
    return timeout


class HealthServer:
    """The health and metrics HTTP server of a table registry (SPEC section 8).

    The socket is bound when the server is created (so a busy port fails at once);
    :meth:`start` serves it from a daemon thread. It listens on loopback unless told
    otherwise: the health API has no authentication.

    Example::

        registry = velostream.TableRegistry()
        with HealthServer(registry, port=8080) as server:
            print(server.url)  # http://127.0.0.1:8080
            ...

    Args:
        registry: the tables to report.
        host: the address to listen on (``"127.0.0.1"``; ``"0.0.0.0"`` for every IPv4
            interface, an IPv6 address such as ``"::1"`` too).
        port: the port (0: a free one, see :attr:`address`).
        progress: returns run-wide progress (a mapping), shown as ``run`` by
            ``GET /health/progress``.
        statements: returns ``{statement: counters}`` (mappings or dataclasses of numbers,
            optionally ``"lag": {source: records}``), shown by ``GET /health/progress``
            and exported as ``velostream_statement_<counter>_total`` by ``/metrics``.

    Attributes:
        registry: the tables.
        progress: the run-wide progress callable, or None.
        statements: the statements' counters callable, or None.
        collector_registry: the ``prometheus_client.CollectorRegistry`` ``/metrics``
            exposes (dedicated to this server; more collectors may be registered on it).

    Raises:
        ConfigError: the address cannot be listened on (in use, not local, bad port).

    """

    def __init__(
        self,
        registry: TableRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        progress: ProgressCallable | None = None,
        statements: StatementsCallable | None = None,
    ) -> None:
        if not isinstance(registry, TableRegistry):
            raise ConfigError(
                f"HealthServer needs a TableRegistry, not {type(registry).__name__}",
                key="registry",
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(
                f"port is an integer from 0 to 65535, not {port!r}", key="port", value=str(port)
            )
        for name, value in (("progress", progress), ("statements", statements)):
            if value is not None and not callable(value):
                raise ConfigError(f"{name} is a callable or None, not {value!r}", key=name)
        self.registry = registry
        self.progress = progress
        self.statements = statements
        self.collector_registry = CollectorRegistry(auto_describe=False)
        self.collector_registry.register(VelostreamCollector(registry, statements))
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        server_class = _Server6 if ":" in host else _Server
        try:
            self._server = server_class((host, port), _Handler)
        except (OSError, OverflowError, UnicodeError) as error:
            raise ConfigError(
                f"the health server cannot listen on {_format_address(host, port)}: {error}",
                key="http",
                value=_format_address(host, port),
            ) from error
        self._server.health = self

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> HealthServer:
        """Serve requests from a daemon thread (a no-op when already serving).

        Returns:
            This server.

        Raises:
            ConfigError: the server was stopped (create a new one).

        """
        if self._closed:
            raise ConfigError(
                "this health server was stopped: create a new HealthServer", key="http"
            )
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"velostream-health-{self.address[1]}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port (idempotent).

        Requests waiting for a table are answered 503 within a fraction of a second.
        """
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    @property
    def serving(self) -> bool:
        """Whether the server is started and not stopped."""
        return self._thread is not None and not self._closed

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the server listens on (the real port when created with 0)."""
        bound = self._server.server_address
        return (str(bound[0]), int(bound[1]))

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8080``."""
        host, port = self.address
        return f"http://{_format_address(host, port)}"

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "serving" if self.serving else ("stopped" if self._closed else "not started")
        return f"<HealthServer {self.url} {state}>"

    # ------------------------------------------------------------------ waiting

    def _wait_for_table(self, name: str, timeout: float) -> TableHandle:
        """``registry.wait_for_table_ready`` in slices, giving up when the server stops.

        Raises:
            TableNotReadyError: as ``wait_for_table_ready`` (``timeout`` is the whole wait).
            _Stopped: the server is stopping.

        """
        deadline = time.monotonic() + timeout
        while True:
            if self._stopping.is_set():
                raise _Stopped
            remaining = max(0.0, deadline - time.monotonic())
            try:
                return self.registry.wait_for_table_ready(name, min(remaining, _WAIT_SLICE))
            except TableNotReadyError as error:
                if error.status == "failed" or remaining <= _WAIT_SLICE:
                    raise TableNotReadyError(name, timeout, error.status) from error.__cause__


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
