/**
 * The http listener's failures as responses: core's error pages
 * (src/core/http-error-response.ts: status by kind, HTML or JSON by
 * Accept), with the one detail only this protocol knows (a backend's
 * connection limit in its pool).
 */
import type { PolyproxyError } from '../../core/errors.ts';
import { errorResponse as coreErrorResponse } from '../../core/http-error-response.ts';
import { ConnectionLimitError } from '../../core/pool.ts';

export { statusOf } from '../../core/http-error-response.ts';

/** The whole error response. `accept` is the request's Accept header when it was parsed. */
export function errorResponse(err: PolyproxyError, resourceId: string | undefined, accept?: string, headRequest = false): Buffer {
  return coreErrorResponse(err, resourceId, { accept, headRequest, detail: poolDetail(err, resourceId) });
}

function poolDetail(err: PolyproxyError, resourceId: string | undefined): string | undefined {
  if (!(err instanceof ConnectionLimitError || err.cause instanceof ConnectionLimitError)) return undefined;
  return `The backend for ${resourceId === undefined ? 'this host' : `host "${resourceId}"`} has reached its connection limit; try again later.`;
}
