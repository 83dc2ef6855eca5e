// The WebSocket session of t/600-websocket-clients.t for the JavaScript
// clients: Node with the npm "ws" package (t/ws/client.mjs) and a browser's
// own WebSocket (t/ws/client.html, headless Chromium).  t/ws/client.py is
// the same session for Python's "websockets"; keep the three in step.
//
// One socket, two streams: A is subscribed by the URL (?id=A), B by a
// "request" subscribe.  The session
//   1. holds its acks until it has `window` chunks of each stream and then
//      300 ms more (so a window that is not enforced shows), then acks every
//      chunk as it arrives;
//   2. pauses B once it has B's chunk `pauseAt` and reports the step
//      "paused" to the test (GET /report?c=NAME&s=paused&d=JSON);
//   3. polls the test's go-ahead (GET /go/NAME.json -> {"aUntil": n}), waits
//      for A's chunk n (published while B is paused), resumes B and reports
//      "resumed";
//   4. reads both streams to their end (final isFinal chunk, then the final
//      stream-status) and closes the socket with 1000.
// It checks nothing against expectations but the CRC-32 of each chunk: it
// records what it saw (summary below) and the test judges it.

const CRC_TABLE = (() => {
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
        let c = n;
        for (let k = 0; k < 8; k++) {
            c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
        }
        t[n] = c >>> 0;
    }
    return t;
})();

// CRC-32 (IEEE 802.3, zlib's crc32) as 8 lowercase hex digits
export function crc32(bytes) {
    let c = 0xffffffff;
    for (const b of bytes) {
        c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
    }
    return ((c ^ 0xffffffff) >>> 0).toString(16).padStart(8, '0');
}

function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// the bytes a stream-chunk carries
function bytesOf(p) {
    if (typeof p.data !== 'string') {
        throw new Error(`chunk ${p.sequence}: data is not a string`);
    }
    if (p.encoding === undefined || p.encoding === null) {
        return new TextEncoder().encode(p.data);
    }
    if (p.encoding === 'base64') {
        return Uint8Array.from(atob(p.data), (ch) => ch.charCodeAt(0));
    }
    throw new Error(`chunk ${p.sequence}: unknown encoding ${p.encoding}`);
}

