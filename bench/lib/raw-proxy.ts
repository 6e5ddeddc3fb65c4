/**
 * Anchor: the "Node floor" — the cheapest TCP proxy a Node process can run.
 * It drives libuv's TCP handles directly through the internal bindings
 * (`process.binding('tcp_wrap')` / `('stream_wrap')`): no net.Socket, no
 * streams, no EventEmitter, no per-read allocation. Whatever it costs per
 * connection or per transaction is what the Node runtime itself (V8 ⇄ C++
 * transitions, libuv, the kernel's TCP work) costs on this machine, so it
 * bounds what any Node proxy — polyproxy included — can reach here.
 *
 * This is a measuring anchor for bench/, not something polyproxy ships: the
 * bindings are undocumented internals (`process.binding` is deprecated) and it
 * has none of a proxy's features (no timeouts, limits, logging, metrics).
 *
 *   node bench/lib/raw-proxy.ts --backend HOST:PORT [--port N] [--host H]
 *
 * Prints `{"type":"ready","port":N,"pid":P}` once listening; exits on SIGTERM
 * or when stdin closes (same CLI as bench/lib/pipe-proxy.ts).
 *
 * Data path. Every accepted client gets a backend connection; both handles
 * read (`useUserBuffer`) into a 64 KB buffer of their own, taken from a pool
 * when the connection starts and given back when it closes. A read is written
 * to the other handle with `writeBuffer`, which first tries the write
 * synchronously (uv_try_write); when everything was written the buffer can be
 * reused at once — the fast path, with one shared, untouched WriteWrap and
 * cached views of the buffer (no allocation per read).
 *
 * When the kernel did not take everything, libuv queues the rest *without
 * copying it*: the pending write points into the reading handle's buffer.
 * `streamBaseState[kLastWriteWasAsync]` says so; the proxy then stops reading
 * that handle (so nothing overwrites the buffer — and this is the
 * backpressure) until the write's `oncomplete`, then starts reading again.
 * The WriteWrap that went async belongs to that write, so the next write uses
 * a new one. (One buffer shared by all handles, as in a first prototype, would
 * be overwritten by other connections' reads while a write is queued.)
 *
 * Ends: EOF on one side → `shutdown` (FIN) the other; once both sides have
 * sent EOF, both handles are closed. Any other read error, a write or
 * shutdown error, or a failed backend connect → both handles are closed.
 */
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { getSystemErrorName, parseArgs } from 'node:util';

// ---------------------------------------------------------------------------
// The internal bindings, typed as far as this file uses them.

/** A uv_tcp_t (TCPWrap: LibuvStreamWrap + StreamBase + HandleWrap). Methods return 0 or a negative errno. */
interface TcpHandle {
  /** Called (this = the handle) with streamBaseState[kReadBytesOrError] = bytes read or a negative errno. */
  onread: (this: TcpHandle) => void;
  /** Listening handles: (status, accepted client handle). */
  onconnection: (status: number, client: TcpHandle | undefined) => void;
  readStart(): number;
  readStop(): number;
  /** Reads go into `buffer` from now on (starting at offset 0) instead of a fresh ArrayBuffer per read. */
  useUserBuffer(buffer: Uint8Array): void;
  writeBuffer(req: WriteReq, data: Uint8Array): number;
  shutdown(req: ShutdownReq): number;
  close(callback?: () => void): void;
  setNoDelay(enable: boolean): number;
  bind(host: string, port: number): number;
  bind6(host: string, port: number, flags: number): number;
  listen(backlog: number): number;
  connect(req: ConnectReq, host: string, port: number): number;
  connect6(req: ConnectReq, host: string, port: number): number;
  getsockname(out: { port?: number }): number;
  /** Ours: the end of a connection this handle is. */
  [kEnd]?: End;
}

/** WriteWrap: `oncomplete(status)` (this = the req) is called only for writes that went async. */
interface WriteReq {
  oncomplete?: (this: WriteReq, status: number) => void;
  /** Ours: the end whose read is being written (stopped until the write completes). */
  source?: End;
}

interface ShutdownReq {
  oncomplete?: (this: ShutdownReq, status: number) => void;
  /** Ours. */
  conn?: Connection;
}

interface ConnectReq {
  oncomplete?: (this: ConnectReq, status: number) => void;
  /** Ours. */
  conn?: Connection;
}

interface TcpWrapBinding {
  TCP: new (type: number) => TcpHandle;
  TCPConnectWrap: new () => ConnectReq;
  constants: { SOCKET: number; SERVER: number };
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteReq;
  ShutdownWrap: new () => ShutdownReq;
  /** Shared Int32Array the C++ side reports read and write results in. */
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kLastWriteWasAsync: number;
}

