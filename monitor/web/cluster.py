"""`GET /api/v1/cluster` (SPEC 7, 9): who probes what, and who leads."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.web.guard import side_of


async def cluster(request: Request) -> Response:
    return JSONResponse(side_of(request).cluster())


ROUTES = [Route("/api/v1/cluster", cluster, methods=["GET"])]

OPENAPI = {"/api/v1/cluster": {"get": {
    "operationId": "cluster", "tags": ["read"],
    "summary": "Live cluster members, the checks each probes, the leader and its term",
    "responses": {"200": {"description": "The cluster as this instance sees it", "content": {
        "application/json": {"schema": {
            "type": "object", "required": ["members", "leader", "term"],
            "properties": {
                "members": {"type": "array", "items": {
                    "type": "object", "required": ["id", "checks", "last_seen"],
                    "properties": {"id": {"type": "string"}, "checks": {"type": "integer"},
                                   "last_seen": {"type": "string", "nullable": True,
                                                 "format": "date-time"}}}},
                "leader": {"type": "string", "nullable": True},
                "term": {"type": "integer"}}}}}}},
}}}
