"""The fast path of ``GET /v1/sellers/{id}/vtr``: the common request answered at the ASGI
entry, from the read cache (``runtime/reads.py``)."""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec
from starlette.types import Receive, Scope, Send

from services.scorer.api.deps import UNKNOWN_SELLER
from services.scorer.runtime.reads import ScoreReads
from shared.credentials.access import KeyGate, Refusal
from shared.credentials.scopes import Scope as KeyScope
from shared.guard import target_is_clean
from shared.observability import HTTP_DURATION, HTTP_REQUESTS

#: The route template, as FastAPI and the metrics middleware name it.
VTR_ROUTE = "/v1/sellers/{seller_id}/vtr"
#: The seller ids the route accepts (``SellerId`` in api/deps.py); anything else goes to FastAPI.
_VTR_PATH = re.compile(r"/v1/sellers/([\w.:@-]{1,128})/vtr")
_JSON = msgspec.json.Encoder()


class VtrFastPath:
    """``GET /v1/sellers/{id}/vtr`` without a query string, answered at the ASGI entry.

    FastAPI's layers (error middleware, route matching, dependency solving for the path
    parameter and the bearer token, the metrics middleware) cost more than a cached answer
    itself. This serves the common request directly, with the same checks (the routes' key
    gate: a valid key with ``scores:read`` for this seller, within its rate limit; the
    seller id pattern) and the same ``vtr_http_*`` series; anything else (another id,
    ``?as_of=``) goes through FastAPI, whose route calls the same :meth:`ScoreReads.answer`.
    """

    def __init__(self, reads: ScoreReads, gate: KeyGate) -> None:
        self._reads = reads
        self._gate = gate
        self._requests: dict[int, Any] = {}
        self._duration = HTTP_DURATION.labels(VTR_ROUTE, "GET")

    def matches(self, scope: Scope) -> str | None:
        """The seller id if this request is one the fast path serves, else None."""
        if scope["method"] != "GET" or scope["query_string"]:
            return None
        if not target_is_clean(scope):  # the decoding guard every other route gets from EdgeGuard
            return None
        match = _VTR_PATH.fullmatch(scope["path"])
        return None if match is None else match.group(1)

    @staticmethod
    def _authorization(scope: Scope) -> bytes | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return bytes(value)
        return None

    async def serve(self, seller_id: str, scope: Scope, send: Send) -> bool:
        """Answer, or return False without sending anything when the answer cannot be had
        here (a database that is down or not migrated): FastAPI's route then answers with
        the service's error handling (503 and why), like every other route."""
        started = time.perf_counter()
        outcome = self._gate.check(self._authorization(scope), KeyScope.SCORES_READ, seller_id, UNKNOWN_SELLER)
        headers: list[tuple[bytes, bytes]] = []
        if isinstance(outcome, Refusal):
            status, body = outcome.status, _JSON.encode({"detail": outcome.detail})
            headers = [(name.lower().encode(), value.encode()) for name, value in (outcome.headers or {}).items()]
        else:
            try:
                answer = await self._reads.answer(seller_id, self._reads.today())
            except Exception:
                return False
            status, body = (404, _JSON.encode({"detail": UNKNOWN_SELLER})) if answer is None else (200, answer)
        try:
            headers += [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            counter = self._requests.get(status)
            if counter is None:
                counter = self._requests[status] = HTTP_REQUESTS.labels(VTR_ROUTE, "GET", str(status))
            counter.inc()
            self._duration.observe(time.perf_counter() - started)
        return True


async def dispatch(fast_path: VtrFastPath, scope: Scope, receive: Receive, send: Send) -> bool:
    """Serve the request if it is the fast path's; returns whether it did."""
    if scope["type"] != "http":
        return False
    seller_id = fast_path.matches(scope)
    if seller_id is None:
        return False
    return await fast_path.serve(seller_id, scope, send)
