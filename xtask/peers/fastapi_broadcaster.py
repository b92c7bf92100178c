"""A minimal FastAPI/uvicorn WebSocket broadcaster, the peer of the orchestrator's hub in
`cargo xtask bench hub`. It speaks just enough of the orchestrator's client protocol for the
same benchmark client: `auth` -> `auth_ok`, `subscribe` -> `subscribed`, then every event
POSTed to /events (a JSON array) is serialised once and sent to each subscribed socket, the
way FastAPI's documented ConnectionManager does it (a loop of `await ws.send_text`).
No token check, no topics, no replay, no per-client queues.

Run: uvicorn fastapi_broadcaster:app --port N --workers 1
"""

import json

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect

app = FastAPI()
clients: set[WebSocket] = set()
seq = 0


@app.websocket("/ws")
async def ws_endpoint(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            msg = json.loads(await ws.receive_text())
            if msg.get("type") == "auth":
                await ws.send_text(json.dumps({"id": msg.get("id"), "type": "auth_ok", "client_id": str(id(ws))}))
            elif msg.get("type") == "subscribe":
                clients.add(ws)
                await ws.send_text(json.dumps({"id": msg.get("id"), "type": "subscribed", "topics": msg.get("topics")}))
    except WebSocketDisconnect:
        pass
    finally:
        clients.discard(ws)


@app.post("/events")
async def events(request: Request) -> dict:
    global seq
    items = await request.json()
    for item in items:
        seq += 1
        text = json.dumps({"type": item["type"], "topic": item.get("topic"), "seq": seq, "data": item["data"]})
        for ws in list(clients):
            try:
                await ws.send_text(text)
            except Exception:  # noqa: BLE001 (a closed socket just leaves)
                clients.discard(ws)
    return {"success": True, "data": {"accepted": len(items)}}


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}
