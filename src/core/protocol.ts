/**
 * The shape every protocol module shares (DESIGN.md §1):
 *   identify → route → connect → replay → relay
 * A protocol reads its opening and names the resource; core routes, dials,
 * replays and relays. A protocol never dials a backend itself.
 */
import type { Socket } from 'node:net';
import type { ClientConnection } from './client-connection.ts';
import type { Endpoint } from './endpoint.ts';
import type { PolyproxyError } from './errors.ts';
import type { ClientFilter, StreamTap } from './relay.ts';
import type { ResolveContext } from './resolver.ts';
import type { RouteDecision, RouteEntry, Router } from './router.ts';

/**
 * Resolves another resource id the way the session's own was (same listener,
 * same client context) and returns its checked endpoints. Lets a protocol
 * check that a mid-session switch (MySQL `USE`) stays on the session's backend.
 */
export type RouteLookup = (resourceId: string) => Promise<readonly Endpoint[]>;

export interface Opening {
  /** What the router resolves (database name, Host header, domain...). */
  readonly resourceId: string;
  /** Bytes consumed from the client that the backend must see first. */
  readonly replay: Buffer | null;
  /** Raw TCP: the client's first bytes, handed to the resolver as ResolveContext.firstBytes (see there). */
  readonly firstBytes?: Buffer;
  /** Skip the router and dial this endpoint (e.g. a PostgreSQL CancelRequest). */
  readonly endpoint?: Endpoint;
  /**
   * The protocol already routed `resourceId` through ProtocolSession.router
   * (SMTP answers an unrouted domain with 550 and goes on): core dials these
   * candidates instead of routing again, so a balanced route rotates once per
   * connection, not twice.
   */
  readonly decision?: RouteDecision;
  /** Watches the first backend bytes of the relay (e.g. to learn a cancel key). */
  readonly backendTap?: StreamTap;
  /** Called once the backend connection is up, with the endpoint it went to and a way to route other ids. */
  readonly onConnected?: (endpoint: Endpoint, lookup: RouteLookup) => void;
  /** Sees every client chunk of the relay before the backend does (e.g. MySQL's check of `USE`). */
  readonly clientFilter?: ClientFilter;
  /** Called once when the session ends, to drop per-session protocol state. */
  readonly onClose?: () => void;
}

/**
 * What core lends a protocol that serves the connection itself instead of
 * handing one opening to the relay (HTTP: a keep-alive connection carries
 * many requests, each routed on its own Host). Such a protocol calls
 * takeOver(), runs its own loop with `router` and core's connect helpers,
 * and resolves identify with null when the connection is done.
 */
export interface ProtocolSession {
  readonly listener: string;
  /** The listener's router at the time of the call (a reload may swap it). */
  readonly router: Router;
  readonly connectTimeoutMs: number;
  /** The listener's idle timeout for relayed sessions (0 = none). */
  readonly idleTimeoutMs: number;
  /** TCP keepalive for the backend connections the protocol opens (0 = off); see ListenerSettings. */
  readonly tcpKeepAliveMs: number;
  /** The resolver context for this client; call after a TLS upgrade so it carries SNI. */
  resolveContext(): ResolveContext;
  /** Cancels core's handshake timer: from now on the protocol enforces its own timeouts. */
  takeOver(): void;
  /** Counts a failure the protocol answered itself (metrics: errors by kind, failed). */
  failed(err: PolyproxyError): void;
  /** Counts one routed use of a resource (an HTTP request) for per-resource metrics. */
  served(resourceId: string): void;
  /**
   * For protocols that serve a session themselves on one tenant (a
   * PostgreSQL pool client, a MySQL read/write split): the tenant's limits
   * (core/limits) admit the connection as the relay path does, held until
   * identify settles; throws the refusal (TOO_MANY, RATE_LIMITED). Once per
   * connection; later calls do nothing.
   */
  admit(resourceId: string, entry: RouteEntry): Promise<void>;
  /**
   * For protocols that serve the connection themselves (http): `target`
   * hears about the listener's drain until identify settles. Called at once
   * when the listener is already draining.
   */
  onDrain(target: DrainTarget): void;
}

/** A connection served by its protocol, told about the listener's drain. */
export interface DrainTarget {
  /**
   * `deadline` false: accepting stopped; finish what is in flight, take no
   * new work, close what is idle. True: the drain deadline passed; answer
   * the protocol's SHUTTING_DOWN error if nothing was sent yet, and close.
   */
  drain(deadline: boolean): void;
}

export interface ProtocolModule {
  readonly name: string;
  /**
   * Reads the client's opening, answering handshakes the protocol needs
   * before the resource is known. Returns null when the connection was fully
   * handled and there is nothing to proxy. Throws PolyproxyError to refuse
   * the client with the protocol's own error. `session` gives protocols
   * that serve the connection themselves access to routing (see
   * ProtocolSession); the connection still counts as open until identify
   * settles.
   */
  identify(conn: ClientConnection, session?: ProtocolSession): Promise<Opening | null>;
  /**
   * Encodes a failure as the protocol's native bytes, written before the
   * connection is closed; null closes without a message. `conn` is the
   * client's connection when there is one (protocols whose error framing
   * depends on how far the handshake got keep that state per connection).
   */
  encodeError(err: PolyproxyError, resourceId: string | undefined, conn?: ClientConnection): Buffer | null;
  /**
   * Optional exchange with the freshly connected backend before the relay
   * starts (e.g. MySQL's greeting and auth switch). Without it, core writes
   * `opening.replay` to the backend.
   */
  replay?(conn: ClientConnection, backend: Socket, opening: Opening): Promise<void>;
  /**
   * A client that half-closes (FIN) before the relay starts cannot finish
   * its session: it must still answer the backend (MySQL's auth switch), or
   * nothing it could have sent before the relay needs delivering (SMTP's
   * message content waits for the backend's 354). Core then ends such a
   * session at once — the connect in progress is dropped, a backend waited
   * on in replay is closed, and the endpoint's breaker counts nothing —
   * instead of holding it until the connect or replay deadline. Without
   * it, a FIN is passed on by the relay (a client may half-close after
   * pipelining its requests).
   */
  readonly finEndsOpening?: boolean;
  /**
   * Set by a protocol whose every connection gets this same Opening without
   * reading a byte or answering anything (tcp with a fixed backend and no
   * TLS). The listener may then skip identify and dial at accept (its fast
   * path); `identify` must still return it for the pipeline.
   */
  readonly immediateOpening?: Opening;
  /**
   * The listener is draining and no session is left (may run more than
   * once): release what only sessions needed — a pool's server connections
   * and its timers (postgres `pool:`).
   */
  drained?(): void;
}
