/**
 * The response side of one http client connection: backend bytes →
 * response head (parsed in place; interim 1xx passed to HTTP/1.1 clients)
 * → rewritten head and the body streamed to the client, framed by
 * Content-Length, chunked or the close, with backpressure (a false write
 * pauses the backend until the client drains). A small whole response
 * leaves in one write.
 *
 * Made once per client connection; `reset` readies it for the next
 * request, `attached` for a new backend connection. The owner (the
 * session) hears when the response is complete, fails, or switches
 * protocols.
 */
import type { Socket } from 'node:net';
import { PolyproxyError, toPolyproxyError } from '../../core/errors.ts';
import { borrowBytes, settleBorrowed } from '../../core/io/shared-read-buffer.ts';
import { writeOwned } from '../../core/io/stream-handle.ts';
import { ChunkedFramer } from './chunked.ts';
import type { HeadLimits, HttpHead } from './head-parser.ts';
import { parseResponseHead } from './head-parser.ts';
import { responseHeadBytes } from './rewrite.ts';

// Backend side states.
export const RESP_HEAD = 0;
export const RESP_BODY = 1;

const EMPTY = Buffer.alloc(0);

/** What the response side needs from its session. */
export interface ResponseOwner {
  readonly client: Socket;
  readonly limits: HeadLimits;
  /** The request this response answers. */
  readonly currentRequest: HttpHead;
  /** The client sent its FIN: the connection closes after this response. */
  readonly clientEnded: boolean;
  /** The listener drains: the connection closes after this response (`Connection: close` tells the client). */
  readonly draining: boolean;
  /** Backend bytes arrived: it is not silent. */
  backendActivity(): void;
  /** The client cannot take more now: stop reading the backend until it drains. */
  pauseBackend(): void;
  /** The response's framing says it is complete; `extra` is anything the backend sent past it. */
  responseComplete(extra: Buffer): void;
  /** The backend broke the protocol. */
  backendFailed(err: PolyproxyError): void;
  /** A 101 to an Upgrade request: `head` to forward, `rest` the backend's first bytes past it. */
  switchProtocols(head: HttpHead, rest: Buffer): void;
  /** Telemetry header lines for the response head ('' when off). */
  telemetry(): string;
}

export class ResponseWriter {
  readonly owner: ResponseOwner;
  bState = RESP_HEAD;
  /** Backend bytes of a response head not complete yet. */
  bBuf: Buffer = EMPTY;
  #bScanned = 0;
  res: HttpHead | null = null;
  resRemaining = 0;
  resFramer: ChunkedFramer | null = null;
  /** Some of the response went to the client (an error page can no longer replace it). */
  responseStarted = false;
  /** The backend sent some byte on the connection attached now (core's retry rule asks). */
  gotBackendBytes = false;
  /** The client connection closes after this response. */
  closeAfter = false;

  constructor(owner: ResponseOwner) {
    this.owner = owner;
  }

  /** Ready for the next request's response. */
  reset(): void {
    this.res = null;
    this.resFramer = null;
    this.responseStarted = false;
    this.bState = RESP_HEAD;
  }

  /** A (new) backend connection is attached for the current request. */
  attached(): void {
    this.bState = RESP_HEAD;
    this.bBuf = EMPTY;
    this.#bScanned = 0;
    this.gotBackendBytes = false;
  }

  /** `transient`: the chunk is a view into the shared read buffer, valid only during this call. */
  onBackendBytes(chunk: Buffer, transient: boolean): void {
    this.gotBackendBytes = true;
    this.owner.backendActivity();
    if (this.bState === RESP_BODY) {
      this.#feedResponse(chunk, transient);
      return;
    }
    if (this.bBuf.length === 0) {
      this.#tryResponseHead(chunk, transient);
    } else {
      this.bBuf = Buffer.concat([this.bBuf, chunk]);
      this.#tryResponseHead(this.bBuf, false);
    }
  }

