"""A minimal FastAPI + httpx forwarding proxy, the peer of the orchestrator's forwarding in
`cargo xtask bench gateway`: every request under /api/ goes to the upstream with one shared,
pooled httpx.AsyncClient (keep-alive), and the JSON answer is wrapped in the same envelope.

Run: UPSTREAM=http://127.0.0.1:PORT uvicorn fastapi_proxy:app --port N --workers 1
"""

import os
import uuid

import httpx
from fastapi import FastAPI, Request, Response

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:5001")

client = httpx.AsyncClient(
    base_url=UPSTREAM,
    timeout=10.0,
    limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256),
)
app = FastAPI()


@app.api_route("/api/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
async def forward(path: str, request: Request) -> Response:
    request_id = uuid.uuid4().hex
    upstream = await client.request(
        request.method,
        "/" + path,
        params=request.query_params,
        content=await request.body(),
        headers={"x-request-id": request_id},
    )
    body = (
        b'{"success":true,"data":' + upstream.content + b',"error":null,"code":null,"request_id":"'
        + request_id.encode() + b'"}'
    )
    return Response(content=body, status_code=upstream.status_code, media_type="application/json")
