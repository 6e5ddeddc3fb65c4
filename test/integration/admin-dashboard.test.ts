/**
 * The admin dashboard (issue #8) in a real headless Chromium (Debian's
 * /usr/bin/chromium driven by playwright-core), served by createAdminServer
 * over a fake source whose numbers change between polls: the rendered
 * figures match the source, follow it live (rates computed between polls,
 * the sparkline growing), the screenshot shows the breaker badges in their
 * colours, the purge form reaches the source, and a page on another origin
 * cannot purge through the browser.
 *
 * Set ADMIN_DASHBOARD_SCREENSHOT=/tmp/dashboard.png to keep the screenshots
 * (light, and dark next to it) for a look; CHROMIUM_PATH overrides the
 * browser. Outside CI a missing Chromium skips (reason printed); under
 * CI=true it fails (.ci/run installs Debian's chromium).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { Browser, Page } from 'playwright-core';
import { createAdminServer } from '../../src/admin/server.ts';
import type { AdminServer } from '../../src/admin/server.ts';
import type { AdminSource, BreakerState, ProxyStats } from '../../src/admin/source.ts';
import { GREEN, RED, colourShare, decodePng } from '../helpers/png.ts';
import { chromiumMissing, openPage } from '../helpers/chromium.ts';

const WAIT = { timeout: 15_000 };

// The few DOM shapes the functions evaluated in the page use (tsconfig has no DOM lib).
interface PageElement {
  textContent: string | null;
  className: string;
  getAttribute(name: string): string | null;
}
declare const document: { querySelector(selector: string): PageElement | null; querySelectorAll(selector: string): ArrayLike<PageElement> };

/** A source whose figures the test changes between polls. */
class LiveSource implements AdminSource {
  isReady = true;
  purged: string[] = [];
  readonly web = { name: 'web', protocol: 'http', host: '127.0.0.1', port: 8080, open: 3, total: 120, refused: 1, failed: 2, bytesIn: 1_572_864, bytesOut: 10_485_760 };
  readonly pg = { name: 'pg', protocol: 'postgres', host: '::1', port: 6432, open: 2, total: 40, refused: 0, failed: 0, bytesIn: 2048, bytesOut: 512 };
  readonly endpoints: Array<{ endpoint: string; state: BreakerState; healthy: boolean | null; failures: number; lastProbeAt: number | null }> = [
    { endpoint: '127.0.0.1:3000', state: 'closed', healthy: true, failures: 0, lastProbeAt: Date.now() },
    { endpoint: '127.0.0.1:3001', state: 'open', healthy: false, failures: 5, lastProbeAt: Date.now() },
    { endpoint: '127.0.0.1:3002', state: 'half-open', healthy: null, failures: 1, lastProbeAt: null },
  ];
  readonly resources = [
    { resourceId: 'shop', open: 4, total: 100, bytesIn: 900_000, bytesOut: 9_000_000, limited: 7 },
    { resourceId: '<b>blog</b>', open: 1, total: 60, bytesIn: 1000, bytesOut: 2000 },
  ];
  readonly cache = { entries: 12, hits: 300, misses: 100 };
  readonly coldStarts = { waiting: 1, wakes: 3, timeouts: 0 };
  readonly pools = [
    { listener: 'pg', pool: 'shop/app@127.0.0.1:5432', mode: 'transaction', clientsActive: 3, clientsWaiting: 2, clients: 40, serversActive: 3, serversIdle: 1, serversLoggingIn: 0, serversOpened: 4, transactions: 1234, queries: 2345, queueTimeouts: 1, waitSecondsTotal: 0.5 },
  ];

  readonly readWriteSplit = [
    {
      listener: 'pg',
      pinnedSessions: 2,
      statements: [
        { target: 'replica' as const, reason: 'read' as const, count: 3000 },
        { target: 'primary' as const, reason: 'write' as const, count: 900 },
        { target: 'primary' as const, reason: 'pinned' as const, count: 100 },
      ],
      routes: [
        {
          route: 'shop',
          replicas: [
            { endpoint: '127.0.0.1:5433', up: true, lagMs: 12.4, sessions: 3 },
            { endpoint: '127.0.0.1:5434', up: false, lagMs: null, sessions: 0 },
          ],
        },
      ],
    },
  ];

  metrics(): Promise<string> {
    return Promise.resolve('');
  }

