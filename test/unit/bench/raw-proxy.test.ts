/**
 * bench/lib/raw-proxy.ts (the "Node floor" benchmark anchor): a round trip,
 * EOF propagation both ways (half-close), 16 MB each way through it while
 * the receivers are paused (backpressure: the proxy must stop reading and
 * keep the queued bytes intact) and a refused backend closing the client.
 * Tests bench/lib, not a src file: this mirrors bench/ instead.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

const SCRIPT = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..', 'bench', 'lib', 'raw-proxy.ts');

let backend: net.Server;
let proxy: ChildProcess;
let proxyPort = 0;
/** Backend-side sockets, in accept order. */
const accepted: net.Socket[] = [];
const waiting: Array<(s: net.Socket) => void> = [];
const open: net.Socket[] = [];

function nextAccepted(): Promise<net.Socket> {
  const s = accepted.shift();
  return s !== undefined ? Promise.resolve(s) : new Promise((resolve) => waiting.push(resolve));
}

/** Client socket through the proxy plus the backend's side of it. */
async function connect(): Promise<[net.Socket, net.Socket]> {
  const client = net.connect({ host: '127.0.0.1', port: proxyPort, allowHalfOpen: true });
  open.push(client);
  await once(client, 'connect');
  return [client, await nextAccepted()];
}

function readAll(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
  });
}

/** Resolves once `socket` has closed (at once if it already has). */
const closed = (socket: net.Socket): Promise<unknown> => (socket.closed ? Promise.resolve() : once(socket, 'close'));
/**
 * Per direction: more than the loopback socket buffers between writer and
 * paused receiver hold (net.ipv4.tcp_wmem's maximum is 4 MB by default), so
 * the proxy's writes go async and it has to stop reading.
 */
const MB = 16;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts bench/lib/raw-proxy.ts in front of 127.0.0.1:backendPort; resolves with its port once ready. */
async function startProxy(backendPort: number): Promise<[ChildProcess, number]> {
  const child = spawn(process.execPath, [SCRIPT, '--backend', `127.0.0.1:${backendPort}`, '--port', '0'], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout?.setEncoding('utf8');
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`raw-proxy exited (${code})`)));
    child.stdout?.on('data', (d: string) => {
      out += d;
      const line = out.split('\n').find((l) => l.includes('"type":"ready"'));
      if (line !== undefined) resolve((JSON.parse(line) as { port: number }).port);
    });
  });
  return [child, port];
}

before(async () => {
  backend = net.createServer({ allowHalfOpen: true }, (s) => {
    open.push(s);
    const w = waiting.shift();
    if (w !== undefined) w(s);
    else accepted.push(s);
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const { port } = backend.address() as AddressInfo;
  [proxy, proxyPort] = await startProxy(port);
});

after(async () => {
  for (const s of open) s.destroy();
  proxy.stdin?.end(); // the proxy exits when its stdin closes
  if (proxy.exitCode === null) await once(proxy, 'exit');
  await new Promise<void>((resolve) => backend.close(() => resolve()));
});

describe('bench raw-proxy (Node floor anchor)', () => {
  it('relays a round trip', async () => {
    const [client, server] = await connect();
    client.write('ping');
    const [req] = (await once(server, 'data')) as [Buffer];
    assert.equal(req.toString(), 'ping');
    server.write('pong');
    const [res] = (await once(client, 'data')) as [Buffer];
    assert.equal(res.toString(), 'pong');
    // `once` removed the only 'data' listeners: flow again so 'end' is seen.
    client.resume();
    server.resume();
    client.end();
    await once(server, 'end'); // the client's FIN reached the backend…
    server.end();
    await once(client, 'end'); // …and the backend's the client
    await Promise.all([closed(client), closed(server)]);
  });

  it('propagates EOF each way (half-close) and closes once both sides ended', async () => {
    const [client, server] = await connect();
    const clientGot = readAll(client);
    server.end('bye');
    assert.equal((await clientGot).toString(), 'bye');
    // The client → backend direction is still open.
    const serverGot = readAll(server);
    client.end('late');
    assert.equal((await serverGot).toString(), 'late');
    await Promise.all([closed(client), closed(server)]);
  });

  it(`relays ${MB} MB each way intact while the receivers are paused (backpressure)`, async () => {
    const [client, server] = await connect();
    const up = randomBytes(MB * 1024 * 1024);
    const down = randomBytes(MB * 1024 * 1024);
    server.pause();
    client.pause();
    // In 64 KB writes: writableLength then shows how much is still queued.
    for (let i = 0; i < up.length; i += 65536) client.write(up.subarray(i, i + 65536));
    for (let i = 0; i < down.length; i += 65536) server.write(down.subarray(i, i + 65536));
    await sleep(300);
    // Nobody reads: the proxy must have stopped reading as well (a proxy that
    // kept reading would queue everything and the writers would drain), and
    // resume once the receivers read.
    assert.ok(client.writableLength > 0, `client → backend: ${client.writableLength} bytes still queued at the client`);
    assert.ok(server.writableLength > 0, `backend → client: ${server.writableLength} bytes still queued at the backend`);
    const serverGot = readAll(server);
    const clientGot = readAll(client);
    client.end();
    server.end();
    server.resume();
    client.resume();
    const [atServer, atClient] = await Promise.all([serverGot, clientGot]);
    assert.equal(atServer.length, up.length);
    assert.equal(sha(atServer), sha(up));
    assert.equal(atClient.length, down.length);
    assert.equal(sha(atClient), sha(down));
  });

  it('closes the client when the backend refuses', async () => {
    // A proxy pointed at a closed port.
    const dead = net.createServer();
    dead.listen(0, '127.0.0.1');
    await once(dead, 'listening');
    const { port } = dead.address() as AddressInfo;
    await new Promise<void>((resolve) => dead.close(() => resolve()));
    const [p, pport] = await startProxy(port);
    try {
      const client = net.connect({ host: '127.0.0.1', port: pport });
      open.push(client);
      client.on('error', () => {});
      await once(client, 'close');
    } finally {
      p.kill('SIGTERM');
      if (p.exitCode === null) await once(p, 'exit');
    }
  });
});
