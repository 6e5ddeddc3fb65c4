/**
 * issue 19: the dashboard's 15-minute history, in headless Chromium against
 * a real proxy (CLI, two workers, samples every 200 ms). As traffic flows the
 * charts move: open connections rise while clients hold sessions and fall
 * after, bytes/s and errors/s go above zero, the busiest tenant gets its
 * line, and the resolver's latency gets points.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import pg from 'pg';
import { request } from 'undici';
import { startPgDemoServer } from '../../src/demo/pg-demo-server.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { chromiumMissing, openPage } from '../helpers/chromium.ts';

const WAIT = { timeout: 20_000 };

declare const document: { querySelector(selector: string): { getAttribute(name: string): string | null } | null };

describe('dashboard history charts, live in Chromium', () => {
  let skip: string | null = null;
  let cli: RunningCli;
  let browser: Browser;
  let page: Page;
  let site: http.Server;
  let demo: Awaited<ReturnType<typeof startPgDemoServer>>;

  before(async () => {
    skip = await chromiumMissing();
    if (skip !== null) return;
    site = http.createServer((req, res) => res.end(`hello ${req.url ?? ''} ${'x'.repeat(4000)}`));
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    demo = await startPgDemoServer({ name: 'alpha' });
    const config = await writeConfig({
      workers: 2,
      logLevel: 'warn',
      admin: { port: 0, historyIntervalMs: 200 },
      security: { allowPrivateBackends: true },
      cache: { ttlSeconds: 0 },
      routes: { 'shop.test': `127.0.0.1:${(site.address() as AddressInfo).port}`, alpha: `127.0.0.1:${demo.port}` },
      listeners: [
        { name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 },
        { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 0 },
      ],
    });
    cli = await startCli(['--config', config]);
    ({ browser, page } = await openPage());
    await page.goto(`http://127.0.0.1:${(cli.ready as unknown as { admin: AddressInfo }).admin.port}/`);
  });

  after(async () => {
    await browser?.close();
    await cli?.stop();
    site?.close();
    await demo?.close();
  });

  const chart = (key: string): string => `[data-testid="history-chart"][data-chart="${key}"]`;
  /** Waits until the attribute, as a number, compares to `n` (the page's CSP forbids eval: no predicate strings). */
  const attrWhen = (selector: string, attr: string, test: string): Promise<unknown> => {
    const [, op, n] = /^v (===|>=|>) (\d+)$/.exec(test) as RegExpExecArray;
    return page.waitForFunction(
      ([sel, name, cmp, bound]) => {
        const raw = document.querySelector(sel)?.getAttribute(name);
        if (raw === null || raw === undefined || raw === '') return false;
        const v = Number(raw);
        return cmp === '===' ? v === Number(bound) : cmp === '>=' ? v >= Number(bound) : v > Number(bound);
      },
      [selector, attr, op as string, n as string] as const,
      WAIT,
    );
  };

  it('charts move as traffic flows', async (t) => {
    if (skip !== null) return t.skip(skip);
    await page.locator(chart('listener:web:connections')).waitFor(WAIT);
    await attrWhen(chart('listener:web:connections'), 'data-last', 'v === 0');

    // Held sessions: open connections rise.
    const held: net.Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const socket = net.connect(cli.port('web'), '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write('GET /held HTTP/1.1\r\nHost: shop.test\r\n\r\n');
      held.push(socket);
    }
    await attrWhen(chart('listener:web:connections'), 'data-last', 'v >= 3');

    // Unrouted hosts: errors/s; cache ttl 0: every request resolves.
    for (let i = 0; i < 10; i++) {
      const bad = await request(`http://127.0.0.1:${cli.port('web')}/`, { headers: { host: 'nowhere.test', connection: 'close' }, reset: true });
      await bad.body.text();
    }
    await attrWhen(chart('listener:web:errors'), 'data-max', 'v > 0');
    await attrWhen(chart('resolve:latency'), 'data-points', 'v > 0');
    // Relayed PostgreSQL sessions for tenant "alpha": bytes/s per listener and per tenant.
    // A rate needs the tenant in two samples with bytes between them: sessions go on until the
    // chart shows one (five quick sessions can all land inside the tenant's first sample).
    const tenantRate = async (): Promise<number> => Number((await page.locator(chart('tenants:bytes')).getAttribute('data-max')) ?? 0);
    const until = Date.now() + WAIT.timeout;
    for (let i = 0; i < 5 || ((await tenantRate()) <= 0 && Date.now() < until); i++) {
      const client = new pg.Client({ host: '127.0.0.1', port: cli.port('pg'), user: 'demo', database: 'alpha' });
      await client.connect();
      for (let q = 0; q < 20; q++) await client.query(`select 'row ${q}'`);
      await client.end();
    }
    await attrWhen(chart('listener:pg:bytes'), 'data-max', 'v > 0');
    await attrWhen(chart('tenants:bytes'), 'data-max', 'v > 0');
    assert.ok((await page.locator(`${chart('tenants:bytes')} [data-series="alpha"]`).count()) > 0, 'the tenant has its own line');

    // Sessions end: the connections line comes back down.
    for (const socket of held) socket.destroy();
    await attrWhen(chart('listener:web:connections'), 'data-last', 'v === 0');
    await attrWhen(chart('listener:web:connections'), 'data-max', 'v >= 3');
    const polyline = await page.locator(`${chart('listener:web:connections')} polyline`).first().getAttribute('points');
    assert.ok((polyline ?? '').split(' ').length > 3, 'the line is drawn from many samples');
  });
});
