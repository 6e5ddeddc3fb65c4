/**
 * Connected clients of one ws-bridge listener in this process, by ClientId,
 * and the one ping/pong sweep that finds dead peers (no timer per
 * connection). A client's state is one small object; the WebSocket finds
 * it through a symbol field, so the bridge's handlers are module-level
 * functions shared by every connection.
 */
import type { WebSocket } from 'ws';

/** A queued item in `ordered` mode: a message to POST, or the final DELETE. */
export interface Queued {
  readonly data: Buffer;
  readonly binary: boolean;
  /** Set on the last item: DELETE with this reason instead of a POST. */
  readonly closeReason: string | null;
}

export const kClient = Symbol('ws-bridge client');

export type TaggedSocket = WebSocket & { [kClient]?: BridgeClient };

/** Who handles a client's messages and close (the listener). */
export interface ClientOwner {
  clientMessage(client: BridgeClient, data: Buffer, binary: boolean): void;
  clientClosed(client: BridgeClient, reason: Buffer): void;
  /** `ws` saw the client break the protocol (an oversized or malformed frame); it closes the connection itself. */
  clientError(client: BridgeClient, err: Error): void;
}

export class BridgeClient {
  readonly id: string;
  readonly ws: TaggedSocket;
  readonly owner: ClientOwner;
  /** Date.now() when accepted: the newer of two connections with one ClientId wins. */
  readonly openedAt: number;
  /** Date.now() of the last pong or message. */
  lastSeen: number;
  /** `ordered`: a request of this client is in flight. */
  busy = false;
  /** `ordered`: what waits behind it (null until needed). */
  queue: Queued[] | null = null;
  /** Closed by the bridge: this is the reason the API's DELETE carries. */
  serverReason: string | null = null;
  /** Replaced by a newer connection with the same ClientId: no DELETE (the id is still connected). */
  replaced = false;

  constructor(id: string, ws: TaggedSocket, now: number, owner: ClientOwner) {
    this.id = id;
    this.ws = ws;
    this.owner = owner;
    this.openedAt = now;
    this.lastSeen = now;
    ws[kClient] = this;
  }
}

export class ClientRegistry {
  readonly #clients = new Map<string, BridgeClient>();
  readonly #pingIntervalMs: number;
  readonly #deadPeerTimeoutMs: number;
  #timer: NodeJS.Timeout | null = null;
  /** Called once per sweep with every client held (the fleet refreshes their claims' TTL in one round trip). */
  onSweep: ((clients: BridgeClient[]) => void) | null = null;

  constructor(pingIntervalMs: number, deadPeerTimeoutMs: number) {
    this.#pingIntervalMs = pingIntervalMs;
    this.#deadPeerTimeoutMs = deadPeerTimeoutMs;
  }

  get size(): number {
    return this.#clients.size;
  }

  get(id: string): BridgeClient | undefined {
    return this.#clients.get(id);
  }

  /** Adds `client`; returns the one it displaces (same ClientId), if any. */
  add(client: BridgeClient): BridgeClient | undefined {
    const previous = this.#clients.get(client.id);
    this.#clients.set(client.id, client);
    if (this.#timer === null) {
      this.#timer = setInterval(sweep, this.#pingIntervalMs, this);
      this.#timer.unref();
    }
    return previous;
  }

  /** Removes `client` unless a newer connection took its ClientId. */
  remove(client: BridgeClient): void {
    if (this.#clients.get(client.id) === client) this.#clients.delete(client.id);
    if (this.#clients.size === 0 && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }

  values(): IterableIterator<BridgeClient> {
    return this.#clients.values();
  }

  /**
   * One pass: a client silent for deadPeerTimeoutMs is cut off; one silent
   * for half a ping interval or more is pinged (a message or pong since then
   * already proved it alive). Exposed for tests.
   */
  sweep(now: number): void {
    const dead = now - this.#deadPeerTimeoutMs;
    const quiet = now - this.#pingIntervalMs / 2;
    for (const client of this.#clients.values()) {
      // Paused (ordered mode, waiting for the API): its pongs are not read yet, so silence proves nothing.
      if (client.ws.readyState !== 1 /* OPEN */ || client.ws.isPaused) continue;
      if (client.lastSeen <= dead) {
        client.serverReason = 'dead peer: no pong';
        client.ws.terminate();
      } else if (client.lastSeen <= quiet) {
        client.ws.ping();
      }
    }
    if (this.onSweep !== null) this.onSweep([...this.#clients.values()]);
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}

function sweep(registry: ClientRegistry): void {
  registry.sweep(Date.now());
}
