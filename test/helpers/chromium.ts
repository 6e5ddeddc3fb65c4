/** Headless Chromium for dashboard tests: Debian's /usr/bin/chromium (or CHROMIUM_PATH) driven by playwright-core. */
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { serviceMissing } from './services.ts';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Why the browser tests cannot run, or null (under CI=true a missing browser fails instead). */
export function chromiumMissing(): Promise<string | null> {
  return serviceMissing(`Chromium is not installed at ${CHROMIUM} (apt-get install chromium)`, () =>
    access(CHROMIUM, constants.X_OK).then(
      () => true,
      () => false,
    ),
  );
}

/** A browser and a light-scheme 1280×1000 page at device scale 1 (screenshot pixels = CSS pixels). */
export async function openPage(): Promise<{ browser: Browser; page: Page }> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, deviceScaleFactor: 1, colorScheme: 'light' });
  return { browser, page: await context.newPage() };
}