  #tryResponseHead(buf: Buffer, transient: boolean): void {
    const owner = this.owner;
    const req = owner.currentRequest;
    while (buf.length > 0) {
      let parsed: { value: HttpHead; consumed: number } | undefined;
      try {
        parsed = parseResponseHead(buf, req.method, owner.limits, this.#bScanned);
      } catch (err) {
        owner.backendFailed(toPolyproxyError(err));
        return;
      }
      if (parsed === undefined) {
        this.bBuf = transient ? Buffer.from(buf) : buf;
        this.#bScanned = buf.length;
        return;
      }
      this.#bScanned = 0;
      // `head.raw` may be a view into the shared read buffer: used during this call only.
      const head = parsed.value;
      const rest = parsed.consumed === buf.length ? EMPTY : buf.subarray(parsed.consumed);
      buf = rest;
      this.bBuf = EMPTY;
      if (head.status === 101) {
        if (req.upgrade === undefined) {
          owner.backendFailed(new PolyproxyError('BACKEND_UNREACHABLE', 'backend switched protocols without an Upgrade request', { source: 'backend' }));
          return;
        }
        owner.switchProtocols(head, transient && rest.length > 0 ? Buffer.from(rest) : rest);
        return;
      }
      if (head.status < 200) {
        // Interim responses (100 Continue, 103 Early Hints) pass through to HTTP/1.1 clients (RFC 9110 §15.2).
        if (req.minor === 1) owner.client.write(responseHeadBytes(head, 1, false, ''));
        continue;
      }
      this.res = head;
      this.closeAfter = !req.keepAlive || head.framing === 'close' || owner.clientEnded || owner.draining;
      const client = owner.client;
      const extra = owner.telemetry();
      if (head.framing === 'length' && rest.length === head.contentLength) {
        // The whole response is here (the common small response): one buffer, one write.
        const out = responseHeadBytes(head, req.minor, this.closeAfter, extra, rest.length);
        rest.copy(out, out.length - rest.length);
        this.responseStarted = true;
        this.bState = RESP_BODY;
        writeOwned(client, out);
        owner.responseComplete(EMPTY);
        return;
      }
      const headBytes = responseHeadBytes(head, req.minor, this.closeAfter, extra);
      if (head.framing === 'none' || rest.length === 0) {
        this.responseStarted = true;
        this.bState = RESP_BODY;
        this.resRemaining = head.contentLength;
        this.resFramer = head.framing === 'chunked' ? new ChunkedFramer('backend') : null;
        writeOwned(client, headBytes);
        if (head.framing === 'none') owner.responseComplete(rest);
        return;
      }
      // Head and the first body bytes in one writev. Corked, a borrowed buffer would stay
      // queued past this call, so these bytes get their own copy.
      client.cork();
      client.write(headBytes);
      this.responseStarted = true;
      this.bState = RESP_BODY;
      this.resRemaining = head.contentLength;
      this.resFramer = head.framing === 'chunked' ? new ChunkedFramer('backend') : null;
      this.#feedResponse(transient ? Buffer.from(rest) : rest, false);
      client.uncork();
      return;
    }
  }

  #feedResponse(chunk: Buffer, transient: boolean): void {
    const owner = this.owner;
    const head = this.res as HttpHead;
    let end: number;
    if (head.framing === 'close') {
      end = -1;
    } else if (this.resFramer !== null) {
      try {
        end = this.resFramer.feed(chunk);
      } catch (err) {
        owner.backendFailed(toPolyproxyError(err));
        return;
      }
    } else if (chunk.length < this.resRemaining) {
      end = -1;
      this.resRemaining -= chunk.length;
    } else {
      end = this.resRemaining;
      this.resRemaining = 0;
    }
    const body = end < 0 || end === chunk.length ? chunk : chunk.subarray(0, end);
    let ok = true;
    if (body.length > 0) {
      const client = owner.client;
      if (transient) {
        ok = client.write(borrowBytes(body));
        settleBorrowed(client);
      } else {
        ok = client.write(body);
      }
    }
    // Bytes past the response only matter by being there: the connection is not reused.
    if (end >= 0) owner.responseComplete(end === chunk.length ? EMPTY : chunk.subarray(end));
    else if (!ok) owner.pauseBackend();
  }
}
