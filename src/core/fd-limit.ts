/**
 * File descriptors: the process's limit (to size listeners'
 * maxConnections) and what running out of them looks like (EMFILE: the
 * process's limit, ENFILE: the system's).
 *
 * libuv answers an accept() that fails with EMFILE by accepting and closing
 * the pending connections on a reserved descriptor (uv__emfile_trick): the
 * clients are reset and nothing reaches JavaScript. So the proxy keeps
 * below the limit instead (maxConnections sized from it), and treats the
 * failures it can see (a backend dial, an accept error when the trick
 * itself fails) as a signal to stop accepting for a while.
 */
import { readFileSync } from 'node:fs';
import { PolyproxyError } from './errors.ts';

/** Descriptors kept out of the listeners' share: stdio, libuv, the admin server, listening sockets, resolvers, health checks, logs. */
export const FD_RESERVE = 64;
/** Descriptors one proxied session holds: the client's and the backend's. */
export const FDS_PER_SESSION = 2;

/** True for EMFILE or ENFILE, on the error or its cause. */
export function isFdExhaustion(err: unknown): boolean {
  for (let e = err, depth = 0; e !== null && typeof e === 'object' && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === 'EMFILE' || code === 'ENFILE') return true;
  }
  return false;
}

/** A backend dial that found no descriptor: the client gets its protocol's UNAVAILABLE error; not the backend's fault. */
export function fdExhaustedError(err: Error & { code?: string }): PolyproxyError {
  return new PolyproxyError('UNAVAILABLE', `the proxy is out of file descriptors (${err.code ?? 'EMFILE'})`, { source: 'internal', cause: err });
}

/**
 * The soft "Max open files" limit from /proc/self/limits (Node has no
 * getrlimit); null when unknown (not Linux) or unlimited.
 */
export function openFilesLimit(limitsText?: string): number | null {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'latin1');
    } catch {
      return null;
    }
  }
  const line = /^Max open files\s+(\S+)/m.exec(text);
  if (line === null) return null;
  const soft = Number(line[1]);
  return Number.isSafeInteger(soft) && soft > 0 ? soft : null;
}

/** What one listener's sessions hold in descriptors (ProtocolDescriptor.descriptors). */
export interface DescriptorUse {
  /** Per client session, always: FDS_PER_SESSION for a proxied session (client + backend). */
  readonly perSession: number;
  /**
   * A pool of connections the sessions share (ws-bridge's API pool): never
   * more than this many descriptors, and never more than one per session.
   */
  readonly pool?: number;
}

export const PROXIED_SESSION: DescriptorUse = { perSession: FDS_PER_SESSION };

/**
 * The maxConnections of listeners that set none (0): each listener gets an
 * equal share of the descriptors left after FD_RESERVE, divided by what a
 * session holds. With a pool, N sessions hold N × perSession + min(pool, N):
 * the most that fits is whichever is larger of share / (perSession + 1) (a
 * pool as large as the sessions) and (share − pool) / perSession (a pool
 * full at its bound). At least 1. No known limit: 0 (unlimited).
 */
export function defaultMaxConnections(limit: number | null, listeners: readonly DescriptorUse[]): number[] {
  if (limit === null) return listeners.map(() => 0);
  const share = (limit - FD_RESERVE) / Math.max(1, listeners.length);
  return listeners.map(({ perSession, pool }) => {
    const per = Math.max(1, perSession);
    const fits = pool === undefined ? share / per : Math.max(share / (per + 1), (share - pool) / per);
    return Math.max(1, Math.floor(fits));
  });
}
