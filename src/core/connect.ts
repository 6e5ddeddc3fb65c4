/**
 * Backend dialing. The connect loop is the only place that retries, and it
 * only retries before any byte has been written to a backend.
 *
 * The loop is a Dial: a small object per connection attempt whose socket
 * handlers are module-level functions (they find the Dial through a symbol
 * field on the socket) and whose connect timeout is one shared coarse sweep,
 * not a timer per attempt. A listener drives a Dial directly and starts the
 * relay from its callback (no promise, no microtask); connectFirst wraps one
 * in a promise for everything else.
 */
import net from 'node:net';
import type { Endpoint } from './endpoint.ts';
import { PolyproxyError } from './errors.ts';
import { fdExhaustedError, isFdExhaustion } from './fd-limit.ts';
import type { EndpointHealth } from './health.ts';
import { backendOnRead } from './relay.ts';
import { onreadOption } from './io/shared-read-buffer.ts';

const BACKEND_ONREAD = onreadOption(backendOnRead);

/** A backend socket, reading through the shared buffer (relay.ts backendOnRead); TCP keepalive after `keepAliveMs` idle (0 = off). */
function openBackend(endpoint: Endpoint, keepAliveMs: number): net.Socket {
  return endpoint.type === 'unix'
    ? net.connect({ path: endpoint.path, allowHalfOpen: true, onread: BACKEND_ONREAD })
    : net.connect({ host: endpoint.host, port: endpoint.port, allowHalfOpen: true, noDelay: true, onread: BACKEND_ONREAD, keepAlive: keepAliveMs > 0, keepAliveInitialDelay: keepAliveMs });
}

/** How a Dial treats its connection beyond the connect itself. */
export interface DialOptions {
  /** TCP keepalive on the backend socket after this long idle; 0 = off. */
  readonly keepAliveMs?: number;
  /**
   * The owner judges the backend by its first answer and reports it to
   * health itself (health.succeeded / failed): an accepted connect then
   * does not reset the endpoint's failure count, so a backend that accepts
   * and never answers still opens its breaker.
   */
  readonly confirmLater?: boolean;
}

/**
 * Lets the caller give up on a connectFirst in progress (its client left):
 * the attempt is dropped without breaker accounting and the promise rejects
 * with the error given. Aborting after the connect settled only records it.
 */
export class DialAbort {
  /** The error given to abort(), once aborted. */
  reason: PolyproxyError | null = null;
  /** @internal Set by connectFirst while its dial is in progress. */
  onAbort: ((error: PolyproxyError) => void) | null = null;

  abort(error: PolyproxyError): void {
    if (this.reason !== null) return;
    this.reason = error;
    const fn = this.onAbort;
    this.onAbort = null;
    if (fn !== null) fn(error);
  }
}

export interface Connected {
  readonly socket: net.Socket;
  readonly endpoint: Endpoint;
}

/** Hears how a Dial ended: exactly one of these, once (from a socket event or the timeout sweep; from start() itself only when there is no candidate). Not called after cancel(). */
export interface DialOwner {
  /** `dial.socket` is connected to `dial.endpoint`; it has no 'error' listener: attach one at once. */
  dialConnected(dial: Dial): void;
  /** Every candidate failed: BACKEND_UNREACHABLE naming each. */
  dialFailed(dial: Dial, error: PolyproxyError): void;
}

const kDial = Symbol('polyproxy.dial');
type DialSocket = net.Socket & { [kDial]?: Dial | undefined };

/**
 * Tries each candidate in order until one accepts, feeding `health`
 * (passive failure counting for the circuit breakers) with every result.
 * Fields are public for the module's handlers; owners read socket,
 * endpoint, client and context.
 */
