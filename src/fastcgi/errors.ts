/**
 * Every failure the FastCGI library reports: one class, a stable `code` for
 * programs and tests, and whether a retry on another connection is safe
 * (`retryable`: nothing of the request reached the application).
 */

export type FastCgiErrorCode =
  | 'FCGI_ERR_PROTOCOL' //           malformed record or name-value pair from the peer
  | 'FCGI_ERR_INVALID_ARGUMENT' //   the caller asked for something the protocol cannot carry
  | 'FCGI_ERR_CONNECT_FAILED' //     refused, no such socket, unreachable
  | 'FCGI_ERR_CONNECT_TIMEOUT' //    no connection within connectTimeoutMs
  | 'FCGI_ERR_QUEUE_TIMEOUT' //      every allowed connection stayed busy (maxConnections) for the queue timeout
  | 'FCGI_ERR_READ_TIMEOUT' //       the application was silent longer than readWriteTimeoutMs
  | 'FCGI_ERR_CONNECTION_CLOSED' //  the connection ended before FCGI_END_REQUEST
  | 'FCGI_ERR_REJECTED' //           FCGI_END_REQUEST with CANT_MPX_CONN, OVERLOADED or UNKNOWN_ROLE
  | 'FCGI_ERR_ABORTED' //            the caller aborted the request
  | 'FCGI_ERR_UNKNOWN_REQUEST' //    no request with this id (already read, or never sent)
  | 'FCGI_ERR_NO_SERVER'; //         a collection without a usable server

export class FastCgiError extends Error {
  readonly code: FastCgiErrorCode;
  /** True when no byte of the request reached the application, so another connection may be tried. */
  readonly retryable: boolean;

  constructor(code: FastCgiErrorCode, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FastCgiError';
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}
