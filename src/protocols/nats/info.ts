/**
 * The INFO the proxy sends before it knows the tenant, and the check that
 * the backend it later reaches can honour it.
 *
 * A NATS server speaks first, so the proxy must announce server options
 * before CONNECT names the tenant (and so the backend). It announces fixed,
 * configured values — `maxPayload`, `headers`, `serverVersion` — and never
 * relays the backend's INFO: the client sees one INFO, the proxy's. After
 * connecting, the proxy reads the backend's INFO and checks that it offers
 * at least as much as was announced (max_payload not smaller, headers when
 * announced, a version not older, protocol 1, no TLS demanded of the
 * proxy); a backend that falls short is refused with -ERR 'Server
 * Unavailable' before the client's CONNECT reaches it, so the client never
 * works against values its server contradicts. The defaults are nats-server's own
 * (1 MiB payloads, headers on) and a version old enough (2.2.0, the first
 * with headers) that clients enable no feature a newer backend would have
 * to provide.
 *
 * What is deliberately not announced: `nonce` (a client's signature over the
 * proxy's nonce would not satisfy the backend, which checks its own; NKey
 * and non-bearer JWT users therefore cannot pass, see README), `connect_urls`
 * (cluster discovery would take clients around the proxy; backends' later
 * INFO updates are relayed as is, so run clustered backends with
 * `no_advertise: true`), and `jetstream`.
 */
import { randomBytes } from 'node:crypto';
import type { ServerInfo } from './parse.ts';

export interface AnnouncedInfo {
  readonly maxPayload: number;
  readonly headers: boolean;
  readonly serverVersion: string;
  /** The listener terminates TLS: the client must upgrade after INFO. */
  readonly tls: boolean;
  /** The listener requires client certificates (INFO's tls_verify). */
  readonly tlsVerify: boolean;
  /** INFO's server_name. */
  readonly serverName: string;
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** This process's server_id: 56 characters starting with N, as nats-server's (a public NKey). */
export const SERVER_ID = `N${[...randomBytes(55)].map((b) => BASE32[b % 32]).join('')}`;

/** The proxy's INFO line for one client. */
export function infoLine(announced: AnnouncedInfo, clientId: number, clientIp: string): Buffer {
  const info: Record<string, unknown> = {
    server_id: SERVER_ID,
    server_name: announced.serverName,
    version: announced.serverVersion,
    proto: 1,
    headers: announced.headers,
    auth_required: true,
    max_payload: announced.maxPayload,
    client_id: clientId,
    client_ip: clientIp.startsWith('::ffff:') ? clientIp.slice(7) : clientIp,
  };
  if (announced.tls) {
    info.tls_required = true;
    info.tls_verify = announced.tlsVerify;
  }
  return Buffer.from(`INFO ${JSON.stringify(info)} \r\n`);
}

/** major.minor.patch of a version string, or null. */
export function parseVersion(text: unknown): [number, number, number] | null {
  if (typeof text !== 'string') return null;
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(text);
  return match === null ? null : [Number(match[1]), Number(match[2]), Number(match[3])];
}

function older(a: [number, number, number], b: [number, number, number]): boolean {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return (a[i] as number) < (b[i] as number);
  return false;
}

/** Why the backend cannot honour what the proxy announced, or null when it can. */
export function incompatibility(announced: AnnouncedInfo, backend: ServerInfo): string | null {
  if (backend.tls_required === true) return 'the backend requires TLS (the proxy connects to backends in plaintext)';
  if (typeof backend.max_payload !== 'number' || backend.max_payload < announced.maxPayload) {
    return `the backend's max_payload ${String(backend.max_payload)} is smaller than the announced ${announced.maxPayload}`;
  }
  if (announced.headers && backend.headers !== true) return 'the backend does not support headers, which the proxy announced';
  if (typeof backend.proto !== 'number' || backend.proto < 1) return `the backend speaks protocol ${String(backend.proto)}, not 1`;
  const version = parseVersion(backend.version);
  const wanted = parseVersion(announced.serverVersion) as [number, number, number];
  if (version === null || older(version, wanted)) return `the backend's version ${String(backend.version)} is older than the announced ${announced.serverVersion}`;
  return null;
}
