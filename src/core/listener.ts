/**
 * A listener: one port, one protocol, and the pipeline every connection
 * follows (DESIGN.md §1). Owns accept, route, connect, replay and relay;
 * the protocol module owns identify and its native errors.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { ClientConnection } from './client-connection.ts';
import type { TlsServerSettings } from './client-connection.ts';
import { listenServer } from './listen.ts';
import { connectFirst, Dial, DialAbort } from './connect.ts';
import { dialableByHandle, HandleRelay } from './handle-relay.ts';
import type { HandleRelayOwner } from './handle-relay.ts';
import { interceptAccept, peerAddress, setAcceptedSocketOptions, socketForHandle } from './io/tcp-handle.ts';
import type { TcpHandle } from './io/tcp-handle.ts';
import { ioSupport } from './io/support.ts';
import type { Connected, DialOptions, DialOwner } from './connect.ts';
import type { EndpointHealth } from './health.ts';
import type { Endpoint } from './endpoint.ts';
import { PolyproxyError, toPolyproxyError } from './errors.ts';
import { isFdExhaustion } from './fd-limit.ts';
import { ListenerShare } from './limits/fair-share.ts';
import { routeOnlyLimits } from './limits/tenant-limits.ts';
import type { Lease } from './limits/tenant-limits.ts';
import { ListenerBase } from './listener-base.ts';
import type { ListenerUpdate, ProxyListener } from './listener-base.ts';
import type { Logger } from './logger.ts';
import { fdExhaustedTotal } from './metrics.ts';
import type { DrainTarget, Opening, ProtocolModule, ProtocolSession } from './protocol.ts';
import { Relay } from './relay.ts';
import type { RelayOwner } from './relay.ts';
import { resources } from './resource-stats.ts';
import type { ResourceRow } from './resource-stats.ts';
import type { ResolveContext, Resolver } from './resolver.ts';
import { routeCacheKey } from './router.ts';
import type { RouteDecision, RouteEntry, Router } from './router.ts';
import { callHook } from './tenant-code.ts';

export interface ListenerSettings {
  readonly name: string;
  readonly protocol: string;
  readonly host: string;
  readonly port: number;
  readonly connectTimeoutMs: number;
  /** 0 = sessions may stay idle forever. */
  readonly idleTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  /**
   * The backend must send its first byte within this long once the relay
   * started (the opening replayed); past it the client gets the protocol's
   * TIMEOUT error, the session ends and the endpoint's breaker counts a
   * failure. 0 = no deadline (protocols whose client speaks first, or whose
   * replay phase already waited for the backend).
   */
  readonly firstResponseTimeoutMs: number;
  /** TCP keepalive probes on both legs after this long idle; 0 = off. */
  readonly tcpKeepAliveMs: number;
  /** Concurrent connections; past it new clients get the protocol's TOO_MANY error. 0 = no limit. */
  readonly maxConnections: number;
  readonly maxOpeningBytes: number;
  /** Share the port with sibling worker processes (SO_REUSEPORT). */
  readonly reusePort: boolean;
  /** ALPN protocols offered when the listener terminates TLS (added to every TLS settings it is given). */
  readonly alpnProtocols?: readonly string[];
}

export type { ListenerCounters, ListenerUpdate, ProxyListener } from './listener-base.ts';

/** Out of descriptors: accepting pauses this long at most (a session closing resumes it sooner). */
export const FD_PAUSE_MS = 1000;
/** Out of descriptors: one log line per this long, with the count since the last one. */
export const FD_LOG_INTERVAL_MS = 10_000;

/** Per-session data the relay carries until close. */
interface SessionContext {
  readonly resourceId: string;
  readonly endpoint: Endpoint;
  readonly resolver: Resolver | null;
  readonly clientAddress: string;
  /** Only the close hook is kept: the opening's bytes are not needed once replayed. */
  readonly onClose: (() => void) | undefined;
  /** Where this session counts in the per-resource metrics. */
  readonly row: ResourceRow;
  /** The breakers that hear how the backend's first answer went (relays with a first-response deadline). */
  readonly health: EndpointHealth | undefined;
  /** The session's place in its tenant's limits, released at close; null = nothing counted. */
  readonly lease: Lease | null;
}

