/**
 * Raw TCP. Three ways to pick the backend, from cheapest to richest:
 *
 * - **fixed `backend`**: no opening to read; every connection is the
 *   listener's own resource and goes to that endpoint (balanced when it is a
 *   list). identify returns one shared Opening without reading a byte.
 * - **routed by first bytes** (no `backend`): the resource id is the
 *   listener name; identify waits up to `firstBytesTimeoutMs` for the
 *   client's first bytes (at most `firstBytesMax`) and hands them to the
 *   resolver as ResolveContext.firstBytes, then they are replayed to the
 *   backend. A client that sends nothing in time is routed with empty bytes.
 * - **routed by TLS SNI** (`tls` + `routeBy: sni`): the proxy terminates TLS
 *   and the resource id is the SNI server name, lowercased, so `routes` keys
 *   like `*.example.com` apply. The answer is cached per name like any id.
 *
 * With `tls` the proxy always terminates TLS at once (the backend sees
 * plaintext). Raw TCP cannot carry an error: failures close the connection.
 */
import type { ClientConnection } from '../../core/client-connection.ts';
import { PolyproxyError } from '../../core/errors.ts';
import type { Opening, ProtocolModule } from '../../core/protocol.ts';
import { readFirstBytes } from './first-bytes.ts';

/** The tcp listener's config fields this module reads (config.ts). */
export interface TcpProtocolOptions {
  /** Present: a fixed backend, the router is not consulted per client. */
  readonly backend?: unknown;
  /** Present: terminate TLS before anything else. */
  readonly tls?: unknown;
  readonly routeBy?: 'sni' | undefined;
  readonly firstBytesTimeoutMs?: number;
  readonly firstBytesMax?: number;
}

export const DEFAULT_FIRST_BYTES_TIMEOUT_MS = 1000;
export const DEFAULT_FIRST_BYTES_MAX = 4096;

export function createTcpProtocol(listenerName: string, options: TcpProtocolOptions = {}): ProtocolModule {
  const fixed: Opening = { resourceId: listenerName, replay: null };
  const encodeError = (): null => null;
  const terminate = options.tls !== undefined;
  if (options.backend !== undefined) {
    // The same opening, known before any byte: the listener may skip identify (its fast path).
    if (!terminate) return { name: 'tcp', identify: () => Promise.resolve(fixed), encodeError, immediateOpening: fixed };
    return {
      name: 'tcp',
      async identify(conn) {
        await secure(conn, listenerName);
        return fixed;
      },
      encodeError,
    };
  }
  if (options.routeBy === 'sni') {
    return {
      name: 'tcp',
      async identify(conn) {
        await secure(conn, listenerName);
        const name = conn.tls?.servername;
        if (name === undefined || name === '') {
          throw new PolyproxyError('NOT_FOUND', `listener ${listenerName} routes by SNI and the client sent no server name`, { source: 'client' });
        }
        return { resourceId: name.toLowerCase(), replay: null };
      },
      encodeError,
    };
  }
  const timeoutMs = options.firstBytesTimeoutMs ?? DEFAULT_FIRST_BYTES_TIMEOUT_MS;
  const max = options.firstBytesMax ?? DEFAULT_FIRST_BYTES_MAX;
  return {
    name: 'tcp',
    async identify(conn) {
      if (terminate) await secure(conn, listenerName);
      const firstBytes = await readFirstBytes(conn, timeoutMs, max);
      return { resourceId: listenerName, replay: firstBytes.length > 0 ? firstBytes : null, firstBytes };
    },
    encodeError,
  };
}

/** TLS termination right after accept, then the listener's client-certificate rule. */
async function secure(conn: ClientConnection, listenerName: string): Promise<void> {
  await conn.upgradeToTls();
  const problem = conn.clientCertProblem();
  if (problem !== null) throw new PolyproxyError('TLS_REQUIRED', problem, { source: 'client', resourceId: listenerName });
}