const binding = (process as unknown as { binding(name: string): unknown }).binding;
const { TCP, TCPConnectWrap, constants } = binding('tcp_wrap') as TcpWrapBinding;
const { WriteWrap, ShutdownWrap, streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = binding('stream_wrap') as StreamWrapBinding;

const UV_EOF = -4095;
const BUFFER_SIZE = 64 * 1024;
/** Free buffers kept for reuse (at most 16 MB); beyond that they are left to the GC. */
const POOL_MAX = 256;
/** Cached views per buffer, indexed by read length & VIEW_MASK (direct-mapped). */
const VIEW_SLOTS = 16;
const VIEW_MASK = VIEW_SLOTS - 1;

const kEnd = Symbol('raw-proxy end');

// ---------------------------------------------------------------------------
// Read buffers: one per handle, pooled.

interface Slab {
  readonly buffer: Buffer;
  /** `buffer.subarray(0, n)` for recently seen n, so a read does not allocate a view. */
  readonly views: Array<Buffer | undefined>;
}

const pool: Slab[] = [];

function takeSlab(): Slab {
  return pool.pop() ?? { buffer: Buffer.allocUnsafeSlow(BUFFER_SIZE), views: new Array<Buffer | undefined>(VIEW_SLOTS).fill(undefined) };
}

function view(slab: Slab, n: number): Buffer {
  const slot = n & VIEW_MASK;
  let v = slab.views[slot];
  if (v === undefined || v.length !== n) {
    v = slab.buffer.subarray(0, n);
    slab.views[slot] = v;
  }
  return v;
}

// ---------------------------------------------------------------------------
// Connections.

/** One side of a proxied connection (client or backend). */
class End {
  readonly handle: TcpHandle;
  readonly conn: Connection;
  readonly slab: Slab;
  /** Set right after construction: the other side. */
  peer!: End;
  constructor(handle: TcpHandle, conn: Connection) {
    this.handle = handle;
    this.conn = conn;
    this.slab = takeSlab();
    handle[kEnd] = this;
  }
}

class Connection {
  readonly client: End;
  readonly backend: End;
  /** Sides that have sent EOF (0–2). */
  eofs = 0;
  closed = false;
  constructor(client: TcpHandle, backend: TcpHandle) {
    this.client = new End(client, this);
    this.backend = new End(backend, this);
    this.client.peer = this.backend;
    this.backend.peer = this.client;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.handle.close();
    this.backend.handle.close();
    // Once closed (fd closed, reads stopped) libuv no longer touches the
    // buffers, even for a write still queued (it is only cancelled).
    if (pool.length < POOL_MAX) pool.push(this.client.slab);
    if (pool.length < POOL_MAX) pool.push(this.backend.slab);
  }
}

/**
 * The WriteWrap passed to every write. A write done synchronously never
 * touches it, so one object serves them all until a write goes async (or
 * fails); that write then owns it and a new one takes its place.
 */
let writeReq = new WriteWrap();

function onRead(this: TcpHandle): void {
  const n = streamBaseState[kReadBytesOrError] as number;
  const from = this[kEnd] as End;
  const conn = from.conn;
  if (n > 0) {
    const req = writeReq;
    const err = from.peer.handle.writeBuffer(req, view(from.slab, n));
    if (err !== 0) {
      writeReq = new WriteWrap();
      conn.close();
    } else if (streamBaseState[kLastWriteWasAsync] !== 0) {
      // Queued: the rest of the data is still in from.slab. Stop reading
      // `from` until the write is done, so nothing overwrites it.
      writeReq = new WriteWrap();
      req.source = from;
      req.oncomplete = onWriteComplete;
      this.readStop();
    }
    return;
  }
  if (n === 0) return; // EAGAIN: nothing read
  if (n === UV_EOF) {
    this.readStop();
    if (++conn.eofs === 2) {
      conn.close();
      return;
    }
    const req = new ShutdownWrap();
    req.conn = conn;
    req.oncomplete = onShutdownComplete;
    if (from.peer.handle.shutdown(req) !== 0) conn.close();
    return;
  }
  conn.close(); // ECONNRESET and the like
}

function onWriteComplete(this: WriteReq, status: number): void {
  const from = this.source as End;
  this.source = undefined;
  if (from.conn.closed) return;
  if (status < 0 || from.handle.readStart() !== 0) from.conn.close();
}

function onShutdownComplete(this: ShutdownReq, status: number): void {
  if (status < 0) (this.conn as Connection).close();
}

function onConnect(this: ConnectReq, status: number): void {
  const conn = this.conn as Connection;
  if (conn.closed) return;
  if (status < 0) {
    conn.close();
    return;
  }
  for (const end of [conn.client, conn.backend]) {
    const h = end.handle;
    h.setNoDelay(true);
    h.useUserBuffer(end.slab.buffer);
    h.onread = onRead;
    if (h.readStart() !== 0) {
      conn.close();
      return;
    }
  }
}

// ---------------------------------------------------------------------------
// CLI, listener.

function check(what: string, err: number): void {
  if (err !== 0) throw new Error(`${what}: ${getSystemErrorName(err)}`);
}

const { values } = parseArgs({ options: { backend: { type: 'string' }, port: { type: 'string', default: '0' }, host: { type: 'string', default: '127.0.0.1' } } });
if (values.backend === undefined) throw new Error('--backend HOST:PORT is required');
const colon = values.backend.lastIndexOf(':');
// Raw handles take literal addresses only: resolve names once, up front.
const backendHost = (await lookup(values.backend.slice(0, colon).replace(/^\[|\]$/g, ''))).address;
const backendPort = Number(values.backend.slice(colon + 1));
const backendIpv6 = net.isIPv6(backendHost);
const listenHost = (await lookup(values.host)).address;

const server = new TCP(constants.SERVER);
check(`bind ${listenHost}:${values.port}`, net.isIPv6(listenHost) ? server.bind6(listenHost, Number(values.port), 0) : server.bind(listenHost, Number(values.port)));
check('listen', server.listen(4096));

server.onconnection = (status, client) => {
  if (status < 0 || client === undefined) return; // e.g. EMFILE: the client stays in the backlog
  const backend = new TCP(constants.SOCKET);
  const conn = new Connection(client, backend);
  const req = new TCPConnectWrap();
  req.conn = conn;
  req.oncomplete = onConnect;
  const err = backendIpv6 ? backend.connect6(req, backendHost, backendPort) : backend.connect(req, backendHost, backendPort);
  if (err !== 0) conn.close();
};

const address: { port?: number } = {};
check('getsockname', server.getsockname(address));
process.stdout.write(`${JSON.stringify({ type: 'ready', port: address.port, pid: process.pid })}\n`);

process.on('SIGTERM', () => process.exit(0));
process.stdin.on('end', () => process.exit(0)).resume();