/**
 * Two ways through a listener:
 *
 * - the pipeline (#run): an async function per connection, with a
 *   ClientConnection reading the opening under a handshake timer;
 * - the fast path, for a protocol with an immediateOpening whose route is
 *   in the router's cache and needs only a dial (no cold start, no TLS):
 *   accept starts a Dial at once and its callback starts the relay. No
 *   promise, microtask, closure or timer per connection, and the client
 *   socket stays paused (no 'data' listener) until the relay resumes it.
 *   The first connection, and the first after the cache entry expires, go
 *   the pipeline way and fill the cache.
 *
 * With direct I/O (io/support.ts ioSupport.handleRelay) and no
 * first-response deadline, the fast path goes further: the listening
 * handle's accept hook takes the connection before net.Server makes a
 * Socket of it, and a HandleRelay (handle-relay.ts) dials and relays on
 * bare libuv handles. When the route is not cached, a tenant has limits,
 * fair share is on, a candidate is not a literal TCP address, TLS is
 * configured or the listener is full, the hook hands the connection to
 * the socket paths instead (unchanged, and all there is with
 * POLYPROXY_DIRECT_IO=0).
 */
export class Listener extends ListenerBase implements RelayOwner, ProxyListener, DialOwner, HandleRelayOwner {
  readonly settings: ListenerSettings;
  readonly protocol: ProtocolModule;
  router: Router;
  tls: TlsServerSettings | null;
  readonly #log: Logger;
  readonly #server: net.Server;
  readonly #openings = new Set<ClientConnection>();
  readonly #relays = new Set<Relay>();
  /** Fast-path connections waiting for their backend. */
  readonly #dials = new Set<Dial>();
  /** Openings their protocol serves itself (http), told about the drain instead of aborted. */
  readonly #drainTargets = new Map<ClientConnection, DrainTarget>();
  /** The immediate opening's resource id and router cache key, when the fast path applies to this listener at all. */
  readonly #fastResourceId: string | null;
  readonly #fastKey: string;
  /** Out of descriptors: the listening socket is closed until this timer (or a session closing) reopens it. */
  #fdPause: NodeJS.Timeout | null = null;
  #fdLoggedAt = 0;
  #fdUnlogged = 0;
  #port = 0;
  readonly #dialOptions: DialOptions;
  /** Sessions per tenant, for the fair share of maxConnections (limits.fairShareReservePercent). */
  readonly #share: ListenerShare;
  /** Fast-path dials holding a lease (fair share on): released if the dial fails. */
  readonly #dialLeases = new Map<Dial, Lease>();
  /** Sessions on bare handles (dialing or relayed). */
  readonly #handleRelays = new Set<HandleRelay>();
  /** The accept hook of the handle fast path, or null when it does not apply to this listener. */
  readonly #acceptHook: ((status: number, handle: TcpHandle) => boolean) | null;
  /** The listening socket carries TCP_NODELAY and keepalive for the connections it accepts (setAcceptedSocketOptions). */
  #acceptInherits = false;

