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
import type { StreamTap } from './relay.ts';

export interface Opening {
  /** What the router resolves (database name, Host header, domain...). */
  readonly resourceId: string;
  /** Bytes consumed from the client that the backend must see first. */
  readonly replay: Buffer | null;
  /** Skip the router and dial this endpoint (e.g. a PostgreSQL CancelRequest). */
  readonly endpoint?: Endpoint;
  /** Watches the first backend bytes of the relay (e.g. to learn a cancel key). */
  readonly backendTap?: StreamTap;
  /** Called once the backend connection is up, with the endpoint it went to. */
  readonly onConnected?: (endpoint: Endpoint) => void;
  /** Called once when the session ends, to drop per-session protocol state. */
  readonly onClose?: () => void;
}

export interface ProtocolModule {
  readonly name: string;
  /**
   * Reads the client's opening, answering handshakes the protocol needs
   * before the resource is known. Returns null when the connection was fully
   * handled and there is nothing to proxy. Throws PolyproxyError to refuse
   * the client with the protocol's own error.
   */
  identify(conn: ClientConnection): Promise<Opening | null>;
  /**
   * Encodes a failure as the protocol's native bytes, written before the
   * connection is closed; null closes without a message.
   */
  encodeError(err: PolyproxyError, resourceId: string | undefined): Buffer | null;
  /**
   * Optional exchange with the freshly connected backend before the relay
   * starts (e.g. MySQL's greeting and auth switch). Without it, core writes
   * `opening.replay` to the backend.
   */
  replay?(conn: ClientConnection, backend: Socket, opening: Opening): Promise<void>;
}
