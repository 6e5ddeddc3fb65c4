/**
 * The request side of one http client connection: client bytes → request
 * heads (parsed in place), and each request's body forwarded to the backend
 * framed by Content-Length or the chunked framer (subarrays, never buffered
 * whole). Bytes a client pipelines past the current request wait in `buf`
 * with the client paused, until the response is done.
 *
 * Made once per client connection; `reset` readies it for the next request.
 * What happens around it (routing, deadlines, errors) is its owner's — the
 * session (session.ts).
 */
import type { Socket } from 'node:net';
import { PolyproxyError, toPolyproxyError } from '../../core/errors.ts';
import { borrowBytes, settleBorrowed } from '../../core/io/shared-read-buffer.ts';
import { writeOwned } from '../../core/io/stream-handle.ts';
import { ChunkedFramer } from './chunked.ts';
import type { HeadLimits, HttpHead } from './head-parser.ts';
import { parseRequestHead } from './head-parser.ts';
import { forwardingFields, requestHeadBytes } from './rewrite.ts';
import type { ForwardInfo } from './rewrite.ts';

// The client connection's states (the session's `state`).
/** Reading a request head (or idle between requests). */
export const READ_HEAD = 0;
/** A head is in: routing and getting a backend connection; nothing more is read. */
export const ROUTING = 1;
/** Forwarding the request body. */
export const REQ_BODY = 2;
/** The whole request reached the backend: waiting for the response. */
export const REQ_DONE = 3;
/** Handed to core's Relay after a 101. */
export const UPGRADED = 4;
export const FINISHED = 5;

const EMPTY = Buffer.alloc(0);

/** What the request side needs from its session. */
export interface RequestOwner {
  readonly client: Socket;
  readonly limits: HeadLimits;
  /** `http` or `https`, for X-Forwarded-Proto. */
  readonly proto: string;
  /** The client connection's state (the constants above). */
  state: number;
  /** The backend connection the current request holds, if any. */
  readonly backendSocket: Socket | null;
  /** The first bytes of a head are in, the rest is not: the request timeout runs. */
  headPending(): void;
  /** A complete head (in `request.req`): route it. */
  headReceived(head: HttpHead): void;
  /** Body bytes went to the backend: it is not silent, we are. */
  backendActivity(): void;
  /** The request is malformed or too large: answer the error and close. */
  requestFailed(err: PolyproxyError): void;
  /** While true, the connection's first bytes go to checkPreface first (h2c prior knowledge). */
  readonly prefaceCheck: boolean;
  /** True when it took the bytes (an HTTP/2 preface, whole or in part). */
  checkPreface(chunk: Buffer, transient: boolean): boolean;
}

export class RequestReader {
  readonly owner: RequestOwner;
  /** Client bytes read but not consumed (a partial head, or what was pipelined). */
  buf: Buffer = EMPTY;
  #scanned = 0;
  req: HttpHead | null = null;
  reqRemaining = 0;
  reqFramer: ChunkedFramer | null = null;
  /** The whole request (head and body) reached the backend. */
  reqDone = false;
  /** Set when `req.raw` is a view into the shared read buffer (copied before the request waits for anything). */
  #reqTransient = false;
  /** The request head as sent, to send again when core's retry rule allows it. */
  #sentHead: Buffer = EMPTY;
  /** Per connection: the client address and scheme, and the forwarding fields last built (for `#forwardingHost`). */
  #forwardInfo: ForwardInfo | null = null;
  #forwarding: Buffer | null = null;
  #forwardingHost: string | undefined = undefined;

  constructor(owner: RequestOwner) {
    this.owner = owner;
  }

  /** Ready for the next request on the connection (pipelined bytes in `buf` stay). */
  reset(): void {
    this.req = null;
    this.reqFramer = null;
    this.reqDone = false;
    this.#scanned = 0;
  }

  /**
   * `transient`: the chunk is a view into the shared read buffer, valid only
   * during this call — what must outlive it (a partial head, pipelined
   * bytes) is copied, body bytes are written through the borrowed spare.
   */
  onClientBytes(chunk: Buffer, transient: boolean): void {
    const owner = this.owner;
    switch (owner.state) {
      case READ_HEAD:
        if (owner.prefaceCheck && owner.checkPreface(chunk, transient)) return;
        if (this.buf.length === 0) {
          this.tryHead(chunk, transient);
        } else {
          this.buf = Buffer.concat([this.buf, chunk]);
          this.tryHead(this.buf, false);
        }
        return;
      case REQ_BODY:
        this.#feedBody(chunk, transient);
        return;
      case ROUTING:
      case REQ_DONE:
        // Pipelined: keep it for after the response, and stop reading. One read is
        // kept whatever its size (reads are at most 256 KiB); more than that must fit the limit.
        if (this.buf.length === 0) {
          this.buf = transient ? Buffer.from(chunk) : chunk;
        } else {
          this.buf = Buffer.concat([this.buf, chunk]);
          if (this.buf.length > owner.limits.maxHeadBytes * 2) {
            owner.requestFailed(new PolyproxyError('PROTOCOL', 'too many pipelined bytes', { source: 'client' }));
            return;
          }
        }
        owner.client.pause();
        return;
      default:
        return;
    }
  }