  constructor(settings: ListenerSettings, protocol: ProtocolModule, router: Router, tlsSettings: TlsServerSettings | null, log: Logger) {
    super(settings.name, settings.protocol);
    this.settings = settings;
    this.protocol = protocol;
    this.router = router;
    this.tls = withAlpn(tlsSettings, settings.alpnProtocols);
    const immediate = protocol.immediateOpening;
    this.#fastResourceId = immediate !== undefined && protocol.replay === undefined && isPlainOpening(immediate) ? immediate.resourceId : null;
    this.#fastKey = this.#fastResourceId === null ? '' : routeCacheKey(settings.protocol, this.#fastResourceId);
    // A first-response deadline needs the socket relay's sweep and error answer.
    this.#acceptHook = this.#fastResourceId !== null && ioSupport.handleRelay && settings.firstResponseTimeoutMs === 0 ? (_status, handle) => this.#acceptHandle(handle) : null;
    this.#log = log.child({ listener: settings.name, protocol: settings.protocol });
    this.#share = new ListenerShare(settings.maxConnections);
    const keepAlive = settings.tcpKeepAliveMs > 0;
    this.#server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true, keepAlive, keepAliveInitialDelay: settings.tcpKeepAliveMs }, (socket) => this.#accept(socket));
    // Backends judged by their first answer get it reported by the relay (or the replay), not by the connect alone.
    this.#dialOptions = { keepAliveMs: settings.tcpKeepAliveMs, confirmLater: settings.firstResponseTimeoutMs > 0 || protocol.replay !== undefined };
    this.#server.on('error', (err) => {
      // libuv's accept() failed with EMFILE and its reserved-descriptor fallback too.
      if (isFdExhaustion(err)) this.#fdExhausted(err, 'accept');
      else this.#log.error({ err }, 'listener error');
    });
  }

  reconfigure(update: ListenerUpdate): void {
    this.router = update.router;
    this.tls = withAlpn(update.tls, this.settings.alpnProtocols);
  }

  get sessions(): number {
    return this.#openings.size + this.#dials.size + this.#relays.size + this.#handleRelays.size;
  }

  /** Sessions on bare libuv handles now (the handle fast path), dialing or relayed. */
  get handleSessions(): number {
    return this.#handleRelays.size;
  }

  liveBytes(): [number, number] {
    let bytesIn = 0;
    let bytesOut = 0;
    for (const relay of this.#relays) {
      bytesIn += relay.bytesIn;
      bytesOut += relay.bytesOut;
    }
    for (const relay of this.#handleRelays) {
      bytesIn += relay.bytesIn;
      bytesOut += relay.bytesOut;
    }
    return [bytesIn, bytesOut];
  }

  async listen(port = this.settings.port): Promise<AddressInfo> {
    const address = await listenServer(this.#server, this.settings.host, port, this.settings.reusePort);
    this.#port = address.port;
    this.#installAcceptHook();
    return address;
  }

  /**
   * Out of file descriptors (EMFILE/ENFILE): counted, logged once per
   * FD_LOG_INTERVAL_MS, and the listening socket closes for up to
   * FD_PAUSE_MS, so new clients are refused by the kernel (or taken by a
   * sibling worker sharing the port) instead of being accepted and reset;
   * established sessions go on.
   */
  #fdExhausted(err: Error & { code?: string }, where: 'accept' | 'backend dial'): void {
    fdExhaustedTotal.inc({ listener: this.name });
    this.#fdUnlogged++;
    const now = Date.now();
    if (now - this.#fdLoggedAt >= FD_LOG_INTERVAL_MS) {
      this.#log.warn({ code: err.code, where, times: this.#fdUnlogged, sessions: this.sessions }, 'out of file descriptors: accepting paused until some are free');
      this.#fdLoggedAt = now;
      this.#fdUnlogged = 0;
    }
    if (this.#fdPause !== null || this.draining || !this.#server.listening) return;
    this.#server.close(noop);
    this.#fdPause = setTimeout(resumeAccepting, FD_PAUSE_MS, this);
  }

  /** @internal Reopens the listening socket after an fd pause (timer, or a session closed). */
  resumeAccepting(): void {
    if (this.#fdPause === null) return;
    clearTimeout(this.#fdPause);
    this.#fdPause = null;
    if (this.draining) return;
    listenServer(this.#server, this.settings.host, this.#port, this.settings.reusePort).then(
      () => {
        this.#installAcceptHook();
        this.#log.info({ sessions: this.sessions }, 'accepting again');
      },
      (err: Error) => {
        // The server's 'error' handler has seen it too: it pauses again on EMFILE.
        if (!isFdExhaustion(err)) this.#log.error({ err }, 'could not listen again after running out of file descriptors');
      },
    );
  }

  get address(): AddressInfo | null {
    return this.#server.address() as AddressInfo | null;
  }

  /**
   * Stops accepting; established sessions go on. The listening socket is
   * closed at once (server.close()'s callback would wait for every session).
   */
  stopAccepting(): Promise<void> {
    this.startDraining();
    if (this.#fdPause !== null) {
      clearTimeout(this.#fdPause);
      this.#fdPause = null;
    }
    if (this.#server.listening) this.#server.close(noop);
    for (const target of this.#drainTargets.values()) target.drain(false);
    return Promise.resolve();
  }

  /** Draining and no session left: the protocol releases what its sessions shared (a postgres pool's server connections). */
  protected override drained(): void {
    this.protocol.drained?.();
  }

  /**
   * Ends every session now (the drain deadline passed). A client still in
   * its opening gets the protocol's SHUTTING_DOWN error; a relayed session
   * is not parsed by the proxy, so it is only closed.
   */
  destroyAll(reason: string): void {
    const shutdown = new PolyproxyError('SHUTTING_DOWN', 'the proxy is shutting down', { source: 'internal' });
    for (const conn of this.#openings) {
      const target = this.#drainTargets.get(conn);
      if (target !== undefined) target.drain(true);
      // A pending read fails and #run's refusal answers; otherwise (routing, connecting, waiting on the backend) answer now.
      else if (conn.reading) conn.abort(shutdown);
      else {
        conn.abort(shutdown, this.#encode(shutdown, undefined, conn));
        // Its client has its answer: the session is over now, even if #run still awaits tenant code (a resolve
        // that never settles until resolver.timeoutMs) — the drain deadline is a hard one. #run's own refusal later
        // finds it gone and counts nothing twice.
        this.#drainTargets.delete(conn);
        if (this.#openings.delete(conn)) this.#sessionGone(false);
      }
    }
    for (const dial of this.#dials) {
      dial.cancel();
      this.dialFailed(dial, shutdown);
    }
    for (const relay of this.#relays) relay.destroy(reason);
    // Dialing ones are refused SHUTTING_DOWN (handleDialFailed), relayed ones closed.
    for (const relay of this.#handleRelays) relay.destroy(reason);
  }

  /** After each listen(): the fast path's accept hook, and the listening socket's options its connections inherit. */
  #installAcceptHook(): void {
    if (this.#acceptHook === null) return;
    interceptAccept(this.#server, this.#acceptHook);
    this.#acceptInherits = setAcceptedSocketOptions(this.#server, this.settings.tcpKeepAliveMs);
  }

  /**
   * The handle fast path's accept (see the class comment): true when it
   * took the connection, false to let net.Server make a Socket of it for
   * #accept. Counts like #accept.
   */
  #acceptHandle(handle: TcpHandle): boolean {
    const settings = this.settings;
    const router = this.router;
    if (this.tls !== null || router.limits?.fairShare === true) return false;
    if (settings.maxConnections > 0 && this.sessions >= settings.maxConnections) return false;
    const decision = router.cachedDial(this.#fastKey);
    if (decision === undefined) return false;
    const counters = this.counters;
    counters.total++;
    counters.open++;
    if ((decision.entry.limits ?? null) !== null || !dialableByHandle(decision.candidates)) {
      // The decision is taken (a balanced route rotated): the socket fast path uses it.
      this.#acceptCached(socketForHandle(handle, settings.tcpKeepAliveMs), decision);
      return true;
    }
    const relay = new HandleRelay(this, handle, decision.candidates, decision.entry.route.timeoutMs ?? settings.connectTimeoutMs, router.health, settings.tcpKeepAliveMs, settings.idleTimeoutMs);
    relay.context = decision.entry;
    relay.clientOptionsInherited = this.#acceptInherits;
    this.#handleRelays.add(relay);
    relay.start();
    return true;
  }

  /** @internal Handle fast path: the backend accepted; the relay reads from now on. */
  handleConnected(relay: HandleRelay): void {
    const resourceId = this.#fastResourceId as string;
    const resolver = (relay.context as RouteEntry).source.resolver;
    // getpeername is a syscall: read the address only when a hook or the info log will use it.
    const clientAddress = resolver.onConnect !== undefined || resolver.onDisconnect !== undefined || this.#log.isLevelEnabled('info') ? peerAddress(relay.client) : '';
    const context: SessionContext = { resourceId, endpoint: relay.endpoint as Endpoint, resolver, clientAddress, onClose: undefined, row: resources.opened(resourceId), health: relay.health, lease: null };
    relay.context = context;
    if (resolver.onConnect !== undefined) this.#onConnect(resolver, context);
  }

  /** @internal Handle fast path: no backend, or shutdown. The client becomes a Socket and is refused like a pipeline connection. */
  handleDialFailed(relay: HandleRelay, error: PolyproxyError): void {
    this.#handleRelays.delete(relay);
    if (isFdExhaustion(error)) this.#fdExhausted(error.cause as Error, 'backend dial');
    const conn = new ClientConnection(socketForHandle(relay.client, this.settings.tcpKeepAliveMs), { maxOpeningBytes: this.settings.maxOpeningBytes, tls: null });
    this.#openings.add(conn);
    this.#refuse(conn, error, this.#fastResourceId ?? undefined);
  }

  #accept(socket: net.Socket): void {
    const counters = this.counters;
    counters.total++;
    if (this.settings.maxConnections > 0 && this.sessions >= this.settings.maxConnections) {
      const refused = new ClientConnection(socket, { maxOpeningBytes: this.settings.maxOpeningBytes, tls: this.tls });
      counters.refused++;
      socket.resume();
      refused.close(this.protocol.encodeError(new PolyproxyError('TOO_MANY', `too many connections to listener ${this.settings.name}`), undefined, refused));
      return;
    }
    counters.open++;
    if (this.#fastResourceId !== null && this.tls === null) {
      const decision = this.router.cachedDial(this.#fastKey);
      if (decision !== undefined) {
        this.#acceptCached(socket, decision);
        return;
      }
    }
    this.#pipeline(socket);
  }

  /** The socket fast path, for an accepted (and counted) client whose route came from the cache. */
  #acceptCached(socket: net.Socket, decision: RouteDecision): void {
    // A tenant with limits of its own takes the pipeline (rates, counts, a throttled relay); fair share alone is counted here.
    if ((decision.entry.limits ?? null) !== null) {
      this.#pipeline(socket);
      return;
    }
    const router = this.router;
    let lease: Lease | null = null;
    if (router.limits?.fairShare === true) {
      try {
        lease = router.limits.admit(this.#fastResourceId as string, null, this.#share) as Lease;
      } catch (err) {
        const conn = new ClientConnection(socket, { maxOpeningBytes: this.settings.maxOpeningBytes, tls: null });
        this.#openings.add(conn);
        socket.resume();
        this.#refuse(conn, toPolyproxyError(err), this.#fastResourceId as string);
        return;
      }
    }
    const dial = new Dial(this, decision.candidates, decision.entry.route.timeoutMs ?? this.settings.connectTimeoutMs, router.health, this.#dialOptions);
    dial.client = socket;
    dial.context = decision.entry;
    if (lease !== null) this.#dialLeases.set(dial, lease);
    this.#dials.add(dial);
    dial.start();
  }

  #pipeline(socket: net.Socket): void {
    const conn = new ClientConnection(socket, { maxOpeningBytes: this.settings.maxOpeningBytes, tls: this.tls });
    this.#openings.add(conn);
    socket.resume();
    void this.#run(conn);
  }

  /** The pipeline: identify → route → connect → replay → relay. */
  async #run(conn: ClientConnection): Promise<void> {
    let resourceId: string | undefined;
    let backend: net.Socket | null = null;
    let connected: Connected | null = null;
    /** Set when the client half-closed while its session waited on the backend (finEndsOpening protocols). */
    let left: DialAbort | null = null;
    let lease: Lease | null = null;
    const timer = setTimeout(abortOnHandshakeTimeout, this.settings.handshakeTimeoutMs, conn, this.settings.handshakeTimeoutMs);
    try {
      const session: ProtocolSession = {
        listener: this.settings.name,
        router: this.router,
        connectTimeoutMs: this.settings.connectTimeoutMs,
        idleTimeoutMs: this.settings.idleTimeoutMs,
        tcpKeepAliveMs: this.settings.tcpKeepAliveMs,
        resolveContext: () => this.#context(conn, undefined),
        takeOver: () => clearTimeout(timer),
        failed: (err) => this.countFailure(err),
        served: (id) => resources.count(id, 0, 0),
        admit: async (id, entry) => {
          if (lease === null) lease = await this.#admit(id, entry);
        },
        onDrain: (target) => {
          this.#drainTargets.set(conn, target);
          if (this.draining) target.drain(false);
        },
      };
      const opening = await this.protocol.identify(conn, session);
      clearTimeout(timer);
      if (opening === null) {
        // Set by session.admit (a protocol that served the session itself): the session is over.
        (lease as Lease | null)?.release();
        lease = null;
        this.#closeOpening(conn, null);
        return;
      }
      resourceId = opening.resourceId;
      let resolver: Resolver | null = null;
      const health = this.router.health;
      if (this.protocol.finEndsOpening === true) {
        // A client that half-closes from now on cannot finish: drop the connect, or close the backend the replay waits on.
        const abort = (left = new DialAbort());
        conn.whenGone(() => {
          abort.abort(new PolyproxyError('PROTOCOL', 'client left before the backend answered', { source: 'client' }));
          backend?.destroy();
        });
      }
      if (opening.endpoint !== undefined) {
        // A one-shot (CancelRequest) gets no answer: the connect alone is judged.
        connected = await connectFirst([opening.endpoint], this.settings.connectTimeoutMs, health, { keepAliveMs: this.settings.tcpKeepAliveMs });
      } else {
        // A protocol that routed during identify (SMTP answers 550 in-session) hands its decision over: one rotation per connection.
        const decision = opening.decision ?? (await this.router.route(resourceId, this.#context(conn, opening.firstBytes)));
        resolver = decision.entry.source.resolver;
        lease = await this.#admit(resourceId, decision.entry);
        connected = await this.router.connect(decision, decision.entry.route.timeoutMs ?? this.settings.connectTimeoutMs, this.#dialOptions, left ?? undefined);
      }
      backend = connected.socket;
      if (conn.closed || (left !== null && left.reason !== null)) throw new PolyproxyError('PROTOCOL', 'client left before the backend answered', { source: 'client' });
      if (opening.onConnected !== undefined) {
        const ctx = this.#context(conn, undefined);
        opening.onConnected(connected.endpoint, (id) => this.router.route(id, ctx).then(endpointsOf));
      }
      if (this.protocol.replay !== undefined) {
        await this.protocol.replay(conn, backend, opening);
        // The backend answered its part of the opening.
        if (opening.endpoint === undefined) health?.answered(connected.endpoint, null);
        // A client reset meanwhile: no relay for it. (A FIN is passed on by the relay: a client may
        // half-close after pipelining its commands; a silent backend is bounded by the deadlines.)
        if (conn.closed) throw new PolyproxyError('PROTOCOL', 'client left during the backend handshake', { source: 'client' });
      }
      conn.whenGone(null);
      const { socket, leftover } = conn.detach();
      let replay = this.protocol.replay === undefined ? opening.replay : null;
      if (leftover !== null) replay = replay === null ? leftover : Buffer.concat([replay, leftover]);
      const context: SessionContext = { resourceId, endpoint: connected.endpoint, resolver, clientAddress: conn.remoteAddress, onClose: opening.onClose, row: resources.opened(resourceId), health, lease };
      lease = null;
      const relay = new Relay(socket, backend, this, this.settings.idleTimeoutMs, opening.backendTap ?? null, opening.clientFilter ?? null);
      relay.context = context;
      relay.throttle = context.lease?.throttle ?? null;
      if (this.protocol.replay === undefined && opening.endpoint === undefined) relay.firstResponseMs = this.settings.firstResponseTimeoutMs;
      this.#openings.delete(conn);
      this.#relays.add(relay);
      if (resolver?.onConnect !== undefined) this.#onConnect(resolver, context);
      relay.start(replay);
    } catch (err) {
      clearTimeout(timer);
      conn.whenGone(null);
      backend?.destroy();
      lease?.release();
      // The client's leaving, not the backend's failure that followed it (its socket was closed for it), ends the session.
      const error = left?.reason ?? toPolyproxyError(err);
      // The backend accepted and then failed its part of the opening (no greeting in time, a reset, garbage).
      if (connected !== null && error.source === 'backend' && this.protocol.replay !== undefined) this.router.health?.answered(connected.endpoint, error.message);
      if (isFdExhaustion(error)) this.#fdExhausted(error.cause as Error, 'backend dial');
      this.#refuse(conn, error, resourceId ?? error.resourceId);
    }
  }

  /** @internal Fast path: the backend accepted; the relay starts now. */
  dialConnected(dial: Dial): void {
    this.#dials.delete(dial);
    const client = dial.client as net.Socket;
    const backend = dial.socket as net.Socket;
    if (client.destroyed) {
      backend.destroy();
      if (this.#dialLeases.size !== 0) this.#takeDialLease(dial)?.release();
      this.dialFailed(dial, new PolyproxyError('PROTOCOL', 'client left before the backend answered', { source: 'client' }));
      return;
    }
    const resourceId = this.#fastResourceId as string;
    const endpoint = dial.endpoint as Endpoint;
    const resolver = (dial.context as RouteEntry).source.resolver;
    // getpeername is a syscall: read the address only when a hook or the info log will use it.
    const clientAddress = resolver.onConnect !== undefined || resolver.onDisconnect !== undefined || this.#log.isLevelEnabled('info') ? (client.remoteAddress ?? '') : '';
    const lease = this.#dialLeases.size === 0 ? null : this.#takeDialLease(dial);
    const context: SessionContext = { resourceId, endpoint, resolver, clientAddress, onClose: undefined, row: resources.opened(resourceId), health: dial.health, lease };
    const relay = new Relay(client, backend, this, this.settings.idleTimeoutMs, null, null);
    relay.context = context;
    relay.firstResponseMs = this.settings.firstResponseTimeoutMs;
    this.#relays.add(relay);
    if (resolver.onConnect !== undefined) this.#onConnect(resolver, context);
    relay.start(null);
  }

  /** @internal Fast path: no backend (or shutdown, or the client left). Refused like a pipeline connection. */
  dialFailed(dial: Dial, error: PolyproxyError): void {
    this.#dials.delete(dial);
    if (this.#dialLeases.size !== 0) this.#takeDialLease(dial)?.release();
    if (isFdExhaustion(error)) this.#fdExhausted(error.cause as Error, 'backend dial');
    // Rare: the pipeline's refusal (log, metrics, protocol error, graceful close) needs a ClientConnection.
    const conn = new ClientConnection(dial.client as net.Socket, { maxOpeningBytes: this.settings.maxOpeningBytes, tls: null });
    this.#openings.add(conn);
    this.#refuse(conn, error, this.#fastResourceId ?? undefined);
  }

  #takeDialLease(dial: Dial): Lease | null {
    const lease = this.#dialLeases.get(dial) ?? null;
    this.#dialLeases.delete(dial);
    return lease;
  }

  /**
   * Tenant limits for one session (core/limits): the config's (with fair
   * share of this listener) or, without a `limits` section, the route's own.
   * Null when nothing is counted. Throws LimitError.
   */
  #admit(resourceId: string, entry: RouteEntry): Lease | null | Promise<Lease> {
    const limits = entry.limits ?? null;
    const engine = this.router.limits ?? (limits === null ? undefined : routeOnlyLimits);
    if (engine === undefined || (limits === null && !engine.fairShare)) return null;
    this.#share.max = this.settings.maxConnections;
    return engine.admit(resourceId, limits, engine.fairShare ? this.#share : null);
  }

  /** @internal The relay's first backend answer (or its failure before one), for the endpoint's breaker. */
  backendAnswered(relay: Relay, problem: string | null): void {
    const context = relay.context as SessionContext;
    context.health?.answered(context.endpoint, problem);
  }

  /** @internal No backend byte within firstResponseTimeoutMs: the client, which has received nothing yet, gets the protocol's TIMEOUT error. */
  backendSilent(relay: Relay): void {
    const context = relay.context as SessionContext;
    const ms = this.settings.firstResponseTimeoutMs;
    const error = new PolyproxyError('TIMEOUT', `backend ${context.endpoint.label} sent nothing within ${ms} ms`, { source: 'backend', resourceId: context.resourceId });
    context.health?.answered(context.endpoint, `no answer within ${ms} ms`);
    this.countFailure(error);
    this.#log.warn({ code: error.code, client: context.clientAddress, resource: context.resourceId, backend: context.endpoint.label }, error.message);
    const client = relay.client;
    let bytes: Buffer | null = null;
    try {
      bytes = this.protocol.encodeError(error, context.resourceId);
    } catch (err) {
      this.#log.error({ err }, 'protocol failed to encode an error');
    }
    // The backend's close makes the relay flush this to the client and close it (destroySoon).
    if (bytes !== null && !client.destroyed && client.writable) client.write(bytes);
    relay.backend.destroy();
  }

  #onConnect(resolver: Resolver, context: SessionContext): void {
    callHook('onConnect', () =>
      resolver.onConnect?.(context.resourceId, { protocol: this.settings.protocol, listener: this.settings.name, clientAddress: context.clientAddress, endpoint: context.endpoint.label }),
    );
  }

  #refuse(conn: ClientConnection, error: PolyproxyError, resourceId: string | undefined): void {
    this.countFailure(error);
    if (error.source === 'client') {
      // Clients that hang up or send garbage are normal on the internet: debug, not error.
      this.#log.debug({ code: error.code, client: conn.remoteAddress, resource: resourceId }, error.message);
    } else {
      this.#log.warn({ code: error.code, client: conn.remoteAddress, resource: resourceId }, error.message);
    }
    this.#closeOpening(conn, this.#encode(error, resourceId, conn));
  }

  #encode(error: PolyproxyError, resourceId: string | undefined, conn: ClientConnection): Buffer | null {
    try {
      return this.protocol.encodeError(error, resourceId, conn);
    } catch (err) {
      this.#log.error({ err }, 'protocol failed to encode an error');
      return null;
    }
  }

  #closeOpening(conn: ClientConnection, bytes: Buffer | null): void {
    conn.close(bytes);
    this.#drainTargets.delete(conn);
    if (this.#openings.delete(conn)) this.#sessionGone(false);
  }

  #context(conn: ClientConnection, firstBytes: Buffer | undefined): ResolveContext {
    const ctx: ResolveContext = { protocol: this.settings.protocol, listener: this.settings.name, clientAddress: conn.remoteAddress, clientPort: conn.remotePort, tls: conn.tls };
    return firstBytes === undefined ? ctx : { ...ctx, firstBytes };
  }

  relayClosed(relay: Relay | HandleRelay): void {
    if (relay instanceof HandleRelay) this.#handleRelays.delete(relay);
    else this.#relays.delete(relay);
    this.counters.bytesIn += relay.bytesIn;
    this.counters.bytesOut += relay.bytesOut;
    const context = relay.context as SessionContext;
    resources.closed(context.row, relay.bytesIn, relay.bytesOut);
    context.lease?.release();
    if (context.onClose !== undefined) {
      try {
        context.onClose();
      } catch (err) {
        this.#log.error({ err }, 'protocol onClose failed');
      }
    }
    const resolver = context.resolver;
    const logged = this.#log.isLevelEnabled('info');
    if (resolver?.onDisconnect === undefined && !logged) {
      // Nothing reads the summary: skip building it (the usual case at --log-level warn).
      this.#sessionGone(true);
      return;
    }
    const durationMs = Date.now() - relay.startedAt;
    if (resolver?.onDisconnect !== undefined) {
      callHook('onDisconnect', () =>
        resolver.onDisconnect?.(context.resourceId, {
          protocol: this.settings.protocol,
          listener: this.settings.name,
          clientAddress: context.clientAddress,
          endpoint: context.endpoint.label,
          bytesIn: relay.bytesIn,
          bytesOut: relay.bytesOut,
          durationMs,
        }),
      );
    }
    if (logged) {
      this.#log.info(
        { resource: context.resourceId, client: context.clientAddress, backend: context.endpoint.label, bytesIn: relay.bytesIn, bytesOut: relay.bytesOut, durationMs, end: relay.reason ?? 'closed' },
        'session closed',
      );
    }
    this.#sessionGone(true);
  }

  /**
   * `relayed`: the session had its backend, so its client's and backend's
   * descriptors just came free and an fd pause may end. A refused opening
   * held only its client's: reopening for it would accept the next client
   * into the same failed dial (and its 57P03-style refusal) instead of
   * letting the kernel refuse it during the pause.
   */
  #sessionGone(relayed: boolean): void {
    this.counters.open--;
    if (relayed && this.#fdPause !== null) this.resumeAccepting();
    this.settle();
  }
}

function resumeAccepting(listener: Listener): void {
  listener.resumeAccepting();
}

function abortOnHandshakeTimeout(conn: ClientConnection, ms: number): void {
  conn.abort(new PolyproxyError('HANDSHAKE_TIMEOUT', `client did not complete its opening within ${ms} ms`, { source: 'client' }));
}

function endpointsOf(decision: RouteDecision): readonly Endpoint[] {
  return decision.entry.endpoints;
}

/** An Opening that carries nothing but its resource id: nothing to replay, tap, filter or call back. */
function isPlainOpening(opening: Opening): boolean {
  return (
    opening.replay === null &&
    opening.firstBytes === undefined &&
    opening.endpoint === undefined &&
    opening.decision === undefined &&
    opening.backendTap === undefined &&
    opening.onConnected === undefined &&
    opening.clientFilter === undefined &&
    opening.onClose === undefined
  );
}

function withAlpn(tls: TlsServerSettings | null, alpnProtocols: readonly string[] | undefined): TlsServerSettings | null {
  return tls === null || alpnProtocols === undefined ? tls : { ...tls, alpnProtocols };
}

function noop(): void {}
