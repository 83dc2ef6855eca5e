#!/usr/bin/python3
"""WebSocket client of t/600-websocket-clients.t with Python's "websockets"
(Debian's python3-websockets, its asyncio client).

The same session as t/ws/session.mjs (keep the two in step): one socket,
stream A subscribed by the URL, B by a "request" subscribe; acks held until
a full window of each plus 300 ms, then every chunk acked as it arrives; B
paused at chunk pauseAt, step "paused" reported (GET /report?...), the
test's go-ahead polled (GET /go/NAME.json -> {"aUntil": n}), B resumed after
A's chunk n, step "resumed" reported; both streams read to their end; the
socket closed with 1000.  Prints the summary (the shape session.mjs
describes, plus "handshake") as one JSON line on stdout.

    python3 t/ws/client.py '{"ws":"ws://127.0.0.1:PORT/ws?id=A",
        "http":"http://127.0.0.1:PORT","name":"python","a":"A","b":"B",
        "window":8,"pauseAt":20,"factor":1,"timeout":60}'

Exit status 0 when the session ran (whatever it saw), 1 when it could not
start.
"""

import asyncio
import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib

import websockets


class Failed(Exception):
    pass


class Session:
    def __init__(self, ws, opt):
        self.ws = ws
        self.opt = opt
        self.f = opt.get('factor') or 1
        self.a, self.b = opt['a'], opt['b']
        self.deadline = time.monotonic() + opt['timeout'] * self.f
        self.auto_ack = False
        self.out = {'errors': [], 'responses': {}, 'ackAnswers': [],
                    'hold': None, 'closeCode': None, 'streams': {}}
        self.ack_ids = {}
        self.st = {}
        for sid in (self.a, self.b):
            self.st[sid] = {'init': None, 'log': [], 'chunks': [],
                            'statuses': [], 'end': None, 'last': 0,
                            'acked': 0, 'maxUnacked': 0, 'paused': False,
                            'whilePaused': [], 'whileOtherPaused': [],
                            'done': False, 'subscriberId': None}

    async def send(self, msg):
        await self.ws.send(json.dumps(msg, ensure_ascii=False))

    async def ack(self, sid):
        s = self.st[sid]
        if s['last'] <= s['acked']:
            return
        p = {'streamId': sid, 'command': 'ack', 'sequence': s['last']}
        if s['subscriberId'] is not None:
            p['subscriberId'] = s['subscriberId']
        mid = 'ack-%s-%d' % (sid, s['last'])
        self.ack_ids[mid] = sid
        await self.send({'type': 'stream-control', 'id': mid, 'payload': p})
        s['acked'] = s['last']

    async def handle(self, text):
        errors = self.out['errors']
        if isinstance(text, bytes):
            errors.append('binary frame: ' + text.hex())
            return
        try:
            m = json.loads(text)
        except ValueError:
            errors.append('not JSON: ' + text[:200])
            return
        p = m.get('payload') or {}
        if m.get('type') == 'response':
            cid = m.get('correlationId')
            if cid in self.ack_ids:
                # an ack is answered only when it failed
                self.out['ackAnswers'].append({
                    'id': cid, 'success': p.get('success'),
                    'code': (p.get('error') or {}).get('code'),
                    'afterEnd': self.st[self.ack_ids[cid]]['done']})
                return
            if cid in self.out['responses']:
                errors.append('a second response for %s' % cid)
            self.out['responses'][cid] = {'correlationId': cid, 'payload': p}
            return
        sid = p.get('streamId')
        s = self.st.get(sid)
        if s is None:
            errors.append('%s for stream %s' % (m.get('type'), sid))
            return
        if s['done']:
            errors.append('%s after the end of %s' % (m.get('type'), sid))
        if m.get('type') == 'stream-init':
            s['init'] = p
            s['log'].append('init')
            md = p.get('metadata') or {}
            if 'subscriberId' in md:
                s['subscriberId'] = md['subscriberId']
        elif m.get('type') == 'stream-chunk':
            enc = p.get('encoding')
            data = p.get('data')
            try:
                if not isinstance(data, str):
                    raise Failed('data is not a string')
                if enc is None:
                    raw = data.encode('utf-8')
                elif enc == 'base64':
                    raw = base64.b64decode(data, validate=True)
                else:
                    raise Failed('unknown encoding %r' % enc)
            except (Failed, ValueError, UnicodeError) as e:
                errors.append('chunk %s: %s' % (p.get('sequence'), e))
                raw = b''
            crc = '%08x' % zlib.crc32(raw)
            final = p.get('isFinal') is True
            s['chunks'].append({'s': p.get('sequence'), 'h': raw.hex(),
                                'c': p.get('checksum'),
                                'ok': crc == p.get('checksum'),
                                'e': enc, 'f': final})
            if final:
                s['log'].append('final %s' % p.get('sequence'))
                return
            s['log'].append(str(p.get('sequence')))
            if s['paused']:
                s['whilePaused'].append(p.get('sequence'))
            if self.st[self.b if sid == self.a else self.a]['paused']:
                s['whileOtherPaused'].append(p.get('sequence'))
            s['last'] = p.get('sequence')
            s['maxUnacked'] = max(s['maxUnacked'], s['last'] - s['acked'])
            if self.auto_ack:
                await self.ack(sid)
        elif m.get('type') == 'stream-status':
            status = p.get('status')
            s['statuses'].append(status)
            s['log'].append(str(status))
            if status == 'paused':
                s['paused'] = True
            elif status == 'active':
                s['paused'] = False
            else:
                s['done'] = True
                s['end'] = p
        else:
            errors.append('unexpected message type %s' % m.get('type'))

    async def pump(self, secs):
        """Handles what arrives within secs (at most one message)."""
        left = max(0.0, min(secs, self.deadline - time.monotonic()))
        try:
            text = await asyncio.wait_for(self.ws.recv(), left)
        except asyncio.TimeoutError:
            return
        except websockets.ConnectionClosed as e:
            raise Failed('the server closed the socket (%s)'
                         % (e.rcvd.code if e.rcvd else 'no close frame'))
        await self.handle(text)

    async def until(self, what, cond, secs):
        end = min(self.deadline, time.monotonic() + secs * self.f)
        while not cond():
            if time.monotonic() >= end:
                raise Failed('timed out waiting for ' + what)
            await self.pump(end - time.monotonic())

    async def response(self, cid):
        rs = self.out['responses']
        await self.until('the response to ' + cid, lambda: cid in rs, 10)
        r = rs[cid]['payload']
        if r.get('success') is not True:
            raise Failed('%s failed: %s' % (cid, json.dumps(r)))
        return r

    async def get(self, path):
        def fetch():
            try:
                with urllib.request.urlopen(self.opt['http'] + path,
                                            timeout=5 * self.f) as res:
                    return res.read().decode('utf-8')
            except urllib.error.HTTPError:
                return None
        return await asyncio.to_thread(fetch)

    async def report(self, step, data):
        q = urllib.parse.quote
        await self.get('/report?c=%s&s=%s&d=%s'
                       % (q(self.opt['name'], safe=''), step,
                          q(json.dumps(data), safe='')))

    async def run(self):
        a, b, st, f = self.a, self.b, self.st, self.f
        w = self.opt['window']
        await self.until('the stream-init of ' + a,
                         lambda: st[a]['init'] is not None, 10)

        await self.send({'type': 'request', 'id': 'r1',
                         'payload': {'action': 'subscribe',
                                     'params': {'streamId': b,
                                                'fromSequence': 0}}})
        r1 = await self.response('r1')
        data = r1.get('data') or {}
        if 'subscriberId' in data:
            st[b]['subscriberId'] = data['subscriberId']

        # no ack yet: the window must stop both streams at w chunks
        await self.until('a full window of both streams',
                         lambda: (st[b]['init'] is not None
                                  and st[a]['last'] >= w
                                  and st[b]['last'] >= w), 10)
        quiet = time.monotonic() + 0.3 * f
        while time.monotonic() < quiet:
            await self.pump(quiet - time.monotonic())
        self.out['hold'] = {a: st[a]['last'], b: st[b]['last']}
        self.auto_ack = True
        await self.ack(a)
        await self.ack(b)

        pause_at = self.opt['pauseAt']
        await self.until('chunk %d of %s' % (pause_at, b),
                         lambda: st[b]['last'] >= pause_at, 10)
        await self.send({'type': 'stream-control', 'id': 'p1',
                         'payload': {'streamId': b, 'command': 'pause'}})
        await self.response('p1')
        await self.until('stream-status paused of ' + b,
                         lambda: st[b]['paused'], 10)
        await self.report('paused', {a: st[a]['last'], b: st[b]['last']})

        # the publisher's go-ahead: A goes on while B is paused
        go = None
        go_end = min(self.deadline, time.monotonic() + 30 * f)
        while go is None:
            if time.monotonic() >= go_end:
                raise Failed('timed out waiting for the go-ahead')
            body = await self.get('/go/%s.json'
                                  % urllib.parse.quote(self.opt['name']))
            if body is None:
                await self.pump(0.1)
            else:
                go = json.loads(body)
        await self.until('chunk %d of %s' % (go['aUntil'], a),
                         lambda: st[a]['last'] >= go['aUntil'], 10)

        await self.send({'type': 'stream-control', 'id': 'c2',
                         'payload': {'streamId': b, 'command': 'resume'}})
        await self.response('c2')
        await self.until('stream-status active of ' + b,
                         lambda: 'active' in st[b]['statuses'], 10)
        await self.report('resumed', {a: st[a]['last'], b: st[b]['last']})

        await self.until('the end of both streams',
                         lambda: st[a]['done'] and st[b]['done'], 30)

    def summary(self):
        for sid in (self.a, self.b):
            s = self.st[sid]
            self.out['streams'][sid] = {
                k: s[k] for k in ('init', 'log', 'chunks', 'maxUnacked',
                                  'whilePaused', 'whileOtherPaused', 'end')}
        return self.out


