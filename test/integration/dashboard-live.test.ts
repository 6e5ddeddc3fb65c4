/**
 * The dashboard of a real proxy (CLI, two workers) in headless Chromium:
 * traffic through the proxy shows up live — listener totals, top resources,
 * endpoint health from the active probes — and the screenshot shows the
 * healthy endpoints' badges in green.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { request } from 'undici';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { GREEN, colourShare, decodePng } from '../helpers/png.ts';
import { chromiumMissing, openPage } from '../helpers/chromium.ts';

const WAIT = { timeout: 15_000 };

declare const document: { querySelector(selector: string): { getAttribute(name: string): string | null } | null };

describe('dashboard of a running proxy, live in Chromium', () => {
  let skip: string | null = null;
  let cli: RunningCli;
  let browser: Browser;
  let page: Page;
  const sites: http.Server[] = [];
  const endpoints: string[] = [];

  before(async () => {
    skip = await chromiumMissing();
    if (skip !== null) return;
    for (const name of ['one', 'two']) {
      const site = http.createServer((req, res) => res.end(`${name} ${req.url ?? ''}`));
      await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
      sites.push(site);
      endpoints.push(`127.0.0.1:${(site.address() as AddressInfo).port}`);
    }
    const config = await writeConfig({
      workers: 2,
      logLevel: 'warn',
      admin: { port: 0 },
      security: { allowPrivateBackends: true },
      health: { intervalMs: 200 },
      routes: { 'shop.test': endpoints },
      listeners: [{ name: 'web', protocol: 'http', host: '127.0.0.1', port: 0 }],
    });
    cli = await startCli(['--config', config]);
    ({ browser, page } = await openPage());
    await page.goto(`http://127.0.0.1:${(cli.ready as unknown as { admin: AddressInfo }).admin.port}/`);
  });

  after(async () => {
    await browser?.close();
    await cli?.stop();
    for (const site of sites) site.close();
  });

  const valueOf = (selector: string, want: string): Promise<unknown> =>
    page.waitForFunction(([sel, value]) => document.querySelector(sel)?.getAttribute('data-value') === value, [selector, want] as const, WAIT);

  it('shows traffic as it flows, and endpoint health in colour', async (t) => {
    if (skip !== null) return t.skip(skip);
    const total = '[data-testid="listener-row"][data-name="web"] [data-testid="listener-total"]';
    await valueOf(total, '0');
    for (let i = 0; i < 12; i++) {
      const res = await request(`http://127.0.0.1:${cli.port('web')}/${i}`, { headers: { host: 'shop.test', connection: 'close' }, reset: true });
      await res.body.text();
    }
    // 12 connections, served by either worker: the page shows the merged figure.
    await valueOf(total, '12');
    await valueOf('[data-testid="resource-row"][data-resource="shop.test"] [data-testid="resource-total"]', '12');

    // The balanced route's endpoints are probed: both show healthy, in green.
    const badges = endpoints.map((ep) => page.locator(`[data-testid="endpoint-row"][data-endpoint="${ep}"] [data-testid="endpoint-health"]`));
    for (const badge of badges) await badge.filter({ hasText: /healthy/i }).waitFor(WAIT);
    await badges[1]?.scrollIntoViewIfNeeded();
    const png = decodePng(await page.screenshot());
    for (const badge of badges) {
      const box = await badge.boundingBox();
      assert.ok(box !== null);
      const share = colourShare(png, box, GREEN);
      assert.ok(share > 0.5, `a healthy badge is green (${(share * 100).toFixed(0)}% of its pixels)`);
    }
  });
});
