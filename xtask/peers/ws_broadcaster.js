// The Node `ws` broadcaster, a peer of the orchestrator's hub in `cargo xtask bench hub`.
// `ws` (npm) is the most used WebSocket server; this is the "Server broadcast" loop of its
// README on a plain `http` server that also takes the benchmark's POSTs. It speaks just enough
// of the orchestrator's client protocol for the same benchmark client: `auth` -> `auth_ok`,
// `subscribe` -> `subscribed`, then every event POSTed to /events (a JSON array) is serialised
// once and sent to each open, subscribed client. No token check, no topics, no replay, no
// per-client queues beyond ws's own. Defaults of ws 8 (no permessage-deflate).
//
// Run: NODE_PATH=target/bench-tools/node/node_modules PORT=N node ws_broadcaster.js

'use strict';

const http = require('http');
const { WebSocket, WebSocketServer } = require('ws');

const port = Number(process.env.PORT || 8080);
let seq = 0;
let nextId = 0;

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') {
    reply(res, 200, { status: 'ok' });
    return;
  }
  if (req.method === 'POST' && req.url === '/events') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let items;
      try {
        items = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        reply(res, 400, { success: false });
        return;
      }
      for (const item of items) {
        seq += 1;
        const data = JSON.stringify({ type: item.type, topic: item.topic, seq, data: item.data });
        // ws README, "Server broadcast": every open client (here: every subscribed one).
        wss.clients.forEach(function each(client) {
          if (client.readyState === WebSocket.OPEN && client.subscribed) {
            client.send(data, { binary: false });
          }
        });
      }
      reply(res, 200, { success: true, data: { accepted: items.length } });
    });
    return;
  }
  reply(res, 404, { success: false });
});

const wss = new WebSocketServer({ server, path: '/ws' });

wss.on('connection', function connection(ws) {
  ws.on('error', () => {});
  ws.on('message', function message(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    if (msg.type === 'auth') {
      nextId += 1;
      ws.send(JSON.stringify({ id: msg.id, type: 'auth_ok', client_id: String(nextId), ping_interval_ms: 25000 }));
    } else if (msg.type === 'subscribe') {
      ws.subscribed = true;
      ws.send(JSON.stringify({ id: msg.id, type: 'subscribed', topics: msg.topics }));
    }
  });
});

server.listen(port, '127.0.0.1', () => {
  console.log(`ws broadcaster listening on 127.0.0.1:${port}`);
});
