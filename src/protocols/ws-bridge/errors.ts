/**
 * The bridge's failures as PolyproxyErrors, answered through core's error
 * pages (src/core/http-error-response.ts) in plain text, as ws2api answers:
 * the message is what the client or the API reads. Statuses are ws2api's
 * where it has one: 502 when the API cannot be reached or fails, 403 when
 * it does not answer exactly `ok` (its text shown), 404 for a push to a
 * client nobody holds.
 */
import { PolyproxyError } from '../../core/errors.ts';
import { HttpStatusError } from '../../core/http-error-response.ts';
import type { ApiAnswer } from './api-client.ts';

/** Longest API refusal text shown to the client. */
const MAX_REFUSAL_TEXT = 1024;

/** An API request that got no usable answer (a timeout, or connect failed, reset, 5xx, body over the limit). */
export function apiError(answer: ApiAnswer): PolyproxyError {
  if (answer.outcome === 'timeout') return new PolyproxyError('TIMEOUT', 'the API did not answer in time', { source: 'backend' });
  return new PolyproxyError('BACKEND_UNREACHABLE', 'the API is unavailable', { source: 'backend' });
}

/**
 * `onApiFailure: error-message`: the text message a client gets when the
 * API failed one of its messages. Fixed JSON, built once (nothing
 * allocated per failure); `status` is what an upgrade failing the same way
 * is answered: {"error":"api_timeout","status":504} for no answer within
 * `pool.timeoutMs`, {"error":"api_unavailable","status":502} for the rest.
 */
const API_TIMEOUT_MESSAGE = Buffer.from('{"error":"api_timeout","status":504}');
const API_UNAVAILABLE_MESSAGE = Buffer.from('{"error":"api_unavailable","status":502}');

/** The error message for an `apiError` failure. */
export function apiFailureMessage(error: PolyproxyError): Buffer {
  return error.kind === 'TIMEOUT' ? API_TIMEOUT_MESSAGE : API_UNAVAILABLE_MESSAGE;
}

/** `onApiFailure: close`: RFC 6455 §7.4.1, 1011 "an unexpected condition prevented it from fulfilling the request". */
export const CLOSE_API_UNAVAILABLE = 1011;
export const API_UNAVAILABLE_REASON = 'API unavailable';

/** The API answered the upgrade's GET with something else than `ok`: "other strings are treated as error messages" (ws2api). */
export function upgradeDenied(answer: ApiAnswer): PolyproxyError {
  const text = answer.body.length > 0 && !answer.binary ? answer.body.subarray(0, MAX_REFUSAL_TEXT).toString('utf8') : 'not allowed to connect';
  return new PolyproxyError('FORBIDDEN', text, { source: 'resolver' });
}

/** A request the bridge does not serve: `status` 400, 405, 426... */
export function badRequest(status: number, message: string): PolyproxyError {
  return new HttpStatusError('PROTOCOL', status, message, { source: 'client' });
}

/** duplicateClientId: refuse. */
export function duplicateClientId(): PolyproxyError {
  return new HttpStatusError('FORBIDDEN', 409, 'this ClientId is already connected', { source: 'client' });
}

export function clientNotConnected(): PolyproxyError {
  return new PolyproxyError('NOT_FOUND', 'client not connected');
}

/** Sibling workers did not all answer and none delivered: the client may be connected. */
export function pushUndecided(): PolyproxyError {
  return new PolyproxyError('UNAVAILABLE', 'not every bridge worker answered; the client may be connected', { source: 'internal' });
}

export function shuttingDown(): PolyproxyError {
  return new PolyproxyError('UNAVAILABLE', 'the bridge is shutting down', { source: 'internal' });
}

/** A push body over maxMessageBytes (413). */
export function tooLarge(limit: number): PolyproxyError {
  return new HttpStatusError('PROTOCOL', 413, `push body over maxMessageBytes (${limit})`, { source: 'client' });
}