  stats(): Promise<ProxyStats> {
    return Promise.resolve(
      structuredClone({
        version: '0.1.0',
        startedAt: Date.now() - 3_723_000,
        uptimeSeconds: 3723,
        workers: 2,
        ready: this.isReady,
        listeners: [this.web, this.pg],
        routes: ['shop', '*.example.com', 'pool'],
        cache: this.cache,
        endpoints: this.endpoints,
        resources: this.resources,
        coldStarts: this.coldStarts,
        pools: this.pools,
        readWriteSplit: this.readWriteSplit,
      }),
    );
  }

  purge(resourceId: string): Promise<number> {
    this.purged.push(resourceId);
    return Promise.resolve(2);
  }

  ready(): boolean {
    return this.isReady;
  }
}

const tid = (id: string): string => `[data-testid="${id}"]`;
const listener = (name: string, field: string): string => `[data-testid="listener-row"][data-name="${name}"] [data-testid="listener-${field}"]`;
const endpoint = (ep: string, field: string): string => `[data-testid="endpoint-row"][data-endpoint="${ep}"] [data-testid="endpoint-${field}"]`;
const pool = (key: string, field: string): string => `[data-testid="pool-row"][data-pool="${key}"] [data-testid="pool-${field}"]`;
const rw = (name: string, field: string): string => `[data-testid="rw-row"][data-listener="${name}"] [data-testid="rw-${field}"]`;
const rwReplica = (key: string, field: string): string => `[data-testid="rw-replica-row"][data-replica="${key}"] [data-testid="rw-replica-${field}"]`;
const resource = (id: string, field: string): string => `[data-testid="resource-row"][data-resource="${id}"] [data-testid="resource-${field}"]`;

interface Figure {
  text: string | null;
  value: string | null;
  cls: string;
}

/** Reads several elements in one go (one render), keyed like `selectors`. */
async function read<K extends string>(page: Page, selectors: Record<K, string>): Promise<Record<K, Figure>> {
  const sels: Record<string, string> = selectors;
  const figures = await page.evaluate((sels: Record<string, string>) => {
    const out: Record<string, Figure | null> = {};
    for (const [key, sel] of Object.entries(sels)) {
      const el = document.querySelector(sel);
      out[key] = el === null ? null : { text: el.textContent, value: el.getAttribute('data-value'), cls: el.className };
    }
    return out;
  }, sels);
  for (const [key, figure] of Object.entries(figures)) assert.ok(figure !== null, `${key}: no element matches ${selectors[key as K]}`);
  return figures as Record<K, Figure>;
}

/** Waits until the element's attribute (data-value by default) equals `want`. */
async function waitForValue(page: Page, selector: string, want: string, attribute = 'data-value'): Promise<void> {
  await page.waitForFunction(([sel, attr, value]) => document.querySelector(sel)?.getAttribute(attr) === value, [selector, attribute, want] as const, WAIT);
}

