"""`/healthz` (liveness: the process answers, nothing else is asked) and `/readyz`
(readiness: runtime.health's checks).

Anyone sees whether the process is ready, and why not in one sentence; an admin (a token
with the `admin` role) also sees every component: database ping time, the design applied
to the database, pool use, the outbox's lag, the bus and its breaker, Redis.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from charpente.design.model import ADMIN_ROLE
from charpente.errors import DesignMismatch, Unavailable
from charpente.http.problems import PROBLEM_JSON, problem_response, request_id_of
from charpente.http.rest import JSON, caller_of, encode_json
from charpente.runtime.health import BEHIND, Health

__all__ = ["RETRY_AFTER", "health_routes"]

RETRY_AFTER = "5"  # seconds: about one probe interval
_OK = b'{"status":"ok"}'
_NO_STORE = {"Cache-Control": "no-store"}


def health_routes(health: Health) -> list[BaseRoute]:
    async def healthz(request: Request) -> Response:
        return Response(_OK, 200, _NO_STORE, JSON)

    async def readyz(request: Request) -> Response:
        found = await health.readiness()
        caller = caller_of(request)
        admin = caller.system or caller.role == ADMIN_ROLE
        if found.ready:
            body = encode_json({"status": "ok", "checks": found.details()}) if admin else _OK
            return Response(body, 200, _NO_STORE, JSON)
        kind = DesignMismatch if found.reason == BEHIND else Unavailable
        headers = {**_NO_STORE, "Retry-After": RETRY_AFTER}
        error = kind(detail=found.reason or "not ready", headers=headers)
        response = problem_response(error, request.url.path, request_id_of(request.scope))
        if not admin:
            return response
        problem = msgspec.json.decode(response.body)
        problem["checks"] = found.details()
        return Response(encode_json(problem), 503, headers, PROBLEM_JSON)

    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
