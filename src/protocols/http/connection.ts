/**
 * The http listener (DESIGN.md §3: the resource id is the Host header,
 * lowercased, port stripped). An HTTP/1.1 connection carries many requests,
 * each possibly for another Host, so it does not fit core's one-shot
 * identify → relay pipeline: identify terminates TLS if configured, takes
 * the connection over (ProtocolSession.takeOver cancels core's handshake
 * timer), runs HttpSession's per-request loop with the listener's router
 * and core's connect helper, and resolves null when the connection is done.
 * WebSocket and other upgrades go back to core's Relay after the 101.
 */
import type { ClientConnection } from '../../core/client-connection.ts';
import { PolyproxyError } from '../../core/errors.ts';
import type { ProtocolModule, ProtocolSession } from '../../core/protocol.ts';
import { errorResponse } from './errors.ts';
import { BackendPool } from './pool.ts';
import { HttpSession } from './session.ts';
import type { HttpSettings } from './session.ts';
import { H2Front } from './h2/front.ts';

/** The listener's HTTP/2 side (h2/front.ts) with its settings. */
function createH2Front(options: HttpProtocolOptions, settings: HttpSettings): H2Front {
  const o = options.http2 ?? {};
  return new H2Front(
    {
      maxConcurrentStreams: o.maxConcurrentStreams ?? 128,
      maxHeaderListSize: o.maxHeaderListSize ?? settings.limits.maxHeadBytes,
      maxHeaders: settings.limits.maxHeaders,
      initialWindowSize: o.initialWindowSize ?? 65535,
      connectionWindowSize: o.connectionWindowSize ?? 1024 * 1024,
      maxResets: o.maxResets ?? 200,
      resetWindowMs: o.resetWindowMs ?? 10000,
      idleTimeoutMs: settings.keepAliveTimeoutMs,
      backendTimeoutMs: settings.backendTimeoutMs,
      telemetryHeaders: settings.telemetryHeaders,
      proto: settings.proto,
    },
    {
      maxConnectionsPerBackend: options.pool?.maxConnectionsPerBackend ?? 256,
      queueTimeoutMs: options.pool?.queueTimeoutMs ?? 5000,
      maxQueue: options.pool?.maxQueue ?? 1024,
      limits: settings.limits,
      idleTimeoutMs: options.pool?.idleTimeoutMs ?? 30000,
      connectTimeoutMs: options.connectTimeoutMs ?? 5000,
      keepAliveMs: options.tcpKeepAliveMs ?? 0,
    },
  );
}

/** The http listener's config fields this module reads (config.ts). */
export interface HttpProtocolOptions {
  readonly tls?: unknown;
  readonly maxHeadBytes?: number;
  readonly maxHeaders?: number;
  readonly requestTimeoutMs?: number;
  readonly keepAliveTimeoutMs?: number;
  readonly backendTimeoutMs?: number;
  readonly telemetryHeaders?: boolean;
  readonly connectTimeoutMs?: number;
  readonly tcpKeepAliveMs?: number;
  readonly http2?: {
    readonly enabled?: boolean;
    readonly maxConcurrentStreams?: number;
    readonly maxHeaderListSize?: number | undefined;
    readonly initialWindowSize?: number;
    readonly connectionWindowSize?: number;
    readonly maxResets?: number;
    readonly resetWindowMs?: number;
  };
  readonly pool?: {
    readonly maxPerBackend?: number;
    readonly idleTimeoutMs?: number;
    readonly maxConnectionsPerBackend?: number;
    readonly queueTimeoutMs?: number;
    readonly maxQueue?: number;
  };
}

export const DEFAULT_MAX_HEAD_BYTES = 64 * 1024;

export function createHttpProtocol(options: HttpProtocolOptions = {}): ProtocolModule & { readonly pool: BackendPool } {
  const settings: HttpSettings = {
    limits: { maxHeadBytes: options.maxHeadBytes ?? DEFAULT_MAX_HEAD_BYTES, maxHeaders: options.maxHeaders ?? 100 },
    requestTimeoutMs: options.requestTimeoutMs ?? 30000,
    keepAliveTimeoutMs: options.keepAliveTimeoutMs ?? 60000,
    backendTimeoutMs: options.backendTimeoutMs ?? 60000,
    telemetryHeaders: options.telemetryHeaders ?? false,
    proto: options.tls === undefined ? 'http' : 'https',
    h2: null,
  };
  const pool = new BackendPool({
    maxPerBackend: options.pool?.maxPerBackend ?? 64,
    idleTimeoutMs: options.pool?.idleTimeoutMs ?? 30000,
    maxConnectionsPerBackend: options.pool?.maxConnectionsPerBackend ?? 256,
    queueTimeoutMs: options.pool?.queueTimeoutMs ?? 5000,
    maxQueue: options.pool?.maxQueue ?? 1024,
  });
  const h2 = options.http2?.enabled === false ? null : createH2Front(options, settings);
  (settings as { h2: H2Front | null }).h2 = h2;
  return {
    name: 'http',
    pool,
    async identify(conn: ClientConnection, session?: ProtocolSession) {
      if (session === undefined) throw new PolyproxyError('INTERNAL', 'the http protocol needs the listener session');
      if (conn.tlsAvailable) await conn.upgradeToTls({ bufferedIsTls: true }); // every byte is TLS from the start (ClientHello first)
      session.takeOver();
      const { socket, leftover } = conn.detach();
      if (h2 !== null && (socket as { alpnProtocol?: string | false }).alpnProtocol === 'h2') {
        await h2.accept(socket, leftover, session).done;
        return null;
      }
      const http = new HttpSession(socket, leftover, settings, pool, session);
      await http.done;
      return null;
    },
    encodeError(err, resourceId) {
      return errorResponse(err, resourceId);
    },
  };
}