// conn: { next(ms) -> Promise<text | null (nothing within ms)>, throws once
//         the socket is closed; send(text); close(code, factor) -> Promise<the
//         close code the server answered (null: none within 5 s
//         times factor)> }
// env:  { report(step, data) -> Promise; poll() -> Promise<object | null> }
// opt:  { a, b, window, pauseAt, factor, timeout (seconds) }
//
// Returns the summary: { errors: [...], responses: { correlationId:
// { correlationId, payload } } (but for acks), ackAnswers: [{ id, success,
// code, afterEnd (the stream's end had arrived before the answer) }],
// hold: { A: n, B: n }, closeCode,
// streams: { id: { init, log: ["init", "1", ..., "paused", ...,
// "final 41", "completed"], chunks: [{ s, h (hex bytes), c (checksum sent),
// ok (CRC matches), e (encoding), f (isFinal) }], maxUnacked, whilePaused
// and whileOtherPaused (the sequences that arrived while this stream / the
// other one was paused), end (final stream-status payload) } } }
export async function session(conn, opt, env) {
    const F = opt.factor || 1;
    const W = opt.window;
    const { a, b } = opt;
    const deadline = Date.now() + opt.timeout * 1000 * F;
    const out = { errors: [], responses: {}, ackAnswers: [], hold: null,
                  closeCode: null, streams: {} };
    const ackIds = {};
    const st = {};
    for (const id of [a, b]) {
        st[id] = { init: null, log: [], chunks: [], statuses: [], end: null,
                   last: 0, acked: 0, maxUnacked: 0, paused: false,
                   whilePaused: [], whileOtherPaused: [], done: false,
                   subscriberId: null };
    }
    let autoAck = false;

    function send(msg) {
        conn.send(JSON.stringify(msg));
    }

    function ack(id) {
        const s = st[id];
        if (s.last <= s.acked) {
            return;
        }
        const p = { streamId: id, command: 'ack', sequence: s.last };
        if (s.subscriberId !== null) {
            p.subscriberId = s.subscriberId;
        }
        const mid = `ack-${id}-${s.last}`;
        ackIds[mid] = id;
        send({ type: 'stream-control', id: mid, payload: p });
        s.acked = s.last;
    }

    function handle(text) {
        let m;
        try {
            m = JSON.parse(text);
        } catch (e) {
            out.errors.push(`not JSON: ${String(text).slice(0, 200)}`);
            return;
        }
        const p = m.payload || {};
        if (m.type === 'response') {
            const id = m.correlationId;
            if (id in ackIds) {
                // an ack is answered only when it failed
                out.ackAnswers.push({ id, success: p.success,
                                      code: (p.error || {}).code ?? null,
                                      afterEnd: st[ackIds[id]].done });
                return;
            }
            if (id in out.responses) {
                out.errors.push(`a second response for ${id}`);
            }
            out.responses[id] = { correlationId: id, payload: p };
            return;
        }
        const s = st[p.streamId];
        if (!s) {
            out.errors.push(`${m.type} for stream ${p.streamId}`);
            return;
        }
        if (s.done) {
            out.errors.push(`${m.type} after the end of ${p.streamId}`);
        }
        if (m.type === 'stream-init') {
            s.init = p;
            s.log.push('init');
            const md = p.metadata || {};
            if (md.subscriberId !== undefined) {
                s.subscriberId = md.subscriberId;
            }
        } else if (m.type === 'stream-chunk') {
            let bytes;
            try {
                bytes = bytesOf(p);
            } catch (e) {
                out.errors.push(String(e.message || e));
                bytes = new Uint8Array(0);
            }
            s.chunks.push({ s: p.sequence, h: hex(bytes), c: p.checksum,
                            ok: crc32(bytes) === p.checksum,
                            e: p.encoding ?? null, f: p.isFinal === true });
            if (p.isFinal === true) {
                s.log.push(`final ${p.sequence}`);
                return;
            }
            s.log.push(String(p.sequence));
            if (s.paused) {
                s.whilePaused.push(p.sequence);
            }
            if (st[p.streamId === a ? b : a].paused) {
                s.whileOtherPaused.push(p.sequence);
            }
            s.last = p.sequence;
            s.maxUnacked = Math.max(s.maxUnacked, s.last - s.acked);
            if (autoAck) {
                ack(p.streamId);
            }
        } else if (m.type === 'stream-status') {
            s.statuses.push(p.status);
            s.log.push(String(p.status));
            if (p.status === 'paused') {
                s.paused = true;
            } else if (p.status === 'active') {
                s.paused = false;
            } else {
                s.done = true;
                s.end = p;
            }
        } else {
            out.errors.push(`unexpected message type ${m.type}`);
        }
    }

    // handles what arrives within ms (at most one message)
    async function pump(ms) {
        const left = Math.max(0, Math.min(ms, deadline - Date.now()));
        const text = await conn.next(left);
        if (text !== null) {
            handle(text);
        }
    }

    // handles messages until cond() holds; throws after ms (times F)
    async function until(what, cond, ms) {
        const end = Math.min(deadline, Date.now() + ms * F);
        while (!cond()) {
            if (Date.now() >= end) {
                throw new Error(`timed out waiting for ${what}`);
            }
            await pump(end - Date.now());
        }
    }

    // waits for the response to the message with this id; throws unless
    // it says success
    async function response(id) {
        await until(`the response to ${id}`, () => out.responses[id], 10000);
        const r = out.responses[id].payload;
        if (r.success !== true) {
            throw new Error(`${id} failed: ${JSON.stringify(r)}`);
        }
        return r;
    }

    try {
        await until(`the stream-init of ${a}`, () => st[a].init, 10000);

        send({ type: 'request', id: 'r1',
               payload: { action: 'subscribe',
                          params: { streamId: b, fromSequence: 0 } } });
        const r1 = await response('r1');
        if (r1.data && r1.data.subscriberId !== undefined) {
            st[b].subscriberId = r1.data.subscriberId;
        }

        // no ack yet: the window must stop both streams at W chunks
        await until('a full window of both streams',
                    () => st[b].init && st[a].last >= W && st[b].last >= W,
                    10000);
        const quiet = Date.now() + 300 * F;
        while (Date.now() < quiet) {
            await pump(quiet - Date.now());
        }
        out.hold = { [a]: st[a].last, [b]: st[b].last };
        autoAck = true;
        ack(a);
        ack(b);

        await until(`chunk ${opt.pauseAt} of ${b}`,
                    () => st[b].last >= opt.pauseAt, 10000);
        send({ type: 'stream-control', id: 'p1',
               payload: { streamId: b, command: 'pause' } });
        await response('p1');
        await until(`stream-status paused of ${b}`, () => st[b].paused, 10000);
        await env.report('paused', { [a]: st[a].last, [b]: st[b].last });

        // the publisher's go-ahead: A goes on while B is paused
        let go = null;
        const goEnd = Math.min(deadline, Date.now() + 30000 * F);
        while (!go) {
            if (Date.now() >= goEnd) {
                throw new Error('timed out waiting for the go-ahead');
            }
            go = await env.poll();
            if (!go) {
                await pump(100);
            }
        }
        await until(`chunk ${go.aUntil} of ${a}`,
                    () => st[a].last >= go.aUntil, 10000);

        send({ type: 'stream-control', id: 'c2',
               payload: { streamId: b, command: 'resume' } });
        await response('c2');
        await until(`stream-status active of ${b}`,
                    () => st[b].statuses.includes('active'), 10000);
        await env.report('resumed', { [a]: st[a].last, [b]: st[b].last });

        await until('the end of both streams',
                    () => st[a].done && st[b].done, 30000);
    } catch (e) {
        out.errors.push(String(e.message || e));
    }

    try {
        out.closeCode = await conn.close(1000, F);
    } catch (e) {
        out.errors.push(`close: ${e.message || e}`);
    }

    for (const id of [a, b]) {
        const s = st[id];
        out.streams[id] = { init: s.init, log: s.log, chunks: s.chunks,
                            maxUnacked: s.maxUnacked,
                            whilePaused: s.whilePaused,
                            whileOtherPaused: s.whileOtherPaused,
                            end: s.end };
    }
    return out;
}

