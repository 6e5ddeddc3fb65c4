/**
 * Tenant isolation, HTTP (issue 15, defence 3). Hosts `allowed.iso.test`
 * (routed), `refused.iso.test` (absent: NOT_FOUND) and
 * `forbidden.iso.test` (the resolver module throws FORBIDDEN) are served by
 * one backend that records every request head it gets. A request that
 * names a refused host anywhere the backend (or an application behind it)
 * could read a host from must be refused by the proxy or reach the backend
 * without that name.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { parseConfig } from '../../../src/config/load.ts';
import { startProxy } from '../../../src/supervisor/proxy.ts';
import type { RunningProxy } from '../../../src/supervisor/proxy.ts';
import { ROOT } from '../../helpers/cli.ts';

const ALLOWED = 'allowed.iso.test';
const REFUSED = ['refused.iso.test', 'forbidden.iso.test'] as const;

/** Request heads the backend received. */
const heads: string[] = [];
let backend: net.Server;
let proxy: RunningProxy | undefined;
let port = 0;

before(async () => {
  backend = net.createServer((socket) => {
    socket.on('error', () => {});
    let buffered = '';
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      let end: number;
      while ((end = buffered.indexOf('\r\n\r\n')) >= 0) {
        heads.push(buffered.slice(0, end));
        buffered = buffered.slice(end + 4);
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      }
    });
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const config = parseConfig(
    {
      workers: 1,
      logLevel: 'silent',
      security: { allowBackends: ['127.0.0.0/8'] },
      resolver: { module: 'test/fixtures/tenant-isolation-resolver.ts' },
      routes: { [ALLOWED]: `127.0.0.1:${(backend.address() as net.AddressInfo).port}` },
      listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 }],
    },
    ROOT,
  );
  proxy = await startProxy(config);
  port = proxy.bound[0]?.port ?? 0;
});

after(async () => {
  await proxy?.drain(1000);
  await new Promise((resolve) => backend.close(resolve));
});

/** Writes raw bytes on one connection and returns every status line the proxy answered, until it closes or goes quiet. */
function exchange(bytes: string, expectResponses: number): Promise<number[]> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let got = '';
    const statuses = (): number[] => [...got.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
    const done = (): void => {
      socket.destroy();
      resolve(statuses());
    };
    socket.on('data', (chunk: Buffer) => {
      got += chunk.toString('latin1');
      if (statuses().length >= expectResponses) setImmediate(done);
    });
    socket.on('close', done);
    socket.on('error', done);
    socket.setTimeout(3000, done);
    socket.write(bytes);
  });
}

function assertBackendNeverSaw(label: string): void {
  for (const refused of REFUSED) {
    const name = refused.split('.')[0] as string;
    const leaked = heads.filter((head) => head.toLowerCase().includes(name));
    assert.deepEqual(leaked, [], `${label}: the backend got a request naming ${refused}`);
  }
}

const isRefusal = (status: number): boolean => status >= 400 && status < 600;

test('one request: every place a refused host can be named is refused or never reaches the backend', async () => {
  for (const refused of REFUSED) {
    const cases: Array<[string, string]> = [
      ['Host is the refused tenant', `GET / HTTP/1.1\r\nHost: ${refused}\r\n\r\n`],
      ['upper case', `GET / HTTP/1.1\r\nHost: ${refused.toUpperCase()}\r\n\r\n`],
      ['trailing dot', `GET / HTTP/1.1\r\nHost: ${refused}.\r\n\r\n`],
      ['with a port', `GET / HTTP/1.1\r\nHost: ${refused}:80\r\n\r\n`],
      ['absolute form naming it, Host allowed', `GET http://${refused}/ HTTP/1.1\r\nHost: ${ALLOWED}\r\n\r\n`],
      ['absolute form with userinfo', `GET http://${ALLOWED}@${refused}/ HTTP/1.1\r\nHost: ${ALLOWED}\r\n\r\n`],
      ['two Host fields, allowed first', `GET / HTTP/1.1\r\nHost: ${ALLOWED}\r\nHost: ${refused}\r\n\r\n`],
      ['two Host fields, refused first', `GET / HTTP/1.1\r\nHost: ${refused}\r\nHost: ${ALLOWED}\r\n\r\n`],
      ['Host list', `GET / HTTP/1.1\r\nHost: ${ALLOWED}, ${refused}\r\n\r\n`],
      ['CONNECT', `CONNECT ${refused}:443 HTTP/1.1\r\nHost: ${ALLOWED}\r\n\r\n`],
      ['HTTP/1.0 without Host, absolute form', `GET http://${refused}/ HTTP/1.0\r\n\r\n`],
    ];
    for (const [name, bytes] of cases) {
      const statuses = await exchange(bytes, 1);
      assert.equal(statuses.length, 1, `${refused}, ${name}: ${JSON.stringify(statuses)}`);
      assert.ok(isRefusal(statuses[0] as number), `${refused}, ${name}: answered ${statuses[0]}`);
      assertBackendNeverSaw(`${refused}, ${name}`);
    }
  }
});

test('forwarding headers naming a refused host do not reach the backend', async () => {
  for (const refused of REFUSED) {
    for (const field of [`X-Forwarded-Host: ${refused}`, `x-forwarded-host: ${refused}\r\nX-Forwarded-Proto: https`, `Forwarded: host=${refused}`, `Forwarded: for=1.2.3.4;host="${refused}";proto=https`]) {
      const statuses = await exchange(`GET / HTTP/1.1\r\nHost: ${ALLOWED}\r\n${field}\r\n\r\n`, 1);
      assert.equal(statuses.length, 1);
      assertBackendNeverSaw(`${refused}, ${field}`);
    }
  }
});

test('pipelining: a request for a refused host after an allowed one, or after a refused one, never reaches the backend', async () => {
  for (const refused of REFUSED) {
    const allowedThenRefused = await exchange(`GET /a HTTP/1.1\r\nHost: ${ALLOWED}\r\n\r\nGET /b HTTP/1.1\r\nHost: ${refused}\r\n\r\nGET /c HTTP/1.1\r\nHost: ${ALLOWED}\r\n\r\n`, 3);
    assert.equal(allowedThenRefused[0], 200);
    assert.ok(isRefusal(allowedThenRefused[1] as number), JSON.stringify(allowedThenRefused));
    const refusedTwice = await exchange(`GET /a HTTP/1.1\r\nHost: ${refused}\r\n\r\nGET /b HTTP/1.1\r\nHost: ${refused}\r\n\r\nGET /c HTTP/1.1\r\nHost: ${ALLOWED}\r\n\r\n`, 3);
    assert.ok(isRefusal(refusedTwice[0] as number), JSON.stringify(refusedTwice));
    for (const status of refusedTwice.slice(1, 2)) assert.ok(isRefusal(status), JSON.stringify(refusedTwice));
  }
  assertBackendNeverSaw('pipelining');
});

test('undici: a Host header naming a refused tenant gets 404/403 and reaches nothing', async () => {
  for (const [refused, status] of [[REFUSED[0], 404], [REFUSED[1], 403]] as const) {
    const res = await request(`http://127.0.0.1:${port}/`, { headers: { host: refused } });
    await res.body.dump();
    assert.equal(res.statusCode, status);
  }
  const ok = await request(`http://127.0.0.1:${port}/`, { headers: { host: ALLOWED } });
  await ok.body.dump();
  assert.equal(ok.statusCode, 200);
  assert.ok(heads.some((h) => h.toLowerCase().includes(`host: ${ALLOWED}`)), 'the allowed request reached the backend');
});
