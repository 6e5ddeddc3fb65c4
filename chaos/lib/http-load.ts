/**
 * A keep-alive HTTP load that tells failures apart, for the drain: wrk
 * counts a reconnect refused by a closed listener as a read error, like a
 * request cut off mid-way, so it cannot say whether a drain failed requests.
 * Here `connections` loops (undici, one connection each, keep-alive, no
 * retries) send GETs until `seconds` pass and classify each request:
 *
 * - ok: a 2xx response arrived in full;
 * - refused: the connect was refused (ECONNREFUSED): nothing was sent, the
 *   listener had stopped accepting — expected once a drain began;
 * - failed: anything else (a non-2xx answer, a reset or close after the
 *   request was written, a timeout).
 */
import { Client } from 'undici';

export interface HttpLoadResult {
  readonly ok: number;
  readonly refused: number;
  readonly failed: number;
  /** The first few failure reasons, for the report. */
  readonly reasons: readonly string[];
}

export async function httpLoad(url: string, host: string, seconds: number, connections = 32): Promise<HttpLoadResult> {
  const stopAt = Date.now() + seconds * 1000;
  let ok = 0;
  let refused = 0;
  let failed = 0;
  const reasons = new Set<string>();
  const origin = new URL(url);
  const loop = async (): Promise<void> => {
    let client = new Client(origin.origin, { pipelining: 1, connect: { timeout: 5000 }, headersTimeout: 5000, bodyTimeout: 5000 });
    while (Date.now() < stopAt) {
      try {
        const res = await client.request({ method: 'GET', path: origin.pathname, headers: { host } });
        await res.body.dump();
        if (res.statusCode >= 200 && res.statusCode < 300) ok++;
        else {
          failed++;
          reasons.add(`status ${res.statusCode}`);
        }
      } catch (err) {
        const code = (err as { code?: string }).code ?? (err as Error).name;
        if (code === 'ECONNREFUSED') {
          refused++;
          // Nothing listens: do not spin on refusals.
          await new Promise((resolve) => setTimeout(resolve, 20));
        } else {
          failed++;
          if (reasons.size < 5) reasons.add(`${code}: ${(err as Error).message}`);
        }
        await client.destroy().catch(() => {});
        client = new Client(origin.origin, { pipelining: 1, connect: { timeout: 5000 }, headersTimeout: 5000, bodyTimeout: 5000 });
      }
    }
    await client.close().catch(() => {});
  };
  await Promise.all(Array.from({ length: connections }, loop));
  return { ok, refused, failed, reasons: [...reasons] };
}
