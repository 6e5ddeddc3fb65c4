/**
 * Process-wide counters: request ids for the messages the proxy writes (its
 * replies and its own requests to backends) and connection ids for hello.
 * A client never sees a reply to a proxy-originated request, and a reply's
 * `responseTo` is always the client's own request id, so these only need to
 * be positive int32s that do not repeat soon.
 */
let lastRequestId = 0;
let lastConnectionId = 0;

export function nextRequestId(): number {
  lastRequestId = lastRequestId >= 0x7fffffff ? 1 : lastRequestId + 1;
  return lastRequestId;
}

export function nextConnectionId(): number {
  lastConnectionId = lastConnectionId >= 0x7fffffff ? 1 : lastConnectionId + 1;
  return lastConnectionId;
}
