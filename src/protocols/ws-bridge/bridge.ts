/**
 * The ws-bridge listener (DESIGN.md §3, "WebSocket ↔ HTTP bridge"): its own
 * node:http server on the listener's port, with a `ws` server in noServer
 * mode. Every arrow of the ws2api protocol:
 *
 *   client GET /<id> Upgrade ─▶ GET <api><id>      accepted only on body `ok`
 *   client message          ─▶ POST <api><id>     non-empty 2xx body ─▶ message back
 *                                                   failed ─▶ per onApiFailure: nothing, error message, close 1011
 *   client close            ─▶ DELETE <api><id>   body: the close reason
 *   API POST /<id>          ─▶ message to the client (404 if no worker holds it)
 *
 * It is a ProxyListener, so the supervisor drains it like any listener:
 * stop accepting, wait for clients to leave, and at the deadline close
 * every socket with 1001.
 */
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { RawData } from 'ws';
import { PolyproxyError } from '../../core/errors.ts';
import type { ListenerUpdate } from '../../core/listener-base.ts';
import type { TenantLimits } from '../../core/limits/tenant-limits.ts';
import type { Logger } from '../../core/logger.ts';
import { normalizeHost } from '../http/session.ts';
import { ServerListener } from '../../core/server-listener.ts';
import { ApiClient } from './api-client.ts';
import type { ApiAnswer } from './api-client.ts';
import { handshakeProblem, parseClientId } from './client-id.ts';
import { BridgeClient, ClientRegistry, kClient } from './client-registry.ts';
import type { ClientOwner, TaggedSocket } from './client-registry.ts';
import { claimInFleet, fleetClients, heldInFleet } from './cross-instance.ts';
import type { FleetClients } from '../../fleet/ws-clients.ts';
import { announceOpened, heldElsewhere, registerBridge, siblingStats, unregisterBridge } from './cross-worker.ts';
import type { LocalBridge } from './cross-worker.ts';
import { API_UNAVAILABLE_REASON, CLOSE_API_UNAVAILABLE, apiError, apiFailureMessage, badRequest, duplicateClientId, shuttingDown, upgradeDenied } from './errors.ts';
import { BridgeStats, formatMetrics, snapshot, sumSnapshots, trackStats, untrackStats } from './metrics.ts';
import type { StatsSnapshot } from './metrics.ts';
import { handlePush } from './push.ts';
import type { PushTarget } from './push.ts';

export interface WsBridgeSettings {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly reusePort: boolean;
  /** Concurrent WebSocket connections (and upgrades in progress); 0 = no limit. */
  readonly maxConnections: number;
  /** TCP keepalive on client connections (core/server-listener.ts) and on the API connections; 0 = off. */
  readonly tcpKeepAliveMs?: number;
  /** The upgrade request's head must arrive within this long (core/server-listener.ts). */
  readonly handshakeTimeoutMs?: number;
  readonly api: string;
  readonly metricsPath: string;
  readonly ordering: 'ordered' | 'parallel';
  readonly duplicateClientId: 'replace' | 'refuse';
  /** What a client learns when its message's POST fails: nothing, an error message, or a 1011 close. */
  readonly onApiFailure: 'drop' | 'error-message' | 'close';
  readonly pingIntervalMs: number;
  readonly deadPeerTimeoutMs: number;
  readonly maxMessageBytes: number;
  readonly connectTimeoutMs: number;
  readonly pool: { readonly maxConnections: number; readonly maxIdle: number; readonly idleTimeoutMs: number; readonly timeoutMs: number };
}

/** Close code for a connection displaced by a newer one with the same ClientId (private range, RFC 6455 §7.4.2). */
export const CLOSE_REPLACED = 4409;
/** Clients that ignore the 1001 close frame at the drain deadline are cut off after this. */
const CLOSE_GRACE_MS = 1000;
/** At most one warning per this interval about failing API requests (the rest at debug). */
const WARN_INTERVAL_MS = 1000;
const EMPTY = Buffer.alloc(0);
const OPEN = 1;
const CLOSED = 3;

