/**
 * Bare libuv TCP handles for the tcp fast path (core/handle-relay.ts): an
 * accepted connection taken from the listening handle before net.Server
 * wraps it in a net.Socket, and a backend connection opened without one.
 * What a connection then costs is what bench/lib/raw-proxy.ts (the "Node
 * floor") costs: no Socket, no streams, no EventEmitter, no nextTick per
 * end/finish/close step.
 *
 * These are Node's internal bindings (`process.binding('tcp_wrap')`, the
 * objects lib/net.js drives), shape-checked once by support.ts
 * (`ioSupport.handleRelay`, off with POLYPROXY_DIRECT_IO=0); callers reach
 * here only when it is on. Outside src/core/io/ a handle is an opaque
 * value passed back to these functions. A handle can still become a
 * net.Socket (socketForHandle) as long as nothing read from it.
 */
import net from 'node:net';
import { readBuffer } from './shared-read-buffer.ts';
import type { StreamHandle, WriteReq } from './stream-handle.ts';
import { tcpWrap } from './support.ts';

/** A uv_tcp_t (TCPWrap): a StreamHandle plus what a TCP connection adds. Methods return 0 or a negative errno. */
export interface TcpHandle extends StreamHandle {
  useUserBuffer(buffer: Buffer): void;
  shutdown(req: ShutdownReq): number;
  close(callback?: (this: TcpHandle) => void): void;
  setNoDelay(enable: boolean): number;
  setKeepAlive(enable: boolean, delaySeconds: number): number;
  connect(req: ConnectReq, host: string, port: number): number;
  connect6(req: ConnectReq, host: string, port: number): number;
  getpeername(out: { address?: string; port?: number }): number;
}

/** A connect request (TCPConnectWrap); oncomplete runs once, `this` = the request. */
export interface ConnectReq {
  oncomplete: ((this: ConnectReq, status: number) => void) | null;
  owner: unknown;
}

/** A shutdown request (ShutdownWrap): runs after every write queued before it. */
export interface ShutdownReq {
  oncomplete: ((this: ShutdownReq, status: number) => void) | null;
  owner: unknown;
}

export type { WriteReq };

const wrap = tcpWrap;

/** The listening handle's hook: return true when the connection was taken, false to let net.Server have it. */
export type AcceptHook = (status: number, handle: TcpHandle) => boolean;

const kOwnHook = Symbol('polyproxy.acceptHook');

/**
 * Puts `hook` in front of net.Server's own accept callback on the server's
 * listening handle (set anew by every listen(), so call this after each).
 * Errors (EMFILE...) always go to net.Server, which emits them.
 */
export function interceptAccept(server: net.Server, hook: AcceptHook): boolean {
  if (wrap === null) return false;
  const handle = (server as unknown as { _handle?: { onconnection?: unknown; [kOwnHook]?: boolean } | null })._handle;
  if (handle === null || handle === undefined || typeof handle.onconnection !== 'function' || handle[kOwnHook] === true) return false;
  const original = handle.onconnection as (this: unknown, status: number, client: unknown) => void;
  handle[kOwnHook] = true;
  handle.onconnection = function onconnection(this: unknown, status: number, client: unknown): void {
    if (status === 0 && client !== undefined && hook(status, client as TcpHandle)) return;
    original.call(this, status, client);
  };
  return true;
}

/**
 * TCP_NODELAY and keepalive set once on the server's listening socket
 * (after each listen()), so the connections it accepts start with them:
 * Linux copies both, with the keepalive timings, from the listening socket
 * to each accepted one (tcp_create_openreq_child, which also arms the
 * keepalive timer). The fast path then spends no setsockopt per accepted
 * connection — five with keepalive (SO_KEEPALIVE, TCP_KEEPIDLE,
 * TCP_KEEPINTVL, TCP_KEEPCNT, TCP_NODELAY), about a sixth of what a
 * proxied connection costs in tcp-rate. True when set; false (not Linux,
 * or a failure): each accepted handle sets its own.
 */
export function setAcceptedSocketOptions(server: net.Server, keepAliveMs: number): boolean {
  if (process.platform !== 'linux') return false;
  const handle = (server as unknown as { _handle?: Partial<TcpHandle> | null })._handle;
  if (handle === null || handle === undefined || typeof handle.setNoDelay !== 'function' || typeof handle.setKeepAlive !== 'function') return false;
  if (handle.setNoDelay(true) !== 0) return false;
  return keepAliveMs > 0 ? handle.setKeepAlive(true, Math.floor(keepAliveMs / 1000)) === 0 : true;
}

/**
 * The net.Socket net.Server would have made of an accepted handle (paused,
 * half-open allowed, noDelay, keepalive as the listener says), for the
 * refusal paths that need one. Only for a handle that has not read.
 */
export function socketForHandle(handle: TcpHandle, keepAliveMs: number): net.Socket {
  const socket = new net.Socket({ handle, allowHalfOpen: true, pauseOnCreate: true, readable: true, writable: true } as unknown as net.SocketConstructorOpts);
  socket.setNoDelay(true);
  if (keepAliveMs > 0) socket.setKeepAlive(true, keepAliveMs);
  return socket;
}

/** A new, unconnected TCP handle (no descriptor yet: connect opens one). */
export function newTcpHandle(): TcpHandle {
  return new (wrap as NonNullable<typeof wrap>).TCP(wrap?.socketType as number) as TcpHandle;
}

export function newConnectReq(owner: unknown, oncomplete: (this: ConnectReq, status: number) => void): ConnectReq {
  const req = new (wrap as NonNullable<typeof wrap>).TCPConnectWrap() as ConnectReq;
  req.owner = owner;
  req.oncomplete = oncomplete;
  return req;
}

export function newShutdownReq(owner: unknown, oncomplete: (this: ShutdownReq, status: number) => void): ShutdownReq {
  const req = new (wrap as NonNullable<typeof wrap>).ShutdownWrap() as ShutdownReq;
  req.owner = owner;
  req.oncomplete = oncomplete;
  return req;
}

/** Starts connecting; 0 or a negative errno (EMFILE when no descriptor is left). `family` 4 or 6, `host` a literal address. */
export function connectHandle(handle: TcpHandle, req: ConnectReq, family: number, host: string, port: number): number {
  return family === 6 ? handle.connect6(req, host, port) : handle.connect(req, host, port);
}

/** A connected handle reads into the process's shared read buffer (shared-read-buffer.ts) with `onread`, TCP_NODELAY on, keepalive as asked (already so when accepted from a socket setAcceptedSocketOptions prepared). */
export function startHandle(handle: TcpHandle, onread: (this: TcpHandle) => void, keepAliveMs: number, optionsInherited = false): number {
  if (!optionsInherited) {
    handle.setNoDelay(true);
    if (keepAliveMs > 0) handle.setKeepAlive(true, Math.floor(keepAliveMs / 1000));
  }
  handle.useUserBuffer(readBuffer);
  handle.onread = onread as StreamHandle['onread'];
  handle.reading = true;
  return handle.readStart();
}

/** The peer's address ('' when unknown): a syscall, read only when something uses it. */
export function peerAddress(handle: TcpHandle): string {
  const out: { address?: string } = {};
  return handle.getpeername(out) === 0 ? (out.address ?? '') : '';
}

/** The address family a connect to `host` needs: 4, 6, or 0 for a name (which needs a lookup: not on this path). */
export function literalFamily(host: string): number {
  return net.isIP(host);
}