async def main(opt):
    f = opt.get('factor') or 1
    summary = {'client': 'python websockets %s' % websockets.__version__,
               'python': sys.version.split()[0], 'handshake': None}
    try:
        # the defaults of a real client: permessage-deflate offered, pings
        # every 20 s
        ws = await websockets.connect(opt['ws'], open_timeout=10 * f,
                                      close_timeout=5 * f)
    except Exception as e:
        summary['errors'] = ['connect: %r' % e]
        print(json.dumps(summary))
        return 1
    summary['handshake'] = {
        'status': 101,
        'streamId': ws.response_headers.get('Stream-Id'),
        'extensionsHeader': ws.response_headers.get(
            'Sec-WebSocket-Extensions'),
        'extensions': ', '.join(e.name for e in ws.extensions),
        'protocol': ws.subprotocol or '',
    }
    s = Session(ws, opt)
    try:
        await s.run()
    except Exception as e:
        s.out['errors'].append(str(e) if isinstance(e, Failed) else repr(e))
    try:
        await ws.close(1000)
        await asyncio.wait_for(ws.wait_closed(), 5 * f)
        s.out['closeCode'] = ws.close_code
    except Exception as e:
        s.out['errors'].append('close: %r' % e)
    summary.update(s.summary())
    print(json.dumps(summary))
    return 0


if __name__ == '__main__':
    sys.exit(asyncio.run(main(json.loads(sys.argv[1]))))
