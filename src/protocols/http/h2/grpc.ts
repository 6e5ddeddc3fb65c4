/**
 * gRPC over HTTP/2 as the proxy sees it (grpc/grpc PROTOCOL-HTTP2.md):
 * which requests are gRPC, the `grpc-timeout` deadline, and the proxy's own
 * failures as trailers-only responses (HTTP 200, `content-type:
 * application/grpc`, `grpc-status` and `grpc-message` in the one HEADERS
 * frame that ends the stream), since gRPC clients read status from there
 * and treat an HTML error page as a protocol failure.
 */
import type { OutgoingHttpHeaders } from 'node:http2';
import type { FailureKind, PolyproxyError } from '../../../core/errors.ts';

/** gRPC status codes the proxy answers with (grpc/grpc doc/statuscodes.md). */
export const GRPC_DEADLINE_EXCEEDED = 4;
export const GRPC_NOT_FOUND = 5;
export const GRPC_PERMISSION_DENIED = 7;
export const GRPC_INTERNAL = 13;
export const GRPC_UNAVAILABLE = 14;

const STATUS: Record<FailureKind, number> = {
  NOT_FOUND: GRPC_NOT_FOUND,
  FORBIDDEN: GRPC_PERMISSION_DENIED,
  UNAVAILABLE: GRPC_UNAVAILABLE,
  TIMEOUT: GRPC_DEADLINE_EXCEEDED,
  BACKEND_UNREACHABLE: GRPC_UNAVAILABLE,
  PROTOCOL: GRPC_INTERNAL,
  HANDSHAKE_TIMEOUT: GRPC_DEADLINE_EXCEEDED,
  TLS_REQUIRED: GRPC_PERMISSION_DENIED,
  TOO_MANY: GRPC_UNAVAILABLE,
  LIMITED: 8, // RESOURCE_EXHAUSTED: a tenant limit
  SHUTTING_DOWN: GRPC_UNAVAILABLE,
  INTERNAL: GRPC_INTERNAL,
};

/** `application/grpc`, `application/grpc+proto`, `application/grpc+json`...; not `application/grpc-web` (HTTP/1.1-safe, relayed as ordinary traffic). */
export function isGrpc(contentType: string | undefined): boolean {
  if (contentType === undefined || contentType.length < 16) return false;
  if (contentType.slice(0, 16).toLowerCase() !== 'application/grpc') return false;
  if (contentType.length === 16) return true;
  const next = contentType.charCodeAt(16);
  return next === 0x2b /* + */ || next === 0x3b /* ; */;
}

/** Milliseconds per unit of grpc-timeout: Hours, Minutes, Seconds, milliseconds, microseconds, nanoseconds. */
function unitMs(unit: number): number {
  switch (unit) {
    case 0x48:
      return 3_600_000;
    case 0x4d:
      return 60_000;
    case 0x53:
      return 1000;
    case 0x6d:
      return 1;
    case 0x75:
      return 0.001;
    case 0x6e:
      return 0.000001;
    default:
      return -1;
  }
}

/**
 * `grpc-timeout` → milliseconds (rounded up: a deadline is never made
 * shorter than asked), or undefined when absent or malformed. The grammar:
 * 1 to 8 ASCII digits and one unit letter of H M S m u n. A malformed value
 * is ignored here, as grpc-js and grpc-go servers ignore it; the header
 * still passes to the backend unchanged.
 */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const length = value.length;
  if (length < 2 || length > 9) return undefined;
  let amount = 0;
  for (let i = 0; i < length - 1; i++) {
    const c = value.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) return undefined;
    amount = amount * 10 + c;
  }
  const ms = unitMs(value.charCodeAt(length - 1));
  if (ms < 0) return undefined;
  return Math.ceil(amount * ms);
}

export function grpcStatusOf(err: PolyproxyError): number {
  return STATUS[err.kind] ?? GRPC_INTERNAL;
}

/** grpc-message is percent-encoded: bytes outside 0x20-0x7E and '%' itself (PROTOCOL-HTTP2.md). */
export function encodeGrpcMessage(message: string): string {
  let plain = true;
  for (let i = 0; i < message.length; i++) {
    const c = message.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return message;
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) out += byte < 0x20 || byte > 0x7e || byte === 0x25 ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(byte);
  return out;
}

/** The whole trailers-only response for a failure the proxy answers itself. */
export function grpcErrorHeaders(err: PolyproxyError, status = grpcStatusOf(err), message = err.message): OutgoingHttpHeaders {
  return {
    ':status': 200,
    'content-type': 'application/grpc',
    'grpc-status': String(status),
    'grpc-message': encodeGrpcMessage(message),
    'x-polyproxy-error': err.code,
  };
}
