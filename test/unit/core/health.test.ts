import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { parseEndpoint } from '../../../src/core/endpoint.ts';
import { EndpointHealth, probe } from '../../../src/core/health.ts';

const A = parseEndpoint('127.0.0.1:1');
const B = parseEndpoint('127.0.0.1:2');
const C = parseEndpoint('127.0.0.1:3');

async function listening(server: net.Server | http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

/** A port nothing listens on (bound then closed). */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  const port = await listening(server);
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('EndpointHealth: the breaker from passive results', () => {
  it('returns the same candidate array while every endpoint is closed', () => {
    const health = new EndpointHealth({ intervalMs: 0 });
    health.watch([A, B], 'tcp');
    const list = [A, B];
    assert.equal(health.usable(list), list);
  });

  it('opens after failureThreshold consecutive failures and skips the endpoint', () => {
    const health = new EndpointHealth({ intervalMs: 0, failureThreshold: 3 });
    health.watch([A, B], 'tcp');
    health.failed(A, 'refused');
    health.failed(A, 'refused');
    assert.equal(health.state(A.label), 'closed');
    assert.deepEqual(health.usable([A, B]), [A, B]);
    health.failed(A, 'refused');
    assert.equal(health.state(A.label), 'open');
    assert.deepEqual(health.usable([A, B]), [B]);
    assert.deepEqual(health.usable([B, A]), [B]);
  });

  it('connected() keeps the count of a balanced endpoint until answered() says how the backend did', () => {
    const health = new EndpointHealth({ intervalMs: 0, failureThreshold: 2 });
    health.watch([A, B], 'tcp');
    health.connected(A);
    health.answered(A, 'reset before answering');
    health.connected(A);
    assert.equal(health.state(A.label), 'closed');
    health.answered(A, 'no answer within 1000 ms');
    assert.equal(health.state(A.label), 'open');
    // A first answer resets the count, as a success does.
    health.failed(B, 'x');
    health.answered(B, null);
    health.failed(B, 'x');
    assert.equal(health.state(B.label), 'closed');
  });

  it('a lone endpoint is judged by its connect: connected() is a success, answered() counts nothing', () => {
    const health = new EndpointHealth({ intervalMs: 0, failureThreshold: 1 });
    health.watch([C], 'tcp');
    for (let i = 0; i < 3; i++) {
      health.connected(C);
      health.answered(C, 'reset before answering');
    }
    assert.equal(health.state(C.label), 'closed');
    health.failed(C, 'refused');
    assert.equal(health.state(C.label), 'open');
  });

  it('a success in between resets the count', () => {
    const health = new EndpointHealth({ intervalMs: 0, failureThreshold: 2 });
    health.watch([A], 'tcp');
    health.failed(A, 'x');
    health.succeeded(A);
    health.failed(A, 'x');
    assert.equal(health.state(A.label), 'closed');
  });

  it('half-open after openMs lets exactly one trial through; its success closes', () => {
    // openMs also bounds how long a trial is out: long enough that a busy machine does not let a second one through.
    const health = new EndpointHealth({ intervalMs: 0, failureThreshold: 1, openMs: 100 });
    health.watch([A, B], 'tcp');
    health.failed(A, 'x');
    const until = Date.now() + 105;
    while (Date.now() < until);
    assert.deepEqual(health.usable([A, B]), [A, B], 'the trial');
    assert.equal(health.state(A.label), 'half-open');
    assert.deepEqual(health.usable([A, B]), [B], 'one trial at a time');
    health.succeeded(A);
    assert.equal(health.state(A.label), 'closed');
    assert.deepEqual(health.usable([A, B]), [A, B]);
  });

  it('a failed trial opens again', () => {
    const health = new EndpointHealth({ intervalMs: 0, failureThreshold: 1, openMs: 1 });
    health.watch([A], 'tcp');
    health.failed(A, 'x');
    const until = Date.now() + 5;
    while (Date.now() < until);
    assert.deepEqual(health.usable([A]), [A]);
    health.failed(A, 'still down');
    assert.equal(health.state(A.label), 'open');
    assert.deepEqual(health.usable([A]), []);
  });

  it('every endpoint open leaves nothing usable', () => {
    const health = new EndpointHealth({ intervalMs: 0, failureThreshold: 1 });
    health.watch([A, B, C], 'tcp');
    for (const e of [A, B, C]) health.failed(e, 'x');
    assert.deepEqual(health.usable([A, B, C]), []);
  });

  it('untracked endpoints are always usable and never recorded', () => {
    const health = new EndpointHealth({ intervalMs: 0, failureThreshold: 1 });
    health.failed(A, 'x');
    assert.equal(health.state(A.label), 'closed');
    assert.deepEqual(health.stats(), []);
  });
});

describe('EndpointHealth: active probes', () => {
  const servers: Array<net.Server | http.Server> = [];
  after(() => {
    for (const s of servers) s.close();
  });

  it('fall failed probes open the breaker, rise good ones close it', async () => {
    const port = await deadPort();
    const endpoint = parseEndpoint(`127.0.0.1:${port}`);
    const health = new EndpointHealth({ intervalMs: 0, fall: 2, rise: 2, timeoutMs: 500 });
    health.watch([endpoint, B], 'tcp');
    await health.probeAll();
    assert.equal(health.state(endpoint.label), 'closed', 'one failed probe is not enough');
    await health.probeAll();
    assert.equal(health.state(endpoint.label), 'open');
    assert.equal(health.stats().find((e) => e.endpoint === endpoint.label)?.healthy, false);

    const server = net.createServer((s) => s.destroy());
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    await health.probeAll();
    assert.equal(health.state(endpoint.label), 'open', 'one good probe is not enough');
    await health.probeAll();
    assert.equal(health.state(endpoint.label), 'closed');
    const stats = health.stats().find((e) => e.endpoint === endpoint.label);
    assert.equal(stats?.healthy, true);
    assert.ok(stats?.lastProbeAt !== null && stats !== undefined && Date.now() - (stats.lastProbeAt as number) < 5000);
  });

  it('the timer probes on its own', async () => {
    const port = await deadPort();
    const endpoint = parseEndpoint(`127.0.0.1:${port}`);
    const health = new EndpointHealth({ intervalMs: 20, fall: 1, timeoutMs: 200 });
    health.watch([endpoint, B], 'tcp');
    health.start();
    try {
      while (health.state(endpoint.label) !== 'open') await new Promise((resolve) => setTimeout(resolve, 10));
    } finally {
      health.stop();
    }
  });

  it('a TCP probe does not close a breaker opened by failures after connect; an answer does', async () => {
    // Accepts and says nothing: a connect probe finds it "up".
    const server = net.createServer(() => {});
    servers.push(server);
    const endpoint = parseEndpoint(`127.0.0.1:${await listening(server)}`);
    const health = new EndpointHealth({ intervalMs: 0, failureThreshold: 2, rise: 1 });
    health.watch([endpoint, B], 'tcp');
    health.answered(endpoint, 'no answer within 1000 ms');
    health.answered(endpoint, 'no answer within 1000 ms');
    assert.equal(health.state(endpoint.label), 'open');
    await health.probeAll();
    await health.probeAll();
    assert.equal(health.state(endpoint.label), 'open');
    health.answered(endpoint, null);
    assert.equal(health.state(endpoint.label), 'closed');
    // Connect failures alone: the probe's connect is the same test, so it may close the breaker.
    health.failed(endpoint, 'refused');
    health.failed(endpoint, 'refused');
    assert.equal(health.state(endpoint.label), 'open');
    await health.probeAll();
    assert.equal(health.state(endpoint.label), 'closed');
  });

  it('http probes GET the path and judge the status', async () => {
    let status = 200;
    const paths: string[] = [];
    const server = http.createServer((req, res) => {
      paths.push(req.url ?? '');
      res.writeHead(status).end('x');
    });
    servers.push(server);
    const port = await listening(server);
    const endpoint = parseEndpoint(`127.0.0.1:${port}`);
    assert.equal(await probe(endpoint, '/healthz', 1000), null);
    status = 503;
    assert.match((await probe(endpoint, '/healthz', 1000)) ?? '', /503/);
    assert.deepEqual(paths, ['/healthz', '/healthz']);
    // Without a path, a connect is enough.
    assert.equal(await probe(endpoint, undefined, 1000), null);
  });

  it('a probe of a silent server times out', async () => {
    const server = net.createServer(() => {});
    servers.push(server);
    const port = await listening(server);
    assert.match((await probe(parseEndpoint(`127.0.0.1:${port}`), '/', 100)) ?? '', /no answer within 100 ms/);
  });

  it('a lone endpoint (no balanced route) is not probed', async () => {
    const endpoint = parseEndpoint(`127.0.0.1:${await deadPort()}`);
    const health = new EndpointHealth({ intervalMs: 0, fall: 1 });
    health.watch([endpoint], 'tcp');
    await health.probeAll();
    assert.equal(health.state(endpoint.label), 'closed');
    assert.equal(health.stats()[0]?.lastProbeAt, null);
    // Unless the caller asks for it (the FastCGI gateway probes its lone backend)...
    const asked = new EndpointHealth({ intervalMs: 0, fall: 1 });
    asked.watch([endpoint], 'tcp', true);
    await asked.probeAll();
    assert.equal(asked.state(endpoint.label), 'open');
    // ...or once it is part of a list.
    health.watch([endpoint, B], 'tcp');
    await health.probeAll();
    assert.equal(health.state(endpoint.label), 'open');
  });

  it('endpoints unused for forgetAfterMs are dropped', async () => {
    const health = new EndpointHealth({ intervalMs: 0, forgetAfterMs: 1, failureThreshold: 1 });
    health.watch([parseEndpoint(`127.0.0.1:${await deadPort()}`)], 'tcp');
    const until = Date.now() + 5;
    while (Date.now() < until);
    await health.probeAll();
    assert.deepEqual(health.stats(), []);
  });
});
