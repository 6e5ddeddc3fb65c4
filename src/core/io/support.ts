/**
 * What this process may use of Node's internals, decided once at load.
 *
 * The relay's fast paths rely on objects lib/net.js keeps to itself: the
 * `stream_wrap` binding (direct handle reads and writes, stream-handle.ts)
 * and net.Socket's symbol-keyed `onread` fields (switching an accepted
 * socket onto the shared read buffer, socket-onread.ts). Neither is public
 * API, so each is shape-checked here; where a Node upgrade changed it, its
 * flag is off and callers keep using the public socket methods. Nothing
 * outside src/core/io/ touches these internals.
 */
import net from 'node:net';

/** The parts of `process.binding('stream_wrap')` stream-handle.ts uses. */
export interface StreamWrap {
  readonly WriteWrap: new () => object;
  /** Shared with C++: the byte count (or error) of the read being delivered, and whether the last write was queued. */
  readonly state: Int32Array;
  readonly kReadBytesOrError: number;
  readonly kLastWriteWasAsync: number;
}

/** The symbols under which net.Socket keeps its `onread` option (lib/net.js kBuffer, kBufferCb, kBufferGen). */
export interface OnreadFields {
  readonly buffer: symbol;
  readonly callback: symbol;
  readonly generator: symbol;
}

export interface IoSupport {
  /**
   * Relayed plain-TCP sides are read and written through their libuv
   * handles (stream-handle.ts). On unless POLYPROXY_DIRECT_IO=0 or the
   * `stream_wrap` binding has another shape.
   */
  readonly directIo: boolean;
  /** Accepted sockets can be switched onto the shared read buffer (socket-onread.ts). */
  readonly socketOnread: boolean;
  /**
   * The tcp fast path may accept and connect on bare libuv TCP handles,
   * without a net.Socket (tcp-handle.ts, core/handle-relay.ts). On with
   * direct I/O unless the `tcp_wrap` binding has another shape.
   */
  readonly handleRelay: boolean;
}

/** The parts of `process.binding('tcp_wrap')` (and stream_wrap's ShutdownWrap) tcp-handle.ts uses. */
export interface TcpWrap {
  readonly TCP: new (type: number) => object;
  readonly TCPConnectWrap: new () => object;
  readonly ShutdownWrap: new () => object;
  /** TCP's constructor argument for a connection handle (constants.SOCKET). */
  readonly socketType: number;
}

function probeStreamWrap(): StreamWrap | null {
  try {
    const binding = (process as unknown as { binding(name: string): Partial<StreamWrap> & { streamBaseState?: unknown } }).binding('stream_wrap');
    const { WriteWrap, streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = binding;
    if (typeof WriteWrap !== 'function' || !(streamBaseState instanceof Int32Array)) return null;
    if (typeof kReadBytesOrError !== 'number' || typeof kLastWriteWasAsync !== 'number') return null;
    if (kReadBytesOrError < 0 || kReadBytesOrError >= streamBaseState.length || kLastWriteWasAsync < 0 || kLastWriteWasAsync >= streamBaseState.length) return null;
    return { WriteWrap, state: streamBaseState, kReadBytesOrError, kLastWriteWasAsync };
  } catch {
    return null;
  }
}

const TCP_METHODS = ['connect', 'connect6', 'getpeername', 'setNoDelay', 'setKeepAlive', 'readStart', 'readStop', 'shutdown', 'useUserBuffer', 'writeBuffer', 'close'];

function probeTcpWrap(): TcpWrap | null {
  try {
    const binding = process as unknown as { binding(name: string): Record<string, unknown> };
    const { TCP, TCPConnectWrap, constants } = binding.binding('tcp_wrap') as { TCP?: unknown; TCPConnectWrap?: unknown; constants?: { SOCKET?: unknown } };
    const { ShutdownWrap } = binding.binding('stream_wrap') as { ShutdownWrap?: unknown };
    if (typeof TCP !== 'function' || typeof TCPConnectWrap !== 'function' || typeof ShutdownWrap !== 'function' || typeof constants?.SOCKET !== 'number') return null;
    const proto = TCP.prototype as Record<string, unknown>;
    if (!TCP_METHODS.every((m) => typeof proto[m] === 'function')) return null;
    return { TCP: TCP as TcpWrap['TCP'], TCPConnectWrap: TCPConnectWrap as TcpWrap['TCPConnectWrap'], ShutdownWrap: ShutdownWrap as TcpWrap['ShutdownWrap'], socketType: constants.SOCKET };
  } catch {
    return null;
  }
}

/**
 * Finds the fields on a socket made with `onread` (it has no handle, so
 * nothing opens): they must hold exactly what the option gave, under the
 * names lib/net.js uses.
 */
function probeOnreadFields(): OnreadFields | null {
  const buffer = Buffer.alloc(1);
  const callback = (): boolean => true;
  let socket: net.Socket;
  try {
    socket = new net.Socket({ onread: { buffer, callback } });
  } catch {
    return null;
  }
  const named = new Map(Object.getOwnPropertySymbols(socket).map((s) => [s.description, s]));
  const fields = socket as unknown as Record<symbol, unknown>;
  const bufferKey = named.get('kBuffer');
  const callbackKey = named.get('kBufferCb');
  const generatorKey = named.get('kBufferGen');
  if (bufferKey === undefined || callbackKey === undefined || generatorKey === undefined) return null;
  if (fields[bufferKey] !== buffer || fields[callbackKey] !== callback || fields[generatorKey] !== null) return null;
  return { buffer: bufferKey, callback: callbackKey, generator: generatorKey };
}

/** The checked binding for stream-handle.ts; null when direct I/O is off. */
export const streamWrap: StreamWrap | null = process.env.POLYPROXY_DIRECT_IO === '0' ? null : probeStreamWrap();

/** The checked field symbols for socket-onread.ts; null when net.Socket has changed. */
export const onreadFields: OnreadFields | null = probeOnreadFields();

/** The checked binding for tcp-handle.ts; null when direct I/O is off. */
export const tcpWrap: TcpWrap | null = streamWrap === null ? null : probeTcpWrap();

/** The decision: what this process uses. */
export const ioSupport: IoSupport = Object.freeze({ directIo: streamWrap !== null, socketOnread: onreadFields !== null, handleRelay: tcpWrap !== null });
