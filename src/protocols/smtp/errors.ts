/**
 * Failures as SMTP replies (RFC 5321 4.2, enhanced status codes RFC 3463),
 * so the sending MTA retries (4xx) or bounces (5xx) instead of seeing a
 * dropped connection.
 */
import { PolyproxyError } from '../../core/errors.ts';
import type { FailureKind, FailureSource } from '../../core/errors.ts';

/** Reply code and enhanced status per failure kind. */
export const SMTP_ERRORS: Readonly<Record<FailureKind, { readonly code: number; readonly status: string }>> = {
  NOT_FOUND: { code: 550, status: '5.1.2' }, //          bad destination system address
  FORBIDDEN: { code: 550, status: '5.7.1' }, //          delivery not authorized
  UNAVAILABLE: { code: 421, status: '4.3.0' }, //        mail system temporarily unavailable
  TIMEOUT: { code: 421, status: '4.3.0' },
  BACKEND_UNREACHABLE: { code: 421, status: '4.3.0' },
  INTERNAL: { code: 421, status: '4.3.0' },
  PROTOCOL: { code: 500, status: '5.5.2' }, //           syntax error
  HANDSHAKE_TIMEOUT: { code: 421, status: '4.4.2' }, //  bad connection (timeout)
  TLS_REQUIRED: { code: 530, status: '5.7.0' }, //       must issue STARTTLS first
  TOO_MANY: { code: 421, status: '4.3.2' }, //           system not accepting network messages
  SHUTTING_DOWN: { code: 421, status: '4.3.2' },
  LIMITED: { code: 421, status: '4.7.0' }, //           RFC 3463 4.7.0: other security/policy status; the MTA retries later
};

function text(err: PolyproxyError, domain: string | undefined): string {
  const where = domain === undefined ? 'the requested domain' : domain;
  switch (err.kind) {
    case 'NOT_FOUND':
      return `Mail for ${where} is not accepted here (not routed)`;
    case 'FORBIDDEN':
      return `Mail for ${where} is not allowed`;
    case 'UNAVAILABLE':
    case 'TIMEOUT':
    case 'BACKEND_UNREACHABLE':
    case 'INTERNAL':
      return `Service for ${where} temporarily unavailable, closing connection`;
    case 'PROTOCOL':
      return 'Syntax error';
    case 'HANDSHAKE_TIMEOUT':
      return 'Timeout waiting for a command, closing connection';
    case 'TLS_REQUIRED':
      return 'Must issue a STARTTLS command first';
    case 'TOO_MANY':
      return 'Too many connections, try again later';
    case 'SHUTTING_DOWN':
      return 'Service shutting down, closing connection';
    case 'LIMITED':
      return `Too many connections for ${where}, try again later`;
  }
}

/** The reply line for a failure, with its CRLF. */
export function failureReply(err: PolyproxyError, domain: string | undefined): string {
  const { code, status } = SMTP_ERRORS[err.kind];
  return `${code} ${status} ${text(err, domain)}\r\n`;
}

/**
 * A routing refusal the session survives (RFC 5321 4.2.2: 550 refuses this
 * command, not the session): the client may greet with another domain, try
 * another recipient, RSET or QUIT. Every other failure ends the session.
 */
export function refusesInSession(err: PolyproxyError): boolean {
  return err.kind === 'NOT_FOUND' || err.kind === 'FORBIDDEN';
}

/** The reply for a failure; the listener closes the connection after it. */
export function encodeFailure(err: PolyproxyError, domain: string | undefined): Buffer {
  if (err instanceof SmtpReplyError) return Buffer.from(err.reply);
  return Buffer.from(failureReply(err, domain));
}

/** A failure whose exact reply is known (`501 5.5.4 ...`, a backend's own refusal). */
export class SmtpReplyError extends PolyproxyError {
  readonly reply: string | Buffer;

  constructor(kind: FailureKind, message: string, reply: string | Buffer, options: { source?: FailureSource; resourceId?: string } = {}) {
    super(kind, message, options);
    this.name = 'SmtpReplyError';
    this.reply = reply;
  }
}
