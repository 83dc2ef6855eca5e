// WebSocket client of t/600-websocket-clients.t with the npm "ws" package
// (installed in t/node: npm ci --prefix t/node).  Runs the session of
// t/ws/session.mjs and prints its summary as one JSON line on stdout, with
// what the handshake showed ("handshake": status, Stream-Id,
// Sec-WebSocket-Extensions, the negotiated extensions and subprotocol).
//
//   node t/ws/client.mjs '{"ws":"ws://127.0.0.1:PORT/ws?id=A",
//       "http":"http://127.0.0.1:PORT","name":"node","a":"A","b":"B",
//       "window":8,"pauseAt":20,"factor":1,"timeout":60}'
//
// Exit status 0 when the session ran (whatever it saw), 1 when it could not
// start.

import { createRequire } from 'node:module';

import { MessageQueue, session } from './session.mjs';

// "ws" lives in t/node/node_modules, not beside this file
const require = createRequire(new URL('../node/package.json', import.meta.url));
const WebSocket = require('ws');
const { version } = require('ws/package.json');

const opt = JSON.parse(process.argv[2] || '{}');
const F = opt.factor || 1;

const summary = { client: `ws ${version}`, node: process.version,
                  handshake: null };

const ws = new WebSocket(opt.ws, { handshakeTimeout: 10000 * F });
const q = new MessageQueue(ws);

ws.on('upgrade', (res) => {
    summary.handshake = {
        status: res.statusCode,
        streamId: res.headers['stream-id'] ?? null,
        extensionsHeader: res.headers['sec-websocket-extensions'] ?? null,
    };
});
ws.on('message', (data, isBinary) => {
    q.push(isBinary ? `binary frame: ${data.toString('hex')}`
                    : data.toString('utf8'));
});
ws.on('close', (code) => q.closed(code));

let failed = null;
ws.on('unexpected-response', (req, res) => {
    failed = `handshake answered ${res.statusCode}`;
    req.destroy();
});
ws.on('error', (e) => {
    failed ??= `error: ${e.message}`;
    q.closed(1006);
});

await new Promise((resolve) => {
    ws.once('open', resolve);
    ws.once('close', resolve);
    ws.once('error', resolve);
});

if (ws.readyState !== WebSocket.OPEN) {
    console.log(JSON.stringify({ ...summary, errors: [failed ?? 'no open'] }));
    process.exit(1);
}
summary.handshake = { ...summary.handshake, extensions: ws.extensions,
                      protocol: ws.protocol };

async function get(path) {
    const res = await fetch(opt.http + path,
                            { signal: AbortSignal.timeout(5000 * F) });
    const body = await res.text();
    return res.status === 200 ? body : null;
}

const env = {
    report: (step, data) => get(`/report?c=${encodeURIComponent(opt.name)}`
                                + `&s=${step}`
                                + `&d=${encodeURIComponent(JSON.stringify(data))}`),
    poll: async () => {
        const body = await get(`/go/${encodeURIComponent(opt.name)}.json`);
        return body === null ? null : JSON.parse(body);
    },
};

const result = await session(q, opt, env);
console.log(JSON.stringify({ ...summary, ...result }));
process.exit(0);
