/**
 * Issue 14: the listeners that run their own HTTP server count their
 * failures in `polyproxy_errors_total` (and `connections_failed_total`) as
 * core's pipeline listeners do. Through the real CLI and its admin
 * /metrics: a ws-bridge whose API is down refuses upgrades (502), a
 * fastcgi gateway whose only backend is down answers 502, then 503.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { parsePrometheus, sample } from '../helpers/prometheus.ts';
import { connect } from '../helpers/ws-bridge.ts';

const WS = { listener: 'ws', protocol: 'ws-bridge' };
const PHP = { listener: 'php', protocol: 'fastcgi' };

/** A loopback port nothing listens on. */
async function deadPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

function get(port: number, path: string): Promise<{ status: number; error: string | undefined }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, error: res.headers['x-polyproxy-error'] as string | undefined }));
      })
      .on('error', reject);
  });
}

describe('server-style listeners: failures in polyproxy_errors_total', () => {
  let cli: RunningCli;
  let admin = '';

  before(async () => {
    const config = await writeConfig({
      workers: 1,
      logLevel: 'warn',
      admin: { host: '127.0.0.1', port: 0 },
      listeners: [
        { name: 'ws', protocol: 'ws-bridge', host: '127.0.0.1', port: 0, api: `http://127.0.0.1:${await deadPort()}/api/` },
        { name: 'php', protocol: 'fastcgi', host: '127.0.0.1', port: 0, documentRoot: '/var/www', backends: [`127.0.0.1:${await deadPort()}`], healthCheckIntervalMs: 60000 },
      ],
    });
    cli = await startCli(['--config', config]);
    admin = `http://127.0.0.1:${(cli.ready as unknown as { admin: AddressInfo }).admin.port}`;
  });

  after(async () => {
    await cli?.stop();
  });

  const scrape = async (): Promise<Map<string, number>> => {
    const res = await request(`${admin}/metrics`);
    assert.equal(res.statusCode, 200);
    return parsePrometheus(await res.body.text());
  };

  it('ws-bridge: with the API down, upgrades are refused 502 and counted as BACKEND_UNREACHABLE', async () => {
    const before = await scrape();
    assert.equal(sample(before, 'polyproxy_errors_total', { ...WS, kind: 'BACKEND_UNREACHABLE' }), 0);
    for (let i = 0; i < 2; i++) {
      const refused = await connect(cli.port('ws'), `/client${i}`);
      assert.equal(!refused.ok && refused.status, 502);
    }
    const m = await scrape();
    assert.equal(sample(m, 'polyproxy_errors_total', { ...WS, kind: 'BACKEND_UNREACHABLE' }), 2);
    assert.equal(sample(m, 'polyproxy_connections_failed_total', WS), 2);
    assert.equal(sample(m, 'polyproxy_connections_total', WS), 2);
    assert.equal(sample(m, 'polyproxy_connections_refused_total', WS), 0, 'refused counts maxConnections only');
  });

  it('fastcgi: a backend that is down gives 502, then 503 while its breaker is open, each counted by kind', async () => {
    const port = cli.port('php');
    assert.deepEqual(await get(port, '/index.php'), { status: 502, error: 'PP_ERR_BACKEND_UNREACHABLE' });
    assert.deepEqual(await get(port, '/index.php'), { status: 503, error: 'PP_ERR_UNAVAILABLE' });
    const m = await scrape();
    assert.equal(sample(m, 'polyproxy_errors_total', { ...PHP, kind: 'BACKEND_UNREACHABLE' }), 1);
    assert.equal(sample(m, 'polyproxy_errors_total', { ...PHP, kind: 'UNAVAILABLE' }), 1);
    assert.equal(sample(m, 'polyproxy_connections_failed_total', PHP), 2);
  });
});
