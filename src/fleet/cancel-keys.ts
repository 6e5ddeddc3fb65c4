/**
 * PostgreSQL cancel keys across the fleet: `<prefix>pgcancel:<key>` → the
 * node whose session got that BackendKeyData. A CancelRequest arrives on a
 * new connection, which the load balancer may send to any instance; the
 * instance that does not hold the key looks up the owner and sends the
 * cancel packet to its inbox (fleet.ts), and the owner forwards it to the
 * backend it knows (postgres/cancel-registry.ts).
 *
 * Keys carry a TTL as a backstop (a crashed instance's keys expire); a
 * session's own close deletes its key at once.
 */
import type { Fleet } from './fleet.ts';
import { fleetFallbacks } from './metrics.ts';

/** Longer than any sane session; sessions that outlive it cannot be cancelled from another instance. */
const CANCEL_KEY_TTL_SECONDS = 7 * 24 * 3600;

const RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

export const CANCEL_KIND = 'pg-cancel';

export function registerFleetCancelKey(fleet: Fleet, key: string): void {
  fleet.link.run((c) => c.set(fleet.key(`pgcancel:${key}`), fleet.id, { expiration: { type: 'EX', value: CANCEL_KEY_TTL_SECONDS } })).catch(() => fleetFallbacks.inc({ feature: 'pg-cancel' }));
}

export function unregisterFleetCancelKey(fleet: Fleet, key: string): void {
  fleet.link.run((c) => c.eval(RELEASE, { keys: [fleet.key(`pgcancel:${key}`)], arguments: [fleet.id] })).catch(() => {});
}

/** Sends the cancel to the instance holding `key`. False when none does, it is this one, or Redis is down. */
export async function forwardCancelInFleet(fleet: Fleet, key: string, packet: Buffer): Promise<boolean> {
  let owner: string | null;
  try {
    owner = await fleet.link.run((c) => c.get(fleet.key(`pgcancel:${key}`)));
  } catch {
    fleetFallbacks.inc({ feature: 'pg-cancel' });
    return false;
  }
  // Sibling workers of this instance get it by the supervisor's broadcast: sending it twice could cancel their next query.
  if (owner === null || owner === fleet.id || (fleet.id !== fleet.instanceId && owner.startsWith(`${fleet.instanceId}/`))) return false;
  return fleet.notify(owner, CANCEL_KIND, { key, packet: packet.toString('base64') });
}