// A queue of received text messages over an event-driven WebSocket (the
// browser's and the "ws" package's have the same shape once wrapped):
// push(text) from the message handler, closed(code) from the close
// handler; next() and close() as session() wants them.
export class MessageQueue {
    constructor(socket) {
        this.socket = socket;
        this.items = [];
        this.wake = null;
        this.closeCode = null;
        this.onClose = [];
    }

    push(text) {
        this.items.push(text);
        this.notify();
    }

    closed(code) {
        this.closeCode = code;
        this.notify();
        for (const f of this.onClose.splice(0)) {
            f(code);
        }
    }

    notify() {
        if (this.wake) {
            const w = this.wake;
            this.wake = null;
            w();
        }
    }

    async next(ms) {
        if (!this.items.length && this.closeCode === null && ms > 0) {
            await new Promise((resolve) => {
                const timer = setTimeout(() => {
                    this.wake = null;
                    resolve();
                }, ms);
                this.wake = () => {
                    clearTimeout(timer);
                    resolve();
                };
            });
        }
        if (this.items.length) {
            return this.items.shift();
        }
        if (this.closeCode !== null) {
            throw new Error(`the server closed the socket (${this.closeCode})`);
        }
        return null;
    }

    send(text) {
        this.socket.send(text);
    }

    // resolves with the close code the server answered, or null after 5 s
    close(code, factor = 1) {
        if (this.closeCode !== null) {
            return Promise.resolve(this.closeCode);
        }
        return new Promise((resolve) => {
            const timer = setTimeout(() => resolve(null), 5000 * factor);
            this.onClose.push((c) => {
                clearTimeout(timer);
                resolve(c);
            });
            this.socket.close(code);
        });
    }
}
