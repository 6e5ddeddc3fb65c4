/**
 * Failures as Connection.Close frames with the spec's reply codes
 * (amqp0-9-1.xml constants), so amqplib, pika and the Java client show
 * "530 NOT_ALLOWED - ..." instead of "socket closed". A Close is only
 * valid once the server sent Connection.Start, so a failure before that
 * (too many connections at accept, the drain, a client that never sent its
 * header) is answered with the proxy's Start and then the Close; a bad
 * protocol header is answered with the proxy's own header (§4.2.2).
 */
import { PolyproxyError } from '../../core/errors.ts';
import type { FailureKind, FailureSource } from '../../core/errors.ts';

/** Reply codes (amqp0-9-1.xml). */
export const REPLY = {
  CONNECTION_FORCED: 320,
  INVALID_PATH: 402,
  ACCESS_REFUSED: 403,
  FRAME_ERROR: 501,
  SYNTAX_ERROR: 502,
  COMMAND_INVALID: 503,
  CHANNEL_ERROR: 504,
  UNEXPECTED_FRAME: 505,
  RESOURCE_ERROR: 506,
  NOT_ALLOWED: 530,
  NOT_IMPLEMENTED: 540,
  INTERNAL_ERROR: 541,
} as const;

/** The reply code's name, as brokers print it before the text ("NOT_ALLOWED - ..."). */
export const REPLY_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(REPLY).map(([name, code]) => [code, name]));

/** Reply code per failure kind. */
export const REPLY_CODES: Readonly<Record<FailureKind, number>> = {
  NOT_FOUND: REPLY.NOT_ALLOWED, //             RabbitMQ's own answer to an unknown vhost
  FORBIDDEN: REPLY.NOT_ALLOWED, //             ... and to a vhost the user may not open
  UNAVAILABLE: REPLY.INTERNAL_ERROR,
  TIMEOUT: REPLY.INTERNAL_ERROR,
  BACKEND_UNREACHABLE: REPLY.INTERNAL_ERROR,
  INTERNAL: REPLY.INTERNAL_ERROR,
  TOO_MANY: REPLY.RESOURCE_ERROR,
  LIMITED: REPLY.NOT_ALLOWED, //                RabbitMQ's answer past a vhost's connection limit
  SHUTTING_DOWN: REPLY.CONNECTION_FORCED,
  TLS_REQUIRED: REPLY.ACCESS_REFUSED,
  PROTOCOL: REPLY.COMMAND_INVALID,
  HANDSHAKE_TIMEOUT: REPLY.CONNECTION_FORCED,
};

export interface RefusalOptions {
  /** The reply code, or 'header': answer with the protocol header (a client speaking another protocol or version). */
  readonly reply: number | 'header';
  /** The method the failure is about (Close's class-id and method-id), default 0/0. */
  readonly classId?: number;
  readonly methodId?: number;
  /** Bytes to send as they are (the broker's own Close). */
  readonly frame?: Buffer;
  readonly source?: FailureSource;
  readonly resourceId?: string;
}

/** A failure with its own reply code (or the broker's own Close frame). */
export class AmqpRefusal extends PolyproxyError {
  readonly reply: number | 'header';
  readonly classId: number;
  readonly methodId: number;
  readonly frame: Buffer | undefined;

  constructor(kind: FailureKind, message: string, options: RefusalOptions) {
    super(kind, message, { source: options.source ?? 'client', ...(options.resourceId === undefined ? {} : { resourceId: options.resourceId }) });
    this.name = 'AmqpRefusal';
    this.reply = options.reply;
    this.classId = options.classId ?? 0;
    this.methodId = options.methodId ?? 0;
    this.frame = options.frame;
  }
}

/** The Close's reply text: the code's name, as RabbitMQ writes it, and what happened. */
export function replyText(err: PolyproxyError, code: number, vhost: string | undefined): string {
  const where = vhost === undefined ? 'the virtual host' : `vhost '${vhost}'`;
  let text: string;
  switch (err.kind) {
    case 'NOT_FOUND':
      text = `${where} is not routed by this proxy`;
      break;
    case 'FORBIDDEN':
      text = err instanceof AmqpRefusal ? err.message : `access to ${where} is forbidden`;
      break;
    case 'UNAVAILABLE':
    case 'TIMEOUT':
      text = `${where} is unavailable right now, try again later`;
      break;
    case 'BACKEND_UNREACHABLE':
      text = `cannot reach the broker for ${where}`;
      break;
    case 'TOO_MANY':
      text = 'too many connections';
      break;
    case 'LIMITED':
      text = `connection to ${where} refused: ${err.message}`;
      break;
    case 'SHUTTING_DOWN':
      text = 'the proxy is shutting down';
      break;
    case 'TLS_REQUIRED':
      text = `connection to ${where} refused: ${err.message}`;
      break;
    case 'INTERNAL':
      text = err instanceof AmqpRefusal ? err.message : `internal proxy error while connecting to ${where}`;
      break;
    case 'HANDSHAKE_TIMEOUT':
      text = 'handshake timeout';
      break;
    case 'PROTOCOL':
      text = err.message;
      break;
  }
  return `${REPLY_NAMES.get(code) ?? 'ERROR'} - ${text}`;
}