export class Dial {
  readonly owner: DialOwner;
  readonly candidates: readonly Endpoint[];
  readonly timeoutMs: number;
  readonly health: EndpointHealth | undefined;
  keepAliveMs = 0;
  confirmLater = false;
  /** The client this dial is for, when the owner has one. */
  client: net.Socket | null = null;
  /** Whatever else the owner needs when the dial ends. */
  context: unknown = null;
  /** The attempt in progress, then the connected socket. */
  socket: net.Socket | null = null;
  endpoint: Endpoint | null = null;
  next = 0;
  failures: string[] | null = null;
  /** Attempts that ended by the connect timeout (a library may name them apart from refusals). */
  timeouts = 0;
  deadline = 0;
  // Intrusive list of attempts in progress, for the shared timeout sweep.
  prevPending: Dial | null = null;
  nextPending: Dial | null = null;
  pending = false;

  constructor(owner: DialOwner, candidates: readonly Endpoint[], timeoutMs: number, health: EndpointHealth | undefined, options?: DialOptions) {
    this.owner = owner;
    this.candidates = candidates;
    this.timeoutMs = timeoutMs;
    this.health = health;
    if (options !== undefined) {
      this.keepAliveMs = options.keepAliveMs ?? 0;
      this.confirmLater = options.confirmLater ?? false;
    }
  }

  start(): void {
    dialNext(this);
  }

  /** The owner gives up (shutdown): the attempt is dropped and the owner hears nothing more. */
  cancel(): void {
    const socket = this.socket;
    if (!this.pending || socket === null) return;
    pendingDials.remove(this);
    release(socket);
    socket.destroy();
  }
}

function dialNext(dial: Dial): void {
  const endpoint = dial.candidates[dial.next];
  if (endpoint === undefined) {
    dial.socket = null;
    dial.endpoint = null;
    const failures = dial.failures === null ? '' : dial.failures.join('; ');
    dial.owner.dialFailed(dial, new PolyproxyError('BACKEND_UNREACHABLE', `backend unreachable (${failures})`, { retryable: true }));
    return;
  }
  dial.next++;
  const socket = openBackend(endpoint, dial.keepAliveMs) as DialSocket;
  socket[kDial] = dial;
  socket.on('connect', dialOnConnect);
  socket.on('error', dialOnError);
  dial.socket = socket;
  dial.endpoint = endpoint;
  dial.deadline = Date.now() + dial.timeoutMs;
  pendingDials.add(dial);
}

function release(socket: DialSocket): void {
  socket[kDial] = undefined;
  socket.removeListener('connect', dialOnConnect);
  socket.removeListener('error', dialOnError);
}

function dialOnConnect(this: DialSocket): void {
  const dial = this[kDial];
  if (dial === undefined) return;
  release(this);
  pendingDials.remove(dial);
  if (dial.confirmLater) dial.health?.connected(dial.endpoint as Endpoint);
  else dial.health?.succeeded(dial.endpoint as Endpoint);
  dial.owner.dialConnected(dial);
}

function dialOnError(this: DialSocket, err: Error): void {
  const dial = this[kDial];
  if (dial === undefined) return;
  release(this);
  this.destroy();
  pendingDials.remove(dial);
  if (isFdExhaustion(err)) {
    // No descriptor for any candidate either, and not the backend's fault: no breaker accounting.
    dial.socket = null;
    dial.endpoint = null;
    dial.owner.dialFailed(dial, fdExhaustedError(err));
    return;
  }
  attemptFailed(dial, err.message);
}

function attemptFailed(dial: Dial, why: string): void {
  const endpoint = dial.endpoint as Endpoint;
  (dial.failures ??= []).push(`${endpoint.label}: ${why}`);
  dial.health?.failed(endpoint, why);
  dialNext(dial);
}

// ---- connect timeouts: one coarse sweep over the attempts in progress ------

/** Sweep period: an attempt times out between timeoutMs and timeoutMs + this. */
const DIAL_TICK_MS = 100;

class PendingDials {
  head: Dial | null = null;
  timer: NodeJS.Timeout | null = null;

