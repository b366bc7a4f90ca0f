"""The ingest workers' small HTTP endpoint: ``/metrics`` for Prometheus, ``/healthz`` and
``/readyz`` for the kubelet.

The registrar and the Yanwen poller serve no API, so nothing else would expose the metrics
they record (docs/metrics.md). What "alive" means for them: their loop ticks. Each turn of
a worker's loop (a Kafka poll returned), each vendor call attempt and the end of each
back-off call :meth:`Heartbeat.tick`; ``/healthz`` answers 503 once the last tick is older
than ``VTR_WORKER_STALL_SECONDS`` (a loop stuck in a call or a blocked event loop), so the
kubelet restarts the worker. A broker or vendor outage does not stop the ticks (polls
return empty, calls fail and back off): a restart would not cure those, the worker's own
retries and metrics report them. ``/readyz`` answers 200 once the loop has ticked at least
once (connected to Kafka and running) and while it is alive.

The server runs in its own thread, not on the worker's event loop: a blocked event loop
then still gets an answer (503, from the age of its last tick) instead of a probe timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

from shared.observability import metrics_payload

log = logging.getLogger(__name__)


class Heartbeat:
    """When the worker's loop last made progress (monotonic clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started_at = clock()
        self._last_tick: float | None = None

    def tick(self) -> None:
        # One float assignment: atomic under the GIL, read by the server's thread.
        self._last_tick = self._clock()

    @property
    def ticked(self) -> bool:
        return self._last_tick is not None

    def seconds_since_progress(self) -> float:
        """Since the last tick, or since start-up before the first one (a worker that
        never gets going is as stalled as one that stopped)."""
        last = self._last_tick if self._last_tick is not None else self._started_at
        return self._clock() - last


#: The process's worker loop: one worker runs per process (``python -m services.ingest
#: registrar`` or ``poll-yanwen``), as the Prometheus metrics are per process too.
WORKER_LOOP = Heartbeat()


async def idle_until(stop: asyncio.Event, heartbeat: Heartbeat = WORKER_LOOP, every_seconds: float = 5.0) -> None:
    """Wait for ``stop``, ticking meanwhile: a worker with nothing to do is idle, not stalled."""
    while not stop.is_set():
        heartbeat.tick()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_seconds)


class WorkerHealthServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` in a daemon thread."""

    def __init__(self, host: str, port: int, heartbeat: Heartbeat, stall_seconds: float) -> None:
        self.heartbeat = heartbeat
        self.stall_seconds = stall_seconds
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="worker-health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("worker metrics and health endpoint listening", extra={"port": self.port})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def liveness(self) -> tuple[HTTPStatus, dict[str, object]]:
        since = round(self.heartbeat.seconds_since_progress(), 3)
        alive = since <= self.stall_seconds
        body: dict[str, object] = {"status": "ok" if alive else "stalled", "seconds_since_progress": since}
        return (HTTPStatus.OK if alive else HTTPStatus.SERVICE_UNAVAILABLE), body

    def readiness(self) -> tuple[HTTPStatus, dict[str, object]]:
        status, body = self.liveness()
        if status is HTTPStatus.OK and not self.heartbeat.ticked:
            return HTTPStatus.SERVICE_UNAVAILABLE, {**body, "status": "starting"}
        return status, body


def _handler_for(health: WorkerHealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "vtrwatch-worker"
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                payload, content_type = metrics_payload()
                self._answer(HTTPStatus.OK, payload, content_type)
            elif path in ("/healthz", "/readyz"):
                status, body = health.liveness() if path == "/healthz" else health.readiness()
                self._answer(status, orjson.dumps(body), "application/json")
            else:
                self._answer(HTTPStatus.NOT_FOUND, b'{"detail":"Not Found"}', "application/json")

        def _answer(self, status: HTTPStatus, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            # No access log: probes and scrapes every few seconds would drown the JSON logs.
            pass

    return Handler
