/**
 * Failures as MongoDB error documents `{ ok: 0, errmsg, code, codeName }`,
 * sent as the reply to the client's pending request (OP_MSG, or OP_REPLY for
 * a legacy OP_QUERY), so drivers raise a MongoServerError with a real code
 * instead of a network error. Codes come from mongod's error_codes.yml.
 */
import type { FailureKind, PolyproxyError } from '../../core/errors.ts';
import { Double } from './bson.ts';
import type { BsonDocument } from './bson.ts';
import { encodeOpMsg, encodeOpReply } from './wire.ts';

export interface MongoErrorCode {
  readonly code: number;
  readonly codeName: string;
}

export const INTERNAL_ERROR: MongoErrorCode = { code: 1, codeName: 'InternalError' };
export const UNAUTHORIZED: MongoErrorCode = { code: 13, codeName: 'Unauthorized' };
export const NAMESPACE_NOT_FOUND: MongoErrorCode = { code: 26, codeName: 'NamespaceNotFound' };
export const INVALID_NAMESPACE: MongoErrorCode = { code: 73, codeName: 'InvalidNamespace' };
export const NODE_NOT_FOUND: MongoErrorCode = { code: 74, codeName: 'NodeNotFound' };
export const COMMAND_NOT_SUPPORTED: MongoErrorCode = { code: 115, codeName: 'CommandNotSupported' };
export const NETWORK_INTERFACE_EXCEEDED_TIME_LIMIT: MongoErrorCode = { code: 202, codeName: 'NetworkInterfaceExceededTimeLimit' };
export const SHUTDOWN_IN_PROGRESS: MongoErrorCode = { code: 91, codeName: 'ShutdownInProgress' };
/** mongod 8's ingress rate limiter refusal (error_codes.yml 462). */
export const INGRESS_REQUEST_RATE_LIMIT_EXCEEDED: MongoErrorCode = { code: 462, codeName: 'IngressRequestRateLimitExceeded' };
export const UNSUPPORTED_OP_QUERY_COMMAND: MongoErrorCode = { code: 352, codeName: 'UnsupportedOpQueryCommand' };

/**
 * The error code per failure kind; null closes the connection without a
 * reply (no request is pending, or the bytes cannot be trusted).
 *
 * Unavailability deliberately uses codes drivers do NOT retry (74, 202)
 * rather than HostUnreachable (6) / NetworkTimeout (89): the listener closes
 * a refused connection right after the reply, so a driver's immediate retry
 * would reuse the connection it just got back, fail with a network error and
 * clear its whole pool. ShutdownInProgress (91) would clear the pool too.
 * Once core can keep a refused MongoDB connection in its opening, 6 and 89
 * are the better answers.
 */
export const MONGO_ERROR: Readonly<Record<FailureKind, MongoErrorCode | null>> = {
  NOT_FOUND: NAMESPACE_NOT_FOUND,
  FORBIDDEN: UNAUTHORIZED,
  UNAVAILABLE: NODE_NOT_FOUND,
  TIMEOUT: NETWORK_INTERFACE_EXCEEDED_TIME_LIMIT,
  INTERNAL: INTERNAL_ERROR,
  BACKEND_UNREACHABLE: NODE_NOT_FOUND,
  TLS_REQUIRED: UNAUTHORIZED,
  PROTOCOL: null, //          malformed framing: nothing to answer
  HANDSHAKE_TIMEOUT: null, // no request pending
  TOO_MANY: null, //          refused at accept, before any request (mongod closes too)
  LIMITED: INGRESS_REQUEST_RATE_LIMIT_EXCEEDED, // a tenant limit; refused after the first request, so it has a reply
  SHUTTING_DOWN: SHUTDOWN_IN_PROGRESS, // the driver clears its pool for this proxy: right, it is going away
};

/** The request a reply answers. */
export interface PendingRequest {
  readonly requestID: number;
  readonly op: 'msg' | 'query';
  /** An OP_MSG with moreToCome expects no reply. */
  readonly moreToCome: boolean;
}

export function errorDocument(error: MongoErrorCode, errmsg: string): BsonDocument {
  return { ok: new Double(0), errmsg, code: error.code, codeName: error.codeName };
}

/** Frames a reply document for the request it answers. */
export function replyTo(request: PendingRequest, replyId: number, doc: BsonDocument): Buffer | null {
  if (request.moreToCome) return null;
  return request.op === 'msg' ? encodeOpMsg(replyId, request.requestID, doc) : encodeOpReply(replyId, request.requestID, doc);
}

/** The error text for a failure, naming the database. */
export function errorMessage(err: PolyproxyError, database: string | undefined): string {
  const db = database === undefined ? 'the requested database' : `database "${database}"`;
  switch (err.kind) {
    case 'NOT_FOUND':
      return `${db} is not routed by this proxy`;
    case 'FORBIDDEN':
      return `access to ${db} is forbidden`;
    case 'UNAVAILABLE':
    case 'TIMEOUT':
      return `${db} is unavailable right now, try again later`;
    case 'BACKEND_UNREACHABLE':
      return `cannot reach the server for ${db}`;
    case 'TLS_REQUIRED':
      return `connection to ${db} refused: ${err.message}`;
    case 'INTERNAL':
      return `internal proxy error while connecting to ${db}`;
    case 'SHUTTING_DOWN':
      return 'the proxy is shutting down';
    case 'LIMITED':
      return `too many connections for tenant ${db}: ${err.message}`;
    default:
      return err.message;
  }
}

/** The error reply for a failure, or null to close without one. */
export function encodeErrorReply(err: PolyproxyError, database: string | undefined, request: PendingRequest | undefined, replyId: number): Buffer | null {
  const code = MONGO_ERROR[err.kind];
  if (code === null || request === undefined) return null;
  return replyTo(request, replyId, errorDocument(code, errorMessage(err, database)));
}