  /** Parses a request head from `buf` (this.buf itself, or a transient read while this.buf is empty). */
  tryHead(buf: Buffer, transient: boolean): void {
    if (buf.length === 0) return;
    let parsed: { value: HttpHead; consumed: number } | undefined;
    try {
      parsed = parseRequestHead(buf, this.owner.limits, this.#scanned);
    } catch (err) {
      this.owner.requestFailed(toPolyproxyError(err));
      return;
    }
    if (parsed === undefined) {
      this.buf = transient ? Buffer.from(buf) : buf;
      this.#scanned = buf.length;
      this.owner.headPending();
      return;
    }
    this.#scanned = 0;
    const head = parsed.value;
    const rest = parsed.consumed === buf.length ? EMPTY : buf.subarray(parsed.consumed);
    this.buf = transient && rest.length > 0 ? Buffer.from(rest) : rest;
    this.req = head;
    this.#reqTransient = transient;
    this.owner.headReceived(head);
  }

  /** The head is needed past the current read (the request waits for a route or a connection): off the shared read buffer. */
  keepHead(): void {
    if (!this.#reqTransient) return;
    const head = this.req as HttpHead;
    head.raw = Buffer.from(head.raw);
    this.#reqTransient = false;
  }

  /** A backend connection is attached: the rewritten head, and whatever body is already here, leave in one write (writev). */
  send(backend: Socket): void {
    const owner = this.owner;
    const head = this.req as HttpHead;
    let info = this.#forwardInfo;
    if (info === null) {
      info = { clientAddress: owner.client.remoteAddress ?? '', proto: owner.proto };
      this.#forwardInfo = info;
    }
    let forwarding = this.#forwarding;
    if (forwarding === null || this.#forwardingHost !== head.host) {
      forwarding = forwardingFields(head.host, info);
      this.#forwarding = forwarding;
      this.#forwardingHost = head.host;
    }
    this.#sentHead = requestHeadBytes(head, info, forwarding);
    if (head.framing === 'none') {
      // A head alone, ours to keep: through the backend's handle when nothing is queued (io/stream-handle.ts).
      writeOwned(backend, this.#sentHead);
      this.#requestComplete(this.buf);
      return;
    }
    backend.cork();
    backend.write(this.#sentHead);
    owner.state = REQ_BODY;
    this.reqRemaining = head.contentLength;
    this.reqFramer = head.framing === 'chunked' ? new ChunkedFramer('client') : null;
    const pending = this.buf;
    this.buf = EMPTY;
    if (pending.length > 0) this.#feedBody(pending, false);
    if (owner.state === REQ_BODY && owner.backendSocket !== null && owner.backendSocket.writableNeedDrain !== true) owner.client.resume();
    backend.uncork();
  }

  /** The same head again, on another connection (a retry core's rule allowed: body-less requests only). */
  resend(backend: Socket): void {
    backend.write(this.#sentHead);
  }

  #feedBody(chunk: Buffer, transient: boolean): void {
    const owner = this.owner;
    const backend = owner.backendSocket as Socket;
    let end: number;
    if (this.reqFramer !== null) {
      try {
        end = this.reqFramer.feed(chunk);
      } catch (err) {
        owner.requestFailed(toPolyproxyError(err));
        return;
      }
    } else if (chunk.length < this.reqRemaining) {
      end = -1;
      this.reqRemaining -= chunk.length;
    } else {
      end = this.reqRemaining;
      this.reqRemaining = 0;
    }
    const body = end < 0 || end === chunk.length ? chunk : chunk.subarray(0, end);
    let ok = true;
    if (body.length > 0) {
      owner.backendActivity();
      if (transient) {
        ok = backend.write(borrowBytes(body));
        settleBorrowed(backend);
      } else {
        ok = backend.write(body);
      }
    }
    if (end >= 0) {
      const rest = end === chunk.length ? EMPTY : chunk.subarray(end);
      this.#requestComplete(transient && rest.length > 0 ? Buffer.from(rest) : rest);
    } else if (!ok) {
      owner.client.pause();
    }
  }

  /** The whole request reached the backend; `rest` is what the client pipelined after it (the client is paused when there is some). */
  #requestComplete(rest: Buffer): void {
    this.reqDone = true;
    this.owner.state = REQ_DONE;
    this.buf = rest;
    if (rest.length > 0) this.owner.client.pause();
  }
}
