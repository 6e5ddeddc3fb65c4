/**
 * The admin server through the real CLI with two workers: /metrics is one
 * registry aggregated across workers, and its values move as traffic flows
 * (scraped over HTTP and parsed); /api/stats, /readyz and purge answer for
 * the whole proxy.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import type { ProxyStats } from '../../src/admin/source.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { parsePrometheus, sample } from '../helpers/prometheus.ts';

const WEB = { listener: 'web', protocol: 'http' };
const KV = { listener: 'kv', protocol: 'tcp' };

describe('admin server: metrics aggregated across workers', () => {
  let cli: RunningCli;
  let echo: net.Server;
  let site: http.Server;
  let admin: string;

  before(async () => {
    echo = net.createServer((s) => s.pipe(s));
    site = http.createServer((req, res) => res.end(`hello ${req.headers.host}`));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    const config = await writeConfig({
      workers: 2,
      logLevel: 'warn',
      admin: { host: '127.0.0.1', port: 0 },
      security: { allowPrivateBackends: true },
      routes: { 'site.test': `127.0.0.1:${(site.address() as AddressInfo).port}` },
      listeners: [
        { name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 },
        { name: 'kv', protocol: 'tcp', host: '127.0.0.1', port: 0, backend: `127.0.0.1:${(echo.address() as AddressInfo).port}` },
      ],
    });
    cli = await startCli(['--config', config]);
    const address = (cli.ready as unknown as { admin: AddressInfo }).admin;
    admin = `http://127.0.0.1:${address.port}`;
  });

  after(async () => {
    await cli?.stop();
    echo?.close();
    site?.close();
  });

  const scrape = async (): Promise<Map<string, number>> => {
    const res = await request(`${admin}/metrics`);
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    return parsePrometheus(await res.body.text());
  };

  it('is ready, and /metrics starts at zero for both listeners', async () => {
    const ready = await request(`${admin}/readyz`);
    assert.equal(ready.statusCode, 200);
    await ready.body.dump();
    const m = await scrape();
    assert.equal(sample(m, 'polyproxy_connections_total', WEB), 0);
    assert.equal(sample(m, 'polyproxy_connections_total', KV), 0);
    assert.ok(m.has('polyproxy_process_resident_memory_bytes'), 'process metrics are exported');
  });

  it('tcp: open connections and live bytes show while sessions run, totals after', async () => {
    const port = cli.port('kv');
    const payload = Buffer.alloc(10000, 7);
    const sockets = await Promise.all(
      Array.from(
        { length: 6 },
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const s = net.connect(port, '127.0.0.1');
            s.once('error', reject);
            let got = 0;
            s.on('data', (d) => {
              got += d.length;
              if (got === payload.length) resolve(s);
            });
            s.write(payload);
          }),
      ),
    );
    const live = await scrape();
    assert.equal(sample(live, 'polyproxy_connections_open', KV), 6, 'open across both workers');
    assert.equal(sample(live, 'polyproxy_bytes_in_total', KV), 60000, 'live sessions count their bytes');
    assert.equal(sample(live, 'polyproxy_bytes_out_total', KV), 60000);
    await Promise.all(sockets.map((s) => new Promise((resolve) => s.end(() => s.once('close', resolve)))));
    // The proxy sees the close a moment after the client does.
    let done = await scrape();
    for (let i = 0; i < 100 && sample(done, 'polyproxy_connections_open', KV) !== 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      done = await scrape();
    }
    assert.equal(sample(done, 'polyproxy_connections_open', KV), 0);
    assert.equal(sample(done, 'polyproxy_connections_total', KV), 6);
    assert.equal(sample(done, 'polyproxy_bytes_in_total', KV), 60000);
    assert.equal(sample(done, 'polyproxy_resource_connections_total', { resource: 'kv' }), 6);
  });

  it('http: requests, errors by kind, resolve latency and cache counters move', async () => {
    const port = cli.port('web');
    const before = await scrape();
    for (let i = 0; i < 5; i++) {
      const res = await request(`http://127.0.0.1:${port}/`, { headers: { host: 'site.test' } });
      assert.equal(await res.body.text(), 'hello site.test');
    }
    const missing = await request(`http://127.0.0.1:${port}/`, { headers: { host: 'nobody.test' } });
    assert.equal(missing.statusCode, 404);
    await missing.body.dump();
    const m = await scrape();
    assert.equal(sample(m, 'polyproxy_errors_total', { ...WEB, kind: 'NOT_FOUND' }) - sample(before, 'polyproxy_errors_total', { ...WEB, kind: 'NOT_FOUND' }), 1);
    assert.equal(sample(m, 'polyproxy_connections_failed_total', WEB), 1);
    assert.equal(sample(m, 'polyproxy_resource_connections_total', { resource: 'site.test' }), 5);
    assert.ok(sample(m, 'polyproxy_resolve_duration_seconds_count', { source: 'routes', outcome: 'found' }) >= 1);
    assert.ok(sample(m, 'polyproxy_route_cache_misses_total') >= 2);
    assert.ok(sample(m, 'polyproxy_route_cache_hits_total') + sample(m, 'polyproxy_route_cache_misses_total') >= 6);
    assert.equal(sample(m, 'polyproxy_endpoint_breaker_state', { endpoint: `127.0.0.1:${(site.address() as AddressInfo).port}` }), 0);
  });

  it('/api/stats merges the workers; purge reaches every worker', async () => {
    const res = await request(`${admin}/api/stats`);
    const stats = (await res.body.json()) as ProxyStats;
    assert.equal(stats.workers, 2);
    assert.equal(stats.ready, true);
    assert.deepEqual(stats.listeners.map((l) => l.name).sort(), ['kv', 'web']);
    assert.equal(stats.listeners.find((l) => l.name === 'kv')?.total, 6);
    assert.ok(stats.resources.some((r) => r.resourceId === 'site.test' && r.total === 5));
    assert.deepEqual(stats.routes, ['site.test']);
    assert.ok(stats.cache.entries >= 1);

    const purge = await request(`${admin}/api/purge/site.test`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(purge.statusCode, 200);
    const { purged } = (await purge.body.json()) as { purged: number };
    assert.ok(purged >= 1, `purged ${purged}`);
    const after = (await (await request(`${admin}/api/stats`)).body.json()) as ProxyStats;
    assert.equal(after.cache.entries, stats.cache.entries - purged);
  });
});
