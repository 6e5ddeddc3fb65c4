/**
 * WebSockets over HTTP/2 (RFC 8441, issue 20's bonus): the listener
 * announces SETTINGS_ENABLE_CONNECT_PROTOCOL; an extended CONNECT stream
 * (`:protocol websocket`) routed by `:authority` reaches a `ws` server as an
 * HTTP/1.1 Upgrade, and WebSocket frames pass both ways on the stream. A
 * refused upgrade keeps the backend's status; an unknown authority is a 404
 * on that stream only.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WebSocketServer } from 'ws';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';

/** A masked client text frame (RFC 6455 §5.2), payload under 126 bytes. */
function textFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = Buffer.from([1, 2, 3, 4]);
  const out = Buffer.alloc(6 + payload.length);
  out[0] = 0x81;
  out[1] = 0x80 | payload.length;
  mask.copy(out, 2);
  for (let i = 0; i < payload.length; i++) out[6 + i] = (payload[i] as number) ^ (mask[i % 4] as number);
  return out;
}

/** Reads one unmasked server text frame (payload under 126 bytes). */
function readFrame(stream: ClientHttp2Stream): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      if (buf.length < 2) return;
      const len = (buf[1] as number) & 0x7f;
      if (buf.length < 2 + len) return;
      stream.removeListener('data', onData);
      assert.equal(buf[0], 0x81);
      resolve(buf.toString('utf8', 2, 2 + len));
    };
    stream.on('data', onData);
    stream.once('error', reject);
  });
}

describe('WebSockets over HTTP/2 (RFC 8441)', () => {
  let backend: http.Server;
  let wss: WebSocketServer;
  let cli: RunningCli;
  let port = 0;
  const seen: string[] = [];
  const closed: string[] = [];

  before(async () => {
    backend = http.createServer((_req, res) => res.end('not a websocket'));
    wss = new WebSocketServer({ noServer: true, handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false) });
    backend.on('upgrade', (req, socket, head) => {
      if (req.url === '/forbidden') {
        socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n');
        return;
      }
      seen.push(`${String(req.url)} host=${String(req.headers.host)} xff=${String(req.headers['x-forwarded-for'])} origin=${String(req.headers.origin)}`);
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on('message', (data) => ws.send(`echo:${String(data)}`));
        ws.on('close', () => closed.push(String(req.url)));
      });
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    const file = await writeConfig({
      workers: 1,
      logLevel: 'error',
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { 'ws.test': `127.0.0.1:${(backend.address() as AddressInfo).port}` },
      listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 }],
    });
    cli = await startCli(['--config', file]);
    port = cli.port('web');
  });

  after(async () => {
    await cli?.stop();
    wss?.close();
    backend?.closeAllConnections();
    backend?.close();
  });

  async function connect(): Promise<ClientHttp2Session> {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const settings = await new Promise<http2.Settings>((resolve) => session.once('remoteSettings', resolve));
    assert.equal(settings.enableConnectProtocol, true);
    return session;
  }

  function open(session: ClientHttp2Session, authority: string, path: string): Promise<{ stream: ClientHttp2Stream; headers: IncomingHttpHeaders }> {
    return new Promise((resolve, reject) => {
      const stream = session.request(
        { ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'http', ':path': path, ':authority': authority, 'sec-websocket-version': '13', 'sec-websocket-protocol': 'chat, superchat', origin: 'http://ws.test' },
        { endStream: false },
      );
      stream.once('response', (headers) => resolve({ stream, headers }));
      stream.once('error', reject);
    });
  }

  it('an extended CONNECT reaches the ws backend as an Upgrade; frames pass both ways; closing the stream closes the backend socket', async () => {
    const session = await connect();
    try {
      const { stream, headers } = await open(session, 'ws.test', '/chat?room=1');
      assert.equal(headers[':status'], 200);
      assert.equal(headers['sec-websocket-protocol'], 'chat');
      assert.deepEqual(seen, ['/chat?room=1 host=ws.test xff=127.0.0.1 origin=http://ws.test']);
      const reply = readFrame(stream);
      stream.write(textFrame('hello'));
      assert.equal(await reply, 'echo:hello');
      const second = readFrame(stream);
      stream.write(textFrame('again'));
      assert.equal(await second, 'echo:again');
      stream.close();
      for (let i = 0; i < 100 && closed.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(closed, ['/chat?room=1']);
    } finally {
      session.close();
    }
  });

  it('a refused upgrade keeps its status; an unknown authority is 404 while another stream on the connection works', async () => {
    const session = await connect();
    try {
      const refused = await open(session, 'ws.test', '/forbidden');
      assert.equal(refused.headers[':status'], 403);
      refused.stream.resume();
      const [unknown, ok] = await Promise.all([open(session, 'nobody.test', '/'), open(session, 'ws.test', '/two')]);
      assert.equal(unknown.headers[':status'], 404);
      // Read like any client: a response left unread keeps the client's session (and the proxy's drain) waiting.
      unknown.stream.resume();
      assert.equal(ok.headers[':status'], 200);
      const reply = readFrame(ok.stream);
      ok.stream.write(textFrame('x'));
      assert.equal(await reply, 'echo:x');
      ok.stream.close();
    } finally {
      session.close();
    }
  });
});