export class WsBridgeListener extends ServerListener implements ClientOwner, LocalBridge, PushTarget {
  readonly settings: WsBridgeSettings;
  readonly stats = new BridgeStats();
  readonly #wss: WebSocketServer;
  readonly #api: ApiClient;
  readonly #registry: ClientRegistry;
  readonly #ordered: boolean;
  #upgrading = 0;
  #pushing = 0;
  #lastWarn = 0;
  #shutDown: Promise<void> | null = null;
  /** This listener's clients in the fleet's registry (`cluster.redis`); null without a fleet. */
  fleetClients: FleetClients | null = null;

  /** The config's tenant limits: requestsPerSecond per Host for upgrades and messages; a reload swaps them. */
  #limits: TenantLimits | undefined;
  /** Each client's tenant (its upgrade's Host), only while limits are configured. */
  readonly #tenantOf = new WeakMap<BridgeClient, string>();

  constructor(settings: WsBridgeSettings, log: Logger, limits?: TenantLimits) {
    super({ ...settings, protocol: 'ws-bridge', errorFormat: 'text' }, { noDelay: true, keepAliveTimeout: 5000 }, log);
    this.settings = settings;
    this.#limits = limits;
    this.#ordered = settings.ordering === 'ordered';
    this.#api = new ApiClient(
      {
        api: settings.api,
        maxConnections: settings.pool.maxConnections,
        maxIdle: settings.pool.maxIdle,
        idleTimeoutMs: settings.pool.idleTimeoutMs,
        timeoutMs: settings.pool.timeoutMs,
        connectTimeoutMs: settings.connectTimeoutMs,
        tcpKeepAliveMs: settings.tcpKeepAliveMs ?? 0,
        maxResponseBytes: settings.maxMessageBytes,
      },
      this.stats,
    );
    this.#registry = new ClientRegistry(settings.pingIntervalMs, settings.deadPeerTimeoutMs);
    // No compression (memory per connection, and the API sees plain bodies); no client Set (the registry is the index).
    this.#wss = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false, maxPayload: settings.maxMessageBytes });
    this.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.#onRequest(req, res));
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
  }

  get maxMessageBytes(): number {
    return this.settings.maxMessageBytes;
  }

  /** Connections (open or closing), upgrades waiting for the API, API requests and pushes in flight. */
  get sessions(): number {
    return this.counters.open + this.#upgrading + this.stats.requestsInFlight + this.#pushing;
  }

  override async listen(port = this.settings.port): Promise<AddressInfo> {
    const address = await super.listen(port);
    registerBridge(this.settings.name, this);
    // A claim outlives a missed sweep or two; an instance that dies leaves its clients behind for at most this long.
    this.fleetClients = fleetClients(this.settings.name, this.settings.pingIntervalMs * 2 + this.settings.deadPeerTimeoutMs);
    const clients = this.fleetClients;
    if (clients !== null) {
      this.#registry.onSweep = (held) => clients.refresh(held);
      clients.refreshWhenRedisReturns(() => [...this.#registry.values()]);
    }
    trackStats(this.settings.name, this.stats);
    return address;
  }

  /** The drain deadline passed: close every client with 1001, cut off the ones that do not answer. */
  destroyAll(reason: string): void {
    const closeReason = `the bridge is shutting down (${reason})`;
    for (const client of this.#registry.values()) {
      client.serverReason ??= closeReason;
      client.ws.close(1001, 'going away');
    }
    const timer = setTimeout(() => {
      for (const client of this.#registry.values()) if (client.ws.readyState !== CLOSED) client.ws.terminate();
    }, CLOSE_GRACE_MS);
    timer.unref();
    this.server.closeAllConnections();
  }

  /** Stops everything now (tests, and after a drain): listening socket, sweep timer, API pool. */
  close(): Promise<void> {
    void this.stopAccepting();
    this.destroyAll('closed');
    return this.#shutdown();
  }

  // ── LocalBridge (sibling workers) and PushTarget ─────────────────────

  deliver(clientId: string, body: Buffer, binary: boolean): boolean {
    const client = this.#registry.get(clientId);
    if (client === undefined || client.ws.readyState !== OPEN) return false;
    client.ws.send(body, { binary });
    this.counters.bytesOut += body.length;
    this.stats.pushesDelivered++;
    return true;
  }

  holds(clientId: string): boolean {
    return this.#registry.get(clientId) !== undefined;
  }

  statsSnapshot(): StatsSnapshot {
    return snapshot(this.stats);
  }

  replacedElsewhere(clientId: string, openedAt: number): void {
    const client = this.#registry.get(clientId);
    if (client === undefined || client.openedAt > openedAt) return;
    this.#registry.remove(client);
    client.replaced = true;
    client.ws.close(CLOSE_REPLACED, 'replaced by a newer connection');
  }

  pushStarted(): void {
    this.#pushing++;
  }

  pushEnded(): void {
    this.#pushing--;
    this.settle();
  }

  refusePush(req: http.IncomingMessage, res: http.ServerResponse, error: PolyproxyError, close: boolean): void {
    this.#fail(error);
    this.sendError(req, res, error, { detail: error.message, close });
  }

  // ── ClientOwner: events of accepted connections ──────────────────────

  /** A reload: the tenant limits apply to new upgrades and messages. */
  reconfigure(update: ListenerUpdate): void {
    this.#limits = update.router.limits;
  }

  clientMessage(client: BridgeClient, data: Buffer, binary: boolean): void {
    this.counters.bytesIn += data.length;
    if (this.#limits !== undefined && this.#overRate(client)) return;
    if (this.#ordered) {
      if (client.busy) {
        (client.queue ??= []).push({ data, binary, closeReason: null });
        // Stop reading this socket until the queue drains: TCP pushes back on the client.
        if (!client.ws.isPaused) client.ws.pause();
        return;
      }
      client.busy = true;
    }
    this.#post(client, data, binary);
  }

  clientClosed(client: BridgeClient, reason: Buffer): void {
    this.#registry.remove(client);
    // Only deletes the fleet's entry if it is still this connection's (a newer one elsewhere keeps its own).
    this.fleetClients?.release(client.id, client.openedAt);
    this.stats.connectionsClosed++;
    this.stats.connectionsOpen--;
    this.counters.open--;
    if (client.replaced) {
      // The ClientId is still connected (a newer connection took it): the API must not hear it left.
      this.settle();
      return;
    }
    const closeReason = client.serverReason ?? reason.toString('utf8');
    if (this.#ordered && client.busy) {
      (client.queue ??= []).push({ data: EMPTY, binary: false, closeReason });
      return;
    }
    this.#delete(client, closeReason);
  }

  /** `ws` closed the client for breaking the protocol (1009 over maxMessageBytes, 1002, 1007...). */
  clientError(client: BridgeClient, err: Error): void {
    this.#fail(new PolyproxyError('PROTOCOL', err.message, { source: 'client', cause: err }), client.id);
  }

  // ── upgrades ─────────────────────────────────────────────────────────

  #onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    this.counters.total++;
    socket.on('error', noop);
    if (this.draining) return this.#refuse(socket, req, shuttingDown());
    const problem = handshakeProblem(req.method, req.headers);
    if (problem !== null) return this.#refuse(socket, req, badRequest(problem === 'Invalid HTTP method' ? 405 : 400, problem));
    const id = parseClientId(req.url);
    if (id === null) return this.#refuse(socket, req, badRequest(400, 'the path must be /<ClientId>'));
    if (this.atCapacity(this.counters.open + this.#upgrading)) {
      this.stats.upgradesRefused++;
      this.refuseOnSocket(socket, req, 'too many connections');
      return;
    }
    if (this.settings.duplicateClientId === 'refuse' && this.#registry.get(id) !== undefined) return this.#refuse(socket, req, duplicateClientId(), id);
    const limits = this.#limits;
    const tenant = limits === undefined ? undefined : normalizeHost(req.headers.host);
    if (limits !== undefined && tenant !== undefined) {
      const refusal = limits.request(tenant, limits.resolve(tenant, undefined));
      if (refusal !== null) return this.#refuse(socket, req, refusal, id);
    }
    this.#upgrading++;
    this.#admit(req, socket, head, id, tenant).then(
      () => this.#upgraded(),
      (err: unknown) => {
        this.log.error({ err, clientId: id }, 'ws-bridge upgrade failed');
        this.#refuse(socket, req, new PolyproxyError('INTERNAL', 'internal error', { cause: err }), id);
        this.#upgraded();
      },
    );
  }

  /**
   * A message past its tenant's requestsPerSecond closes the connection
   * with 1008 (policy violation) rather than being delayed: the message is
   * already read whole, so delaying it would hold it in the proxy's memory
   * for as long as the client keeps sending; a close tells the client at
   * once, and it reconnects (an upgrade past the rate gets 429 with
   * Retry-After).
   */
  #overRate(client: BridgeClient): boolean {
    const tenant = this.#tenantOf.get(client);
    const limits = this.#limits;
    if (tenant === undefined || limits === undefined) return false;
    const refusal = limits.request(tenant, limits.resolve(tenant, undefined));
    if (refusal === null) return false;
    this.#fail(refusal, client.id);
    client.ws.close(1008, 'message rate limit exceeded');
    return true;
  }

  #upgraded(): void {
    this.#upgrading--;
    this.settle();
  }

  async #admit(req: http.IncomingMessage, socket: Duplex, head: Buffer, id: string, tenant: string | undefined): Promise<void> {
    if (this.settings.duplicateClientId === 'refuse' && ((await heldElsewhere(this.settings.name, id)) || (this.fleetClients !== null && (await heldInFleet(this.fleetClients, id))))) {
      this.#refuse(socket, req, duplicateClientId(), id);
      return;
    }
    const answer = await this.#api.open(id, req.socket.remoteAddress);
    const approved = answer.outcome === 'ok' && answer.status >= 200 && answer.status < 300 && answer.body.equals(OK);
    const failure = answer.outcome === 'ok' ? null : this.#apiFailed('GET', id, answer);
    if (socket.destroyed || !socket.writable) {
      // Nobody to answer, but the API failed all the same.
      if (failure !== null) this.countFailure(failure);
      if (approved) this.#delete(null, 'the client left before the upgrade completed', id);
      return;
    }
    if (failure !== null) return this.#refuse(socket, req, failure, id);
    if (!approved) return this.#refuse(socket, req, upgradeDenied(answer), id);
    if (this.draining) {
      this.#refuse(socket, req, shuttingDown(), id);
      this.#delete(null, 'the bridge is shutting down', id);
      return;
    }
    const openedAt = Date.now();
    const clients = this.fleetClients;
    if (clients !== null) {
      // Claimed before the upgrade completes: once the client is open, a push to any instance finds it.
      if (!(await claimInFleet(clients, this.settings.name, id, openedAt, this.settings.duplicateClientId))) {
        this.#refuse(socket, req, duplicateClientId(), id);
        this.#delete(null, 'this ClientId is connected to another instance', id);
        return;
      }
      if (socket.destroyed || !socket.writable) {
        clients.release(id, openedAt);
        this.#delete(null, 'the client left before the upgrade completed', id);
        return;
      }
    }
    socket.removeListener('error', noop);
    let accepted = false;
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      accepted = true;
      const client = this.#accept(ws as TaggedSocket, id, openedAt);
      if (tenant !== undefined) this.#tenantOf.set(client, tenant);
    });
    // `ws` refused the handshake after the API approved it: tell the API the client is gone.
    if (!accepted) {
      clients?.release(id, openedAt);
      this.#delete(null, 'the WebSocket handshake failed', id);
    }
  }

  #accept(ws: TaggedSocket, id: string, now: number): BridgeClient {
    const client = new BridgeClient(id, ws, now, this);
    ws.on('message', wsOnMessage);
    ws.on('close', wsOnClose);
    ws.on('pong', wsOnPong);
    ws.on('error', wsOnError);
    this.stats.connectionsOpened++;
    this.stats.connectionsOpen++;
    this.counters.open++;
    const existing = this.#registry.get(id);
    if (existing !== undefined && this.settings.duplicateClientId === 'refuse') {
      // Two upgrades with one ClientId raced past the check: the first keeps it.
      client.replaced = true;
      ws.close(CLOSE_REPLACED, 'this ClientId is already connected');
      return client;
    }
    this.#registry.add(client);
    if (existing !== undefined) {
      existing.replaced = true;
      existing.ws.close(CLOSE_REPLACED, 'replaced by a newer connection');
    }
    if (this.settings.duplicateClientId === 'replace') announceOpened(this.settings.name, id, now);
    this.log.debug({ clientId: id }, 'ws-bridge client connected');
    return client;
  }

  /** A refused upgrade: counted, then an HTTP response on the raw socket, as `ws` does (abortHandshake), and close. */
  #refuse(socket: Duplex, req: http.IncomingMessage, error: PolyproxyError, clientId?: string): void {
    this.stats.upgradesRefused++;
    this.#fail(error, clientId);
    this.sendErrorOnSocket(socket, error, req, error.message);
  }

  /** Counts a failure answered to a client or the API; the API's own failures were logged by #apiFailed. */
  #fail(error: PolyproxyError, clientId?: string): void {
    this.countFailure(error);
    if (error.source === 'client') this.log.debug({ code: error.code, clientId }, error.message);
  }

  // ── API requests for accepted clients ────────────────────────────────

  #post(client: BridgeClient, data: Buffer, binary: boolean): void {
    this.#api.message(client.id, data, binary).then((answer) => this.#posted(client, answer));
  }

  #posted(client: BridgeClient, answer: ApiAnswer): void {
    if (answer.outcome !== 'ok') {
      this.#messageLost(client, this.#apiFailed('POST', client.id, answer));
    } else if (answer.status >= 200 && answer.status < 300) {
      const ws = client.ws;
      if (answer.body.length > 0 && ws.readyState === OPEN) {
        ws.send(answer.body, { binary: answer.binary });
        this.counters.bytesOut += answer.body.length;
      }
    } else {
      this.log.debug({ clientId: client.id, status: answer.status }, 'ws-bridge: the API answered a message with a non-2xx status; nothing sent back');
    }
    if (this.#ordered) this.#next(client);
    else this.settle();
  }

  /**
   * A message whose POST failed is lost: counted, and the client told as
   * `onApiFailure` says. With `close`, messages already queued behind it
   * still go to the API, then the DELETE with the close reason (`ordered`).
   */
  #messageLost(client: BridgeClient, error: PolyproxyError): void {
    this.stats.messagesFailed++;
    this.countFailure(error);
    const ws = client.ws;
    if (ws.readyState !== OPEN) return;
    if (this.settings.onApiFailure === 'error-message') {
      const message = apiFailureMessage(error);
      ws.send(message, { binary: false });
      this.counters.bytesOut += message.length;
    } else if (this.settings.onApiFailure === 'close') {
      client.serverReason ??= API_UNAVAILABLE_REASON;
      ws.close(CLOSE_API_UNAVAILABLE, API_UNAVAILABLE_REASON);
    }
  }

  /** `ordered`: the client's previous request finished; start the next one. */
  #next(client: BridgeClient): void {
    const item = client.queue?.shift();
    if (item === undefined) {
      client.busy = false;
      if (client.ws.isPaused && client.ws.readyState === OPEN) client.ws.resume();
      this.settle();
      return;
    }
    if (item.closeReason !== null) this.#delete(client, item.closeReason);
    else this.#post(client, item.data, item.binary);
  }

  #delete(client: BridgeClient | null, reason: string, id = client?.id ?? ''): void {
    this.#api.close(id, reason).then((answer) => {
      if (answer.outcome !== 'ok') this.countFailure(this.#apiFailed('DELETE', id, answer));
      if (client !== null && this.#ordered) this.#next(client);
      else this.settle();
    });
  }

  /** Logs an API request that failed (rate-limited) and returns the failure for the caller to count and answer. */
  #apiFailed(method: string, clientId: string, answer: ApiAnswer): PolyproxyError {
    const now = Date.now();
    const fields = { clientId, method, outcome: answer.outcome, status: answer.status, error: answer.error };
    if (now - this.#lastWarn >= WARN_INTERVAL_MS) {
      this.#lastWarn = now;
      this.log.warn(fields, 'ws-bridge: API request failed');
    } else {
      this.log.debug(fields, 'ws-bridge: API request failed');
    }
    return apiError(answer);
  }

  // ── plain HTTP on the bridge port: pushes and metrics ────────────────

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const target = req.url ?? '/';
    const query = target.indexOf('?');
    const path = query >= 0 ? target.slice(0, query) : target;
    if (path === this.settings.metricsPath && (req.method === 'GET' || req.method === 'HEAD')) {
      this.#serveMetrics(res).catch((err: unknown) => {
        this.log.error({ err }, 'ws-bridge: metrics failed');
        this.#answer(req, res, new PolyproxyError('INTERNAL', 'internal error', { cause: err }));
      });
      return;
    }
    const id = parseClientId(target);
    if (id !== null && req.method === 'POST') {
      handlePush(this, id, req, res);
      return;
    }
    if (id !== null && req.method === 'GET') {
      this.#answer(req, res, badRequest(426, 'this is a WebSocket endpoint: connect with Upgrade: websocket'), { upgrade: 'websocket' });
      return;
    }
    if (id !== null) {
      this.#answer(req, res, badRequest(405, 'POST /<ClientId> pushes a message; GET with Upgrade connects'), { allow: 'GET, POST' });
      return;
    }
    this.#answer(req, res, new PolyproxyError('NOT_FOUND', 'not found', { source: 'client' }));
  }

  /** A plain HTTP request the bridge does not serve, answered on its keep-alive connection. */
  #answer(req: http.IncomingMessage, res: http.ServerResponse, error: PolyproxyError, headers?: Record<string, string>): void {
    this.#fail(error);
    this.sendError(req, res, error, { detail: error.message, close: false, headers });
  }

  async #serveMetrics(res: http.ServerResponse): Promise<void> {
    const all = [snapshot(this.stats), ...(await siblingStats(this.settings.name))];
    const text = formatMetrics(this.settings.name, sumSnapshots(all));
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) }).end(text);
  }

  // ── drain ────────────────────────────────────────────────────────────

  protected override drained(): void {
    void this.#shutdown();
  }

  #shutdown(): Promise<void> {
    this.#shutDown ??= (async () => {
      this.#registry.stop();
      unregisterBridge(this.settings.name, this);
      untrackStats(this.settings.name, this.stats);
      await this.#api.shutdown().catch(noop);
    })();
    return this.#shutDown;
  }
}

const OK = Buffer.from('ok');

function noop(): void {}

// Module-level handlers shared by every connection: `this` is the WebSocket.

function wsOnMessage(this: TaggedSocket, data: RawData, isBinary: boolean): void {
  const client = this[kClient];
  if (client === undefined) return;
  client.lastSeen = Date.now();
  client.owner.clientMessage(client, data as Buffer, isBinary);
}

function wsOnClose(this: TaggedSocket, _code: number, reason: Buffer): void {
  const client = this[kClient];
  if (client === undefined) return;
  client.owner.clientClosed(client, reason);
}

function wsOnError(this: TaggedSocket, err: Error): void {
  const client = this[kClient];
  if (client !== undefined) client.owner.clientError(client, err);
}

function wsOnPong(this: TaggedSocket): void {
  const client = this[kClient];
  if (client !== undefined) client.lastSeen = Date.now();
}