describe('admin dashboard in headless Chromium', () => {
  let skip: string | null = null;
  const source = new LiveSource();
  const logs: Array<{ msg: string; [key: string]: unknown }> = [];
  let admin: AdminServer;
  let base: string;
  let browser: Browser;
  let page: Page;

  before(async () => {
    skip = await chromiumMissing();
    if (skip !== null) return;
    admin = createAdminServer(source, { host: '127.0.0.1', port: 0, log: pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line)) }) });
    base = `http://127.0.0.1:${(await admin.listen()).port}/`;
    ({ browser, page } = await openPage());
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') errors.push(msg.text());
    });
    await page.goto(base);
    await waitForValue(page, tid('connection-status'), 'live', 'data-state');
    assert.deepEqual(errors, [], 'no script errors, no CSP violations');
  });

  after(async () => {
    await browser?.close();
    await admin?.close();
  });

  it('renders the figures of the source', async (t) => {
    if (skip !== null) return t.skip(skip);
    const f = await read(page, {
      version: tid('version'),
      uptime: tid('uptime'),
      workers: tid('workers'),
      ready: tid('ready'),
      webOpen: listener('web', 'open'),
      webTotal: listener('web', 'total'),
      webRefused: listener('web', 'refused'),
      webFailed: listener('web', 'failed'),
      webIn: listener('web', 'bytes-in'),
      webOut: listener('web', 'bytes-out'),
      pgAddress: listener('pg', 'address'),
      pgIn: listener('pg', 'bytes-in'),
      pgOut: listener('pg', 'bytes-out'),
      totalOpen: tid('total-open'),
      totalIn: tid('total-bytes-in'),
      openState: endpoint('127.0.0.1:3001', 'state'),
      openHealth: endpoint('127.0.0.1:3001', 'health'),
      openFailures: endpoint('127.0.0.1:3001', 'failures'),
      closedState: endpoint('127.0.0.1:3000', 'state'),
      closedHealth: endpoint('127.0.0.1:3000', 'health'),
      halfState: endpoint('127.0.0.1:3002', 'state'),
      halfHealth: endpoint('127.0.0.1:3002', 'health'),
      halfProbe: endpoint('127.0.0.1:3002', 'last-probe'),
      shopOpen: resource('shop', 'open'),
      shopOut: resource('shop', 'bytes-out'),
      shopLimited: resource('shop', 'limited'),
      blogLimited: resource('<b>blog</b>', 'limited'),
      blogId: resource('<b>blog</b>', 'id'),
      poolName: pool('pg shop/app@127.0.0.1:5432', 'name'),
      poolActive: pool('pg shop/app@127.0.0.1:5432', 'clients-active'),
      poolWaiting: pool('pg shop/app@127.0.0.1:5432', 'clients-waiting'),
      poolIdle: pool('pg shop/app@127.0.0.1:5432', 'servers-idle'),
      poolTx: pool('pg shop/app@127.0.0.1:5432', 'transactions'),
      rwReplica: rw('pg', 'replica'),
      rwPrimary: rw('pg', 'primary'),
      rwShare: rw('pg', 'share'),
      rwPinned: rw('pg', 'pinned'),
      upState: rwReplica('pg shop 127.0.0.1:5433', 'state'),
      upLag: rwReplica('pg shop 127.0.0.1:5433', 'lag'),
      upSessions: rwReplica('pg shop 127.0.0.1:5433', 'sessions'),
      downState: rwReplica('pg shop 127.0.0.1:5434', 'state'),
      downLag: rwReplica('pg shop 127.0.0.1:5434', 'lag'),
      ratio: tid('cache-hit-ratio'),
      entries: tid('cache-entries'),
      waiting: tid('cold-waiting'),
      wakes: tid('cold-wakes'),
      routes: tid('routes-count'),
    });
    assert.equal(f.version.text, 'v0.1.0');
    assert.equal(f.uptime.text, '1h 2m');
    assert.equal(f.workers.text, '2');
    assert.equal(f.ready.text, 'ready');
    assert.match(f.ready.cls, /\bok\b/);
    assert.deepEqual([f.webOpen.text, f.webTotal.text, f.webRefused.text, f.webFailed.text], ['3', '120', '1', '2']);
    assert.deepEqual([f.webIn.text, f.webIn.value], ['1.50 MiB', '1572864']);
    assert.deepEqual([f.webOut.text, f.webOut.value], ['10.0 MiB', '10485760']);
    assert.equal(f.pgAddress.text, '[::1]:6432');
    assert.deepEqual([f.pgIn.text, f.pgOut.text], ['2.00 KiB', '512 B']);
    assert.equal(f.totalOpen.text, '5');
    assert.equal(f.totalIn.value, String(1_572_864 + 2048));
    assert.deepEqual([f.openState.text, f.openHealth.text, f.openFailures.text], ['open', 'unhealthy', '5']);
    assert.match(f.openState.cls, /\bbad\b/);
    assert.match(f.openHealth.cls, /\bbad\b/);
    assert.deepEqual([f.closedState.text, f.closedHealth.text], ['closed', 'healthy']);
    assert.match(f.closedState.cls, /\bok\b/);
    assert.deepEqual([f.halfState.text, f.halfHealth.text, f.halfProbe.text], ['half-open', 'unknown', 'never']);
    assert.match(f.halfState.cls, /\bwarn\b/);
    assert.deepEqual([f.shopOpen.text, f.shopOut.text], ['4', '8.58 MiB']);
    assert.deepEqual([f.shopLimited.text, f.blogLimited.text], ['7', '0'], 'refusals by tenant limits per resource');
    assert.equal(f.blogId.text, '<b>blog</b>', 'resource ids are text, not markup');
    assert.deepEqual([f.poolName.text, f.poolActive.text, f.poolWaiting.text, f.poolIdle.text, f.poolTx.text], ['shop/app@127.0.0.1:5432', '3', '2', '1', '1,234']);
    assert.deepEqual([f.rwReplica.text, f.rwPrimary.text, f.rwShare.text, f.rwPinned.text], ['3,000', '1,000', '75.0%', '2'], 'read/write split per listener');
    assert.deepEqual([f.upState.text, f.upLag.text, f.upSessions.text, f.downState.text, f.downLag.text], ['up', '12 ms', '3', 'down', '\u2014']);
    assert.match(f.upState.cls, /\bok\b/);
    assert.match(f.downState.cls, /\bbad\b/);
    assert.equal(f.ratio.text, '75.0%');
    assert.equal(f.entries.text, '12');
    assert.deepEqual([f.waiting.text, f.wakes.text], ['1', '3']);
    assert.equal(f.routes.text, '3');
    const order = await page.evaluate(() => Array.from(document.querySelectorAll('[data-testid="resource-row"]'), (row) => row.getAttribute('data-resource')));
    assert.deepEqual(order, ['shop', '<b>blog</b>'], 'the source order (top resources first)');
  });

  it('shows the breaker and health badges in colour (screenshot)', async (t) => {
    if (skip !== null) return t.skip(skip);
    const red = page.locator(endpoint('127.0.0.1:3001', 'state'));
    const green = page.locator(endpoint('127.0.0.1:3000', 'health'));
    await red.scrollIntoViewIfNeeded();
    const redBox = await red.boundingBox();
    const greenBox = await green.boundingBox();
    assert.ok(redBox !== null && greenBox !== null);
    const shot = await page.screenshot();
    const png = decodePng(shot);
    assert.deepEqual([png.width, png.height], [1280, 1000]);
    assert.ok(shot.length > 20_000, `a rendered page, not a blank one (${shot.length} bytes)`);
    const redInRed = colourShare(png, redBox, RED);
    const greenInGreen = colourShare(png, greenBox, GREEN);
    assert.ok(redInRed > 0.5, `the open breaker badge is red (${(redInRed * 100).toFixed(0)}% of its pixels)`);
    assert.ok(greenInGreen > 0.5, `the healthy badge is green (${(greenInGreen * 100).toFixed(0)}% of its pixels)`);
    assert.ok(colourShare(png, redBox, GREEN) < 0.05, 'and not green');
    assert.ok(colourShare(png, greenBox, RED) < 0.05, 'and not red');

    const keep = process.env.ADMIN_DASHBOARD_SCREENSHOT;
    if (keep !== undefined && keep !== '') {
      await writeFile(keep, await page.screenshot({ fullPage: true }));
      await page.emulateMedia({ colorScheme: 'dark' });
      await writeFile(keep.replace(/(\.png)?$/, '-dark.png'), await page.screenshot({ fullPage: true }));
      await page.emulateMedia({ colorScheme: 'light' });
    }
  });

  it('follows the source live: counts, rates between polls, sparkline, readiness, breaker state', async (t) => {
    if (skip !== null) return t.skip(skip);
    source.web.open = 7;
    source.web.total += 10;
    source.web.bytesIn += 1_048_576;
    // Read in the same render that first shows the new count (the check runs
    // every 20 ms, polls come a second apart): its rates cover exactly the
    // change between that poll and the one before.
    const handle = await page.waitForFunction(
      (sels: Record<string, string>) => {
        const get = (key: string): PageElement | null => document.querySelector(sels[key] ?? '');
        if (get('open')?.getAttribute('data-value') !== '7') return null;
        const out: Record<string, Figure | null> = {};
        for (const key of Object.keys(sels)) {
          const el = get(key);
          out[key] = el === null ? null : { text: el.textContent, value: el.getAttribute('data-value'), cls: el.className };
        }
        return out;
      },
      {
        open: listener('web', 'open'),
        bytesIn: listener('web', 'bytes-in'),
        inRate: listener('web', 'in-rate'),
        connRate: listener('web', 'conn-rate'),
        outRate: listener('web', 'out-rate'),
        totalOpen: tid('total-open'),
      },
      { ...WAIT, polling: 20 },
    );
    const f = (await handle.jsonValue()) as Record<'open' | 'bytesIn' | 'inRate' | 'connRate' | 'outRate' | 'totalOpen', Figure>;
    const inRate = Number(f.inRate.value);
    assert.ok(inRate > 0 && inRate <= 1_048_576, `in/s ${inRate}`);
    assert.match(f.inRate.text ?? '', /^\d+(\.\d+)? (KiB|MiB)\/s$/);
    const connRate = Number(f.connRate.value);
    assert.ok(connRate > 0 && connRate <= 10, `conn/s ${connRate}`);
    assert.equal(f.bytesIn.text, '2.50 MiB');
    assert.equal(f.outRate.value, '0', 'bytes out did not move');
    assert.equal(f.totalOpen.text, '9');

    // Nothing moves: the next poll's rate is zero.
    await waitForValue(page, listener('web', 'in-rate'), '0');
    assert.equal((await read(page, { r: listener('web', 'in-rate') })).r.text, '0 B/s');

    // A steady flow shows up as a steady rate.
    const flow = setInterval(() => (source.web.bytesOut += 100_000), 50);
    try {
      await page.waitForFunction((sel) => Number(document.querySelector(sel)?.getAttribute('data-value')) > 0, listener('web', 'out-rate'), WAIT);
    } finally {
      clearInterval(flow);
    }

    // The sparkline grows one point per poll and ends at the current total.
    await page.waitForFunction((sel) => Number(document.querySelector(sel)?.getAttribute('data-points')) >= 4, tid('sparkline'), WAIT);
    const spark = await page.evaluate(() => {
      const svg = document.querySelector('[data-testid="sparkline"]');
      const line = document.querySelector('[data-testid="sparkline-line"]');
      return { points: svg?.getAttribute('data-points'), last: svg?.getAttribute('data-last'), drawn: (line?.getAttribute('points') ?? '').split(' ').length };
    });
    assert.equal(spark.drawn, Number(spark.points));
    assert.equal(spark.last, '9');

    source.isReady = false;
    await waitForValue(page, tid('ready'), 'false');
    assert.equal((await read(page, { r: tid('ready') })).r.text, 'not ready');
    source.isReady = true;
    await waitForValue(page, tid('ready'), 'true');

    const [first] = source.endpoints;
    assert.ok(first !== undefined);
    first.state = 'open';
    first.healthy = false;
    await waitForValue(page, endpoint('127.0.0.1:3000', 'state'), 'open');
    assert.match((await read(page, { s: endpoint('127.0.0.1:3000', 'state') })).s.cls, /\bbad\b/);

    source.cache.hits = 900;
    source.coldStarts.waiting = 0;
    await waitForValue(page, tid('cache-hit-ratio'), '0.9');
    const c = await read(page, { ratio: tid('cache-hit-ratio'), waiting: tid('cold-waiting') });
    assert.equal(c.ratio.text, '90.0%');
    assert.equal(c.waiting.text, '0');
  });

  it('shows the admin server going away and coming back', async (t) => {
    if (skip !== null) return t.skip(skip);
    const stats = source.stats.bind(source);
    source.stats = () => Promise.reject(new Error('aggregation failed'));
    try {
      await waitForValue(page, tid('connection-status'), 'error', 'data-state');
      assert.match((await read(page, { s: tid('connection-status') })).s.text ?? '', /disconnected \(HTTP 500\)/);
    } finally {
      source.stats = stats;
    }
    await waitForValue(page, tid('connection-status'), 'live', 'data-state');
  });

  it('purges through the form', async (t) => {
    if (skip !== null) return t.skip(skip);
    source.purged = [];
    await page.locator(tid('purge-input')).fill('tenant/a b');
    await page.locator(tid('purge-submit')).click();
    await waitForValue(page, tid('purge-result'), 'ok', 'data-state');
    assert.deepEqual(source.purged, ['tenant/a b']);
    assert.equal(await page.locator(tid('purge-result')).textContent(), 'purged 2 cache entries for tenant/a b');
  });

  it('refuses a purge sent by a page of another origin through the browser', async (t) => {
    if (skip !== null) return t.skip(skip);
    // Another service on 127.0.0.1: same site as the admin server, other origin.
    const evil = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><form method="post" enctype="text/plain"><input name="x" value="y"></form>');
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    const other = await browser.newPage();
    try {
      await other.goto(`http://127.0.0.1:${(evil.address() as AddressInfo).port}/`);
      source.purged = [];
      logs.length = 0;
      const target = `${base}api/purge/shop`;
      const outcomes = await other.evaluate(async (url) => {
        const noCors = await fetch(url, { method: 'POST', mode: 'no-cors', body: '{}' }).then(
          () => 'sent',
          () => 'failed',
        );
        const json = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }).then(
          (res) => `answered ${res.status}`,
          () => 'blocked',
        );
        return { noCors, json };
      }, target);
      assert.deepEqual(outcomes, { noCors: 'sent', json: 'blocked' }, 'the JSON POST dies at its preflight');
      // A classic form post navigates to the admin server's refusal.
      const response = await Promise.all([other.waitForNavigation(), other.evaluate((url) => {
        const form = document.querySelector('form') as unknown as { action: string; submit(): void };
        form.action = url;
        form.submit();
      }, target)]).then(([res]) => res);
      assert.equal(response?.status(), 403);
      assert.deepEqual(source.purged, [], 'nothing was purged');
      const refused = logs.filter((l) => l.msg === 'admin purge refused');
      assert.equal(refused.length, 2, 'the no-cors fetch and the form reached the server and were refused');
      assert.ok(refused.every((l) => l.secFetchSite === 'same-site'));
    } finally {
      await other.close();
      await new Promise<void>((resolve) => evil.close(() => resolve()));
    }
  });
});
