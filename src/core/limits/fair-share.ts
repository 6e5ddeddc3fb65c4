/**
 * Fair share of one listener's maxConnections. Each listener counts its
 * sessions per tenant. Once it is within its reserve of maxConnections (the
 * last `fairShareReservePercent`, at least one connection), a new session is
 * admitted only when its tenant holds less than its share: maxConnections
 * divided by the tenants with sessions on the listener, counting itself and
 * at least two — so a tenant alone never takes the reserve, which stays for
 * a second tenant. Past maxConnections every client is refused at accept
 * (the protocol's TOO_MANY), as without limits; nothing is evicted.
 */
export class ListenerShare {
  readonly counts = new Map<string, number>();
  /** The listener's maxConnections (0 = no limit: no fair share). */
  max: number;
  total = 0;

  constructor(max: number) {
    this.max = max;
  }

  /** True when a new session of `tenant` may open now (read before `add`). */
  fits(tenant: string, reservePercent: number): boolean {
    const max = this.max;
    if (max <= 0) return true;
    const reserve = Math.max(1, Math.floor((max * reservePercent) / 100));
    if (this.total + 1 <= max - reserve) return true;
    const held = this.counts.get(tenant) ?? 0;
    const tenants = this.counts.size + (held === 0 ? 1 : 0);
    return held < Math.floor(max / Math.max(2, tenants));
  }

  add(tenant: string): void {
    this.counts.set(tenant, (this.counts.get(tenant) ?? 0) + 1);
    this.total++;
  }

  remove(tenant: string): void {
    const n = (this.counts.get(tenant) ?? 0) - 1;
    if (n <= 0) this.counts.delete(tenant);
    else this.counts.set(tenant, n);
    this.total--;
  }
}
