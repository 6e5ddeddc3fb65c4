/**
 * Issue 16, defect 4: SIGTERM retires keep-alive connections. Busy clients
 * get `Connection: close` on their next response and no request fails;
 * idle keep-alive connections are closed at once, so the drain ends well
 * before its deadline.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { startCli, writeConfig } from '../helpers/cli.ts';

let backend: http.Server;

before(async () => {
  // A little latency: the clients are busy (a request in flight) most of the time.
  backend = http.createServer((req, res) => {
    req.resume();
    setTimeout(() => res.end('ok'), 20);
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
});

after(async () => {
  backend.closeAllConnections();
  await new Promise<void>((resolve) => backend.close(() => resolve()));
});

interface Outcome {
  requests: number;
  failures: string[];
  closedBy: 'connection: close' | 'error' | null;
}

/** Requests in a loop on one keep-alive connection until a response says Connection: close (or one fails). */
async function loop(port: number, agent: http.Agent, started: () => void): Promise<Outcome> {
  const outcome: Outcome = { requests: 0, failures: [], closedBy: null };
  while (outcome.closedBy === null) {
    try {
      const connection = await new Promise<string | undefined>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/', agent, headers: { host: 'app.test' } }, (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? resolve(res.headers.connection) : reject(new Error(`status ${res.statusCode}`))));
          res.on('error', reject);
        });
        req.on('error', reject);
      });
      outcome.requests++;
      if (outcome.requests === 3) started();
      if (connection === 'close') outcome.closedBy = 'connection: close';
    } catch (err) {
      outcome.failures.push((err as Error).message);
      outcome.closedBy = 'error';
    }
  }
  return outcome;
}

test('SIGTERM: busy keep-alive clients get Connection: close, idle ones are closed, no request fails', async () => {
  const proxy = await startCli([
    '--config',
    await writeConfig({
      shutdownTimeoutSeconds: 10,
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { 'app.test': `127.0.0.1:${(backend.address() as AddressInfo).port}` },
      listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 }],
    }),
  ]);
  const port = proxy.port('web');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  // An idle keep-alive connection: one request, then nothing.
  const idle = new http.Agent({ keepAlive: true, maxSockets: 1 });
  await new Promise<void>((resolve, reject) => http.get({ host: '127.0.0.1', port, agent: idle, headers: { host: 'app.test' } }, (res) => res.resume().on('end', resolve)).on('error', reject));
  const idleSocket = Object.values(idle.freeSockets).flat()[0];
  assert.ok(idleSocket !== undefined, 'the idle connection is kept alive');
  const idleClosed = new Promise<void>((resolve) => idleSocket.once('close', () => resolve()));

  let running = 0;
  let allStarted!: () => void;
  const started = new Promise<void>((resolve) => (allStarted = resolve));
  const loops = Array.from({ length: 8 }, () =>
    loop(port, agent, () => {
      if (++running === 8) allStarted();
    }),
  );
  await started;
  const t0 = Date.now();
  proxy.child.kill('SIGTERM');
  await idleClosed; // at once, not at the deadline
  const outcomes = await Promise.all(loops);
  const { code } = await proxy.exited;
  const drainMs = Date.now() - t0;
  agent.destroy();
  idle.destroy();

  assert.deepEqual(
    outcomes.flatMap((o) => o.failures),
    [],
    'no request failed',
  );
  for (const o of outcomes) assert.equal(o.closedBy, 'connection: close');
  assert.equal(code, 0);
  assert.ok(!proxy.logs.some((l) => l.msg === 'drain deadline passed: closing remaining sessions'), 'the drain ended before its deadline');
  assert.ok(drainMs < 5000, `drained in ${drainMs} ms`);
});
