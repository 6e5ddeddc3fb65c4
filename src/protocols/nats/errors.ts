/**
 * Failures as NATS `-ERR '<text>'\r\n` lines, worded as nats-server words
 * them where it has words for the situation (v2.9, server/client.go and
 * server/errors.go), so nats.js and the other clients raise the error they
 * know ('Authorization Violation' becomes an AUTHORIZATION_VIOLATION) and
 * reconnect or give up as they would with a real server:
 *
 * | failure                                   | line                                            |
 * |-------------------------------------------|-------------------------------------------------|
 * | no tenant in CONNECT, unrouted, forbidden | -ERR 'Authorization Violation'                  |
 * | a command before CONNECT                  | -ERR 'Authorization Violation'                  |
 * | CONNECT too slow                          | -ERR 'Authentication Timeout'                   |
 * | listener's maxConnections                 | INFO, then -ERR 'maximum connections exceeded'  |
 * | malformed opening                         | -ERR 'Unknown Protocol Operation'               |
 * | over-long control line                    | -ERR 'Maximum Control Line Exceeded'            |
 * | client certificate missing / invalid      | -ERR 'Secure Connection - TLS Required'         |
 * | backend down, unavailable, incompatible   | -ERR 'Server Unavailable'                       |
 * | drain deadline                            | -ERR 'Server Shutdown'                          |
 *
 * The last two have no nats-server counterpart (a server does not proxy; it
 * closes on shutdown): they are short texts in the same style. Every
 * failure closes the connection, as nats-server does after each of these.
 */
import type { FailureKind, FailureSource } from '../../core/errors.ts';
import { PolyproxyError } from '../../core/errors.ts';

/** The quoted text per failure kind. */
export const NATS_ERRORS: Readonly<Record<FailureKind, string>> = {
  NOT_FOUND: 'Authorization Violation',
  FORBIDDEN: 'Authorization Violation',
  UNAVAILABLE: 'Server Unavailable',
  TIMEOUT: 'Server Unavailable',
  BACKEND_UNREACHABLE: 'Server Unavailable',
  INTERNAL: 'Server Unavailable',
  PROTOCOL: 'Unknown Protocol Operation',
  HANDSHAKE_TIMEOUT: 'Authentication Timeout',
  TLS_REQUIRED: 'Secure Connection - TLS Required',
  TOO_MANY: 'maximum connections exceeded',
  LIMITED: 'maximum connections exceeded',
  SHUTTING_DOWN: 'Server Shutdown',
};

/** A failure whose exact nats-server text is known (e.g. 'Maximum Control Line Exceeded'). */
export class NatsError extends PolyproxyError {
  readonly text: string;

  constructor(kind: FailureKind, message: string, text: string, options: { source?: FailureSource; resourceId?: string } = {}) {
    super(kind, message, { source: options.source ?? 'client', ...(options.resourceId === undefined ? {} : { resourceId: options.resourceId }) });
    this.name = 'NatsError';
    this.text = text;
  }
}

/** The `-ERR` line for a failure. */
export function errorLine(err: PolyproxyError): string {
  const text = err instanceof NatsError ? err.text : NATS_ERRORS[err.kind];
  return `-ERR '${text}'\r\n`;
}