  add(dial: Dial): void {
    dial.pending = true;
    dial.prevPending = null;
    dial.nextPending = this.head;
    if (this.head !== null) this.head.prevPending = dial;
    this.head = dial;
    // Runs only while attempts are in progress; unref'd: a connecting socket keeps the process alive by itself.
    if (this.timer === null) this.timer = setInterval(sweepDials, DIAL_TICK_MS).unref();
  }

  remove(dial: Dial): void {
    if (!dial.pending) return;
    dial.pending = false;
    if (dial.prevPending !== null) dial.prevPending.nextPending = dial.nextPending;
    else this.head = dial.nextPending;
    if (dial.nextPending !== null) dial.nextPending.prevPending = dial.prevPending;
    dial.prevPending = dial.nextPending = null;
  }
}

const pendingDials = new PendingDials();

function sweepDials(): void {
  const now = Date.now();
  let dial = pendingDials.head;
  while (dial !== null) {
    const next = dial.nextPending;
    if (now >= dial.deadline) {
      pendingDials.remove(dial);
      const socket = dial.socket as DialSocket;
      release(socket);
      socket.destroy();
      dial.timeouts++;
      // May start the next candidate: it goes to the head, behind this walk.
      attemptFailed(dial, `connect timeout after ${dial.timeoutMs} ms`);
    }
    dial = next;
  }
  if (pendingDials.head === null && pendingDials.timer !== null) {
    clearInterval(pendingDials.timer);
    pendingDials.timer = null;
  }
}

// ---- the promise form ------------------------------------------------------

interface Settle {
  resolve(connected: Connected): void;
  reject(err: Error): void;
}

const PROMISE_OWNER: DialOwner = {
  dialConnected(dial) {
    (dial.context as Settle).resolve({ socket: dial.socket as net.Socket, endpoint: dial.endpoint as Endpoint });
  },
  dialFailed(dial, error) {
    (dial.context as Settle).reject(error);
  },
};

/**
 * Tries each candidate in order and returns the first that accepts.
 * Fails with BACKEND_UNREACHABLE naming every endpoint tried. Each result
 * feeds `health` (passive failure counting for the circuit breakers).
 */
export function connectFirst(candidates: readonly Endpoint[], timeoutMs: number, health?: EndpointHealth, options?: DialOptions, abort?: DialAbort): Promise<Connected> {
  if (abort === undefined) {
    return new Promise<Connected>((resolve, reject) => {
      const dial = new Dial(PROMISE_OWNER, candidates, timeoutMs, health, options);
      dial.context = { resolve, reject } satisfies Settle;
      dial.start();
    });
  }
  if (abort.reason !== null) return Promise.reject(abort.reason);
  return new Promise<Connected>((resolve, reject) => {
    const dial = new Dial(PROMISE_OWNER, candidates, timeoutMs, health, options);
    const settle: Settle = {
      resolve: (connected) => {
        abort.onAbort = null;
        resolve(connected);
      },
      reject: (err) => {
        abort.onAbort = null;
        reject(err);
      },
    };
    dial.context = settle;
    abort.onAbort = (error) => {
      dial.cancel();
      reject(error);
    };
    dial.start();
  });
}

/** Opens one connection (no breaker accounting); rejects on error or after `timeoutMs`, give or take the sweep's 100 ms. */
export function connectEndpoint(endpoint: Endpoint, timeoutMs: number): Promise<net.Socket> {
  return connectFirst([endpoint], timeoutMs).then(socketOf);
}

function socketOf(connected: Connected): net.Socket {
  return connected.socket;
}

/** Delivers a single message to an endpoint and closes (e.g. a PostgreSQL CancelRequest). */
export async function sendOneShot(endpoint: Endpoint, bytes: Buffer, timeoutMs: number): Promise<void> {
  const socket = await connectEndpoint(endpoint, timeoutMs);
  socket.on('error', noop);
  socket.resume();
  socket.end(bytes);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function noop(): void {}
