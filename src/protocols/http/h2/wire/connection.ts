/**
 * The server side of one HTTP/2 connection (RFC 9113), the proxy's own:
 * frames read straight from the socket's chunks (no copy unless a frame
 * spans two reads), HPACK (hpack.ts), stream states (§5.1), flow control
 * both ways (§6.9), SETTINGS, PING, GOAWAY and RST_STREAM. Why not
 * node:http2: it costs a Duplex, a headers object and nghttp2's callbacks
 * per stream, and its writes go out one stream at a time; here everything
 * a connection has to send within one turn of the event loop leaves in one
 * write (frames gathered in a slab, flushed by one setImmediate for all
 * connections), which is what a proxy answering many small streams per
 * connection spends most of its time on (bench/RESULTS.md, http2).
 *
 * Defences (each a GOAWAY, reported to the handler to be counted):
 * - PING and SETTINGS floods: their ACKs are control frames we owe; more
 *   than MAX_OWED_CONTROL queued while the client does not read (or within
 *   one read) is a flood (ENHANCE_YOUR_CALM), as nghttp2's outbound ACK
 *   limit.
 * - CONTINUATION floods (CVE-2024-27316 and kin): a header block may span
 *   at most maxBlockFrames frames and maxBlockBytes bytes.
 * - HPACK: a table size update past what we announced, or any decoding
 *   error, is COMPRESSION_ERROR (§4.3); a header list past
 *   maxHeaderListSize is decoded (the table stays in step) but not kept,
 *   and the stream is answered 431 (§10.5.1).
 * - Streams past SETTINGS_MAX_CONCURRENT_STREAMS are refused
 *   (RST_STREAM REFUSED_STREAM, §5.1.2); rapid reset is the handler's
 *   (front.ts), which hears every client reset.
 */
import type { Socket } from 'node:net';
import { adoptSharedReadBuffer, setReadCallback } from '../../../../core/io/socket-onread.ts';
import { writeOwned } from '../../../../core/io/stream-handle.ts';
import { HpackDecoder, HpackEncoder, HpackError, maxEncodedLength } from './hpack.ts';
import { MAYBE_H2, NOT_H2, PREFACE, prefaceState } from '../preface.ts';
import { checkRequest, checkTrailers } from './request-fields.ts';
import type { RequestHead } from './request-fields.ts';
import { H2Stream } from './stream.ts';
import {
  COMPRESSION_ERROR,
  CONTINUATION,
  DATA,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ENHANCE_YOUR_CALM,
  FLAG_ACK,
  FLAG_END_HEADERS,
  FLAG_END_STREAM,
  FLAG_PADDED,
  FLAG_PRIORITY,
  FLOW_CONTROL_ERROR,
  FRAME_HEADER_LENGTH,
  FRAME_SIZE_ERROR,
  GOAWAY,
  HEADERS,
  MAX_WINDOW,
  NO_ERROR,
  PING,
  PRIORITY,
  PROTOCOL_ERROR,
  PUSH_PROMISE,
  REFUSED_STREAM,
  RST_STREAM,
  SETTINGS,
  SETTINGS_ENABLE_CONNECT_PROTOCOL,
  SETTINGS_ENABLE_PUSH,
  SETTINGS_HEADER_TABLE_SIZE,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SETTINGS_MAX_CONCURRENT_STREAMS,
  SETTINGS_MAX_FRAME_SIZE,
  SETTINGS_MAX_HEADER_LIST_SIZE,
  STREAM_CLOSED,
  WINDOW_UPDATE,
  writeFrameHeader,
} from './frames.ts';

export interface H2ConnectionSettings {
  readonly maxConcurrentStreams: number;
  /** Each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE). */
  readonly initialWindowSize: number;
  /** The connection's receive window (a WINDOW_UPDATE on stream 0 after SETTINGS). */
  readonly connectionWindowSize: number;
  readonly maxHeaderListSize: number;
  /** Most fields in one request (pseudo-header fields not counted). */
  readonly maxHeaders: number;
}

/** What the connection tells its owner (front.ts). */
export interface H2ConnectionHandler {
  /** A new request stream, checked (request-fields.ts); `fields` the raw list. */
  onStream(stream: H2Stream, head: RequestHead, fields: string[]): void;
  /** A stream whose header list was past the limits; it is answered 431 here. */
  onOversized(stream: H2Stream): void;
  /** The client broke the protocol and the connection is closing with GOAWAY `code`. */
  onConnectionError(flood: boolean, code: number, message: string): void;
  /** The socket closed; every stream is closed. */
  onClose(): void;
}

/** Control frames (SETTINGS/PING ACKs) we may owe at once before the client counts as flooding us. */
const MAX_OWED_CONTROL = 1000;
/**
 * Slabs for small frames (headers, control frames, small DATA copied in):
 * the first of a turn comes from Node's shared Buffer pool (allocUnsafe
 * below 4 KB), a busy connection's later ones are 32 KB; an idle
 * connection keeps none.
 */
const SMALL_SLAB = 4095;
const SLAB_SIZE = 32 * 1024;
const NO_SLAB = Buffer.alloc(0);
/** DATA payloads at most this long are copied into the slab (fewer pieces per write). */
const COPY_DATA_BELOW = 2048;
/** The HPACK table we let the client's encoder use (SETTINGS_HEADER_TABLE_SIZE; its default, §6.5.2). */
const HEADER_TABLE_SIZE = 4096;
/** After our FIN, how long a client may keep its side open before the socket is destroyed. */
const LINGER_MS = 1000;
/** Our SETTINGS_MAX_FRAME_SIZE: the default, not announced. */
const MAX_FRAME_SIZE = DEFAULT_MAX_FRAME_SIZE;

/** Connections with frames to write this turn: one setImmediate flushes them all. */
let dirty: H2ServerConnection[] = [];
let flushScheduled = false;
function flushAll(): void {
  flushScheduled = false;
  const list = dirty;
  dirty = [];
  for (let i = 0; i < list.length; i++) (list[i] as H2ServerConnection).flush();
}

export class H2ServerConnection {
  readonly socket: Socket;
  readonly settings: H2ConnectionSettings;
  handler: H2ConnectionHandler | null = null;
  readonly streams = new Map<number, H2Stream>();
  /** The highest client stream id seen (GOAWAY's last-stream-id). */
  lastStreamId = 0;
  /** The connection is over (GOAWAY for an error, or the socket closed). */
  dead = false;
  /** GOAWAY NO_ERROR sent: no new streams; the connection closes after the last. */
  goingAway = false;
  /** The last-stream-id of the first GOAWAY we sent (-1: none): a later one may not name more (§6.8). */
  #goawayLastId = -1;

  readonly #decoder = new HpackDecoder(HEADER_TABLE_SIZE);
  readonly #encoder = new HpackEncoder();
  readonly #maxBlockBytes: number;
  readonly #maxBlockFrames: number;
  /**
   * An incomplete frame (or preface) from earlier reads, in pieces: joined
   * once, when the frame is whole (a frame trickling in byte by byte costs
   * one copy, not one per read).
   */
  #partial: Buffer[] | null = null;
  #partialBytes = 0;
  #prefaceSeen = false;
  /** The chunk being read is a view into the shared read buffer. */
  #transient = false;
  #settingsSeen = false;
  /** A header block waiting for CONTINUATION frames. */
  #blockStream = 0;
  #blockFlags = 0;
  #blockChunks: Buffer[] | null = null;
  #blockBytes = 0;

  /** Peer's settings. */
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = DEFAULT_MAX_FRAME_SIZE;
  /** Connection-level flow control: what we may send, and what the client may still send us. */
  #sendWindow = DEFAULT_WINDOW;
  #recvWindow: number;
  /** Streams with DATA waiting for window, in order. */
  readonly #blocked = new Set<H2Stream>();
  /** Streams whose write() returned false. */
  readonly #drainWaiters = new Set<H2Stream>();

  /** Output of this turn: sealed pieces, and the slab's unsealed region [#slabStart, #slabUsed). */
  #out: Buffer[] = [];
  #slab: Buffer = NO_SLAB;
  #slabStart = 0;
  #slabUsed = 0;
  #queued = false;
  /** The socket's buffer is full: write() on streams asks to wait, owed control frames count across flushes. */
  congested = false;
  #owedControl = 0;

  constructor(socket: Socket, settings: H2ConnectionSettings) {
    this.socket = socket;
    this.settings = settings;
    this.#recvWindow = DEFAULT_WINDOW;
    this.#maxBlockBytes = Math.max(64 * 1024, settings.maxHeaderListSize * 2);
    this.#maxBlockFrames = 8 + Math.ceil(this.#maxBlockBytes / MAX_FRAME_SIZE);
  }

  /** Sends our SETTINGS (and the connection window's WINDOW_UPDATE) and starts reading; `leftover`: bytes already read. */
  start(handler: H2ConnectionHandler, leftover: Buffer | null): void {
    this.handler = handler;
    const s = this.settings;
    const entries: [number, number][] = [
      [SETTINGS_MAX_CONCURRENT_STREAMS, s.maxConcurrentStreams],
      [SETTINGS_INITIAL_WINDOW_SIZE, s.initialWindowSize],
      [SETTINGS_MAX_HEADER_LIST_SIZE, s.maxHeaderListSize],
      [SETTINGS_ENABLE_CONNECT_PROTOCOL, 1],
    ];
    const buf = this.#alloc(FRAME_HEADER_LENGTH + entries.length * 6);
    let at = this.#slabUsed;
    writeFrameHeader(buf, at, entries.length * 6, SETTINGS, 0, 0);
    at += FRAME_HEADER_LENGTH;
    for (const [id, value] of entries) {
      buf.writeUInt16BE(id, at);
      buf.writeUInt32BE(value, at + 2);
      at += 6;
    }
    this.#slabUsed = at;
    if (s.connectionWindowSize > DEFAULT_WINDOW) {
      this.#windowUpdate(0, s.connectionWindowSize - DEFAULT_WINDOW);
      this.#recvWindow = s.connectionWindowSize;
    }
    this.#dirty();
    const socket = this.socket as WireSocket;
    socket[kWire] = this;
    // Plain sockets read through core's shared buffer (no allocation per read): what outlives a read is copied.
    if (!setReadCallback(socket, wireOnRead) && !adoptSharedReadBuffer(socket, wireOnRead)) socket.on('data', wireOnData);
    socket.on('drain', wireOnDrain);
    socket.on('close', wireOnClose);
    socket.on('error', noop);
    if (leftover !== null && leftover.length > 0) this.read(leftover, false);
    if (socket.isPaused()) socket.resume();
  }

  // ---- reading -------------------------------------------------------------

  /** Bytes from the socket; `transient`: a view into the shared read buffer, valid during this call only. */
  read(chunk: Buffer, transient: boolean): void {
    if (this.dead) return;
    let buf = chunk;
    const partial = this.#partial;
    if (partial !== null) {
      partial.push(transient ? Buffer.from(chunk) : chunk);
      this.#partialBytes += chunk.length;
      if (this.#partialBytes < this.#partialNeed(partial)) return;
      buf = Buffer.concat(partial, this.#partialBytes);
      this.#partial = null;
      this.#partialBytes = 0;
      transient = false;
    }
    this.#transient = transient;
    let at = 0;
    if (!this.#prefaceSeen) {
      // The client connection preface (§3.4), checked as it comes (preface.ts, as the h2c detection on the HTTP/1.1 port).
      const state = prefaceState(buf);
      if (state === NOT_H2) {
        this.#connectionError(PROTOCOL_ERROR, false, 'the client did not send the HTTP/2 connection preface');
        return;
      }
      if (state === MAYBE_H2) {
        this.#keep(buf, 0, transient);
        return;
      }
      this.#prefaceSeen = true;
      at = PREFACE.length;
    }
    const total = buf.length;
    while (total - at >= FRAME_HEADER_LENGTH) {
      const length = (buf[at] as number) * 65536 + (buf[at + 1] as number) * 256 + (buf[at + 2] as number);
      if (length > MAX_FRAME_SIZE) {
        this.#connectionError(FRAME_SIZE_ERROR, false, `a frame of ${length} bytes, past SETTINGS_MAX_FRAME_SIZE`);
        return;
      }
      const start = at + FRAME_HEADER_LENGTH;
      const end = start + length;
      if (end > total) break;
      const type = buf[at + 3] as number;
      const flags = buf[at + 4] as number;
      const streamId = buf.readUInt32BE(at + 5) & 0x7fffffff;
      at = end;
      this.#frame(buf, type, flags, streamId, start, end);
      if (this.dead) return;
    }
    if (at < total) this.#keep(buf, at, transient);
  }

  /** Keeps buf[at..] for the next read. */
  #keep(buf: Buffer, at: number, transient: boolean): void {
    const rest = at === 0 ? buf : buf.subarray(at);
    this.#partial = [transient ? Buffer.from(rest) : rest];
    this.#partialBytes = rest.length;
  }

  /** Bytes the kept pieces must reach before they are parsed: the preface's (checked as it comes), a frame header, then the whole frame. */
  #partialNeed(pieces: readonly Buffer[]): number {
    if (!this.#prefaceSeen) return 0;
    if (this.#partialBytes < FRAME_HEADER_LENGTH) return FRAME_HEADER_LENGTH;
    const length = byteAt(pieces, 0) * 65536 + byteAt(pieces, 1) * 256 + byteAt(pieces, 2);
    // Past our frame size: parsed at once, and refused.
    return length > MAX_FRAME_SIZE ? FRAME_HEADER_LENGTH : FRAME_HEADER_LENGTH + length;
  }

  #frame(buf: Buffer, type: number, flags: number, streamId: number, start: number, end: number): void {
    // Within a header block only its CONTINUATION frames may come (§6.10).
    if (this.#blockChunks !== null && type !== CONTINUATION) {
      this.#connectionError(PROTOCOL_ERROR, false, 'a frame inside a header block');
      return;
    }
    if (!this.#settingsSeen) {
      // The preface's SETTINGS comes first (§3.4).
      if (type !== SETTINGS || (flags & FLAG_ACK) !== 0) {
        this.#connectionError(PROTOCOL_ERROR, false, 'the connection preface did not start with SETTINGS');
        return;
      }
      this.#settingsSeen = true;
    }
    switch (type) {
      case DATA:
        this.#onData(buf, flags, streamId, start, end);
        return;
      case HEADERS:
        this.#onHeaders(buf, flags, streamId, start, end);
        return;
      case PRIORITY:
        if (streamId === 0) this.#connectionError(PROTOCOL_ERROR, false, 'PRIORITY on stream 0');
        else if (end - start !== 5) this.#streamError(streamId, FRAME_SIZE_ERROR);
        return;
      case RST_STREAM:
        this.#onRstStream(buf, streamId, start, end);
        return;
      case SETTINGS:
        this.#onSettings(buf, flags, streamId, start, end);
        return;
      case PUSH_PROMISE:
        this.#connectionError(PROTOCOL_ERROR, false, 'PUSH_PROMISE from a client');
        return;
      case PING:
        if (streamId !== 0) this.#connectionError(PROTOCOL_ERROR, false, 'PING on a stream');
        else if (end - start !== 8) this.#connectionError(FRAME_SIZE_ERROR, false, 'PING not 8 bytes');
        else if ((flags & FLAG_ACK) === 0) this.#control(PING, FLAG_ACK, buf.subarray(start, end));
        return;
      case GOAWAY:
        if (streamId !== 0) this.#connectionError(PROTOCOL_ERROR, false, 'GOAWAY on a stream');
        else if (end - start < 8) this.#connectionError(FRAME_SIZE_ERROR, false, 'GOAWAY shorter than 8 bytes');
        else this.#peerGoaway();
        return;
      case WINDOW_UPDATE:
        this.#onWindowUpdate(buf, streamId, start, end);
        return;
      case CONTINUATION:
        this.#onContinuation(buf, flags, streamId, start, end);
        return;
      default:
      // Unknown frame types are ignored (§5.5).
    }
  }

  #onData(buf: Buffer, flags: number, streamId: number, start: number, end: number): void {
    if (streamId === 0) {
      this.#connectionError(PROTOCOL_ERROR, false, 'DATA on stream 0');
      return;
    }
    const flowLength = end - start;
    // The whole payload, padding included, counts against both windows (§6.9.1).
    if (flowLength > this.#recvWindow) {
      this.#connectionError(FLOW_CONTROL_ERROR, false, 'DATA past the connection window');
      return;
    }
    this.#recvWindow -= flowLength;
    // The connection's window is given back as DATA arrives: each stream's window bounds what a stream may hold unread.
    const full = this.settings.connectionWindowSize;
    if (this.#recvWindow <= full >>> 1) {
      this.#windowUpdate(0, full - this.#recvWindow);
      this.#recvWindow = full;
    }
    let s = start;
    let e = end;
    if ((flags & FLAG_PADDED) !== 0) {
      e = this.#unpad(buf, start, end, 'DATA');
      if (e < 0) return;
      s++;
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (streamId > this.lastStreamId) this.#connectionError(PROTOCOL_ERROR, false, 'DATA on an idle stream');
      // A stream closed (or reset by us) moments ago: its frames in flight are dropped.
      return;
    }
    if (stream.remoteEnded) {
      this.#resetStream(stream, STREAM_CLOSED);
      return;
    }
    if (flowLength > stream.recvWindow) {
      this.#resetStream(stream, FLOW_CONTROL_ERROR);
      return;
    }
    stream.recvWindow -= flowLength;
    if (e - s < flowLength) this.consumed(stream, flowLength - (e - s));
    const length = e - s;
    stream.received += length;
    if (stream.contentLength >= 0 && (stream.received > stream.contentLength || ((flags & FLAG_END_STREAM) !== 0 && stream.received !== stream.contentLength))) {
      // The body disagrees with its content-length: malformed (§8.1.1).
      this.#resetStream(stream, PROTOCOL_ERROR);
      return;
    }
    if (length > 0) stream.pushData(this.#transient ? Buffer.from(buf.subarray(s, e)) : buf.subarray(s, e));
    if ((flags & FLAG_END_STREAM) !== 0 && !stream.closed) stream.pushEnd();
  }

  /** A PADDED frame (§6.1, §6.2): the payload's end without the padding, or -1 after a connection error. The pad length octet is at `start`. */
  #unpad(buf: Buffer, start: number, end: number, type: string): number {
    if (end - start < 1) {
      this.#connectionError(FRAME_SIZE_ERROR, false, `padded ${type} without its pad length`);
      return -1;
    }
    const pad = buf[start] as number;
    if (pad > end - start - 1) {
      this.#connectionError(PROTOCOL_ERROR, false, `${type} padding past the frame`);
      return -1;
    }
    return end - pad;
  }

  #onHeaders(buf: Buffer, flags: number, streamId: number, start: number, end: number): void {
    if (streamId === 0) {
      this.#connectionError(PROTOCOL_ERROR, false, 'HEADERS on stream 0');
      return;
    }
    let s = start;
    let e = end;
    if ((flags & FLAG_PADDED) !== 0) {
      e = this.#unpad(buf, start, end, 'HEADERS');
      if (e < 0) return;
      s++;
    }
    if ((flags & FLAG_PRIORITY) !== 0) {
      if (e - s < 5) {
        this.#connectionError(FRAME_SIZE_ERROR, false, 'HEADERS priority fields cut short');
        return;
      }
      s += 5; // priority signals are deprecated (§5.3.2) and ignored
    }
    if ((flags & FLAG_END_HEADERS) !== 0) {
      this.#headerBlock(streamId, flags, buf, s, e);
      return;
    }
    this.#blockStream = streamId;
    this.#blockFlags = flags;
    this.#blockChunks = [this.#transient ? Buffer.from(buf.subarray(s, e)) : buf.subarray(s, e)];
    this.#blockBytes = e - s;
  }

  #onContinuation(buf: Buffer, flags: number, streamId: number, start: number, end: number): void {
    const chunks = this.#blockChunks;
    if (chunks === null || streamId !== this.#blockStream) {
      this.#connectionError(PROTOCOL_ERROR, false, 'CONTINUATION without a header block');
      return;
    }
    chunks.push(this.#transient ? Buffer.from(buf.subarray(start, end)) : buf.subarray(start, end));
    this.#blockBytes += end - start;
    if (chunks.length > this.#maxBlockFrames || this.#blockBytes > this.#maxBlockBytes) {
      this.#connectionError(ENHANCE_YOUR_CALM, true, `a header block of more than ${this.#maxBlockFrames} frames or ${this.#maxBlockBytes} bytes`);
      return;
    }
    if ((flags & FLAG_END_HEADERS) === 0) return;
    this.#blockChunks = null;
    const block = Buffer.concat(chunks, this.#blockBytes);
    this.#headerBlock(streamId, this.#blockFlags, block, 0, block.length);
  }

  /** A whole header block: a new request, or a request's trailers. */
  #headerBlock(streamId: number, flags: number, buf: Buffer, start: number, end: number): void {
    const fields: string[] = [];
    let size: number;
    try {
      size = this.#decoder.decode(buf, start, end, fields, this.settings.maxHeaderListSize);
    } catch (err) {
      if (err instanceof HpackError) {
        this.#connectionError(COMPRESSION_ERROR, false, `HPACK: ${err.message}`);
        return;
      }
      throw err;
    }
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    const existing = this.streams.get(streamId);
    if (existing !== undefined) {
      // Trailers: they end the stream (§8.1); a second HEADERS after the end, or without END_STREAM, is an error.
      if (existing.remoteEnded) this.#resetStream(existing, STREAM_CLOSED);
      else if (!endStream || size > this.settings.maxHeaderListSize || !checkTrailers(fields)) this.#resetStream(existing, PROTOCOL_ERROR);
      else if (existing.contentLength >= 0 && existing.received !== existing.contentLength) this.#resetStream(existing, PROTOCOL_ERROR);
      else existing.pushEnd(fields);
      return;
    }
    if ((streamId & 1) === 0) {
      this.#connectionError(PROTOCOL_ERROR, false, 'a client stream with an even id');
      return;
    }
    if (streamId <= this.lastStreamId) return; // a stream already closed: frames in flight are dropped
    this.lastStreamId = streamId;
    if (this.goingAway || this.dead) {
      this.#rst(streamId, REFUSED_STREAM);
      return;
    }
    if (this.streams.size >= this.settings.maxConcurrentStreams) {
      this.#rst(streamId, REFUSED_STREAM);
      return;
    }
    if (size > this.settings.maxHeaderListSize || fields.length > (this.settings.maxHeaders + 6) * 2) {
      const stream = this.#open(streamId, endStream, -1);
      this.handler?.onOversized(stream);
      return;
    }
    const head = checkRequest(fields, true);
    if (head === null) {
      this.#rst(streamId, PROTOCOL_ERROR);
      return;
    }
    const stream = this.#open(streamId, endStream, head.contentLength);
    if (endStream && head.contentLength > 0) {
      this.#resetStream(stream, PROTOCOL_ERROR);
      return;
    }
    this.handler?.onStream(stream, head, fields);
  }

  #open(streamId: number, endStream: boolean, contentLength: number): H2Stream {
    const stream = new H2Stream(this, streamId, endStream, contentLength, this.#peerInitialWindow);
    stream.recvWindow = this.settings.initialWindowSize;
    this.streams.set(streamId, stream);
    return stream;
  }

  #onRstStream(buf: Buffer, streamId: number, start: number, end: number): void {
    if (end - start !== 4) {
      this.#connectionError(FRAME_SIZE_ERROR, false, 'RST_STREAM not 4 bytes');
      return;
    }
    if (streamId === 0 || streamId > this.lastStreamId) {
      this.#connectionError(PROTOCOL_ERROR, false, 'RST_STREAM on stream 0 or an idle stream');
      return;
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined) return;
    this.#closeStream(stream, buf.readUInt32BE(start), true);
  }

  #onSettings(buf: Buffer, flags: number, streamId: number, start: number, end: number): void {
    if (streamId !== 0) {
      this.#connectionError(PROTOCOL_ERROR, false, 'SETTINGS on a stream');
      return;
    }
    if ((flags & FLAG_ACK) !== 0) {
      if (end !== start) this.#connectionError(FRAME_SIZE_ERROR, false, 'SETTINGS ACK with a payload');
      return;
    }
    if ((end - start) % 6 !== 0) {
      this.#connectionError(FRAME_SIZE_ERROR, false, 'SETTINGS not a multiple of 6 bytes');
      return;
    }
    let grew = false;
    for (let at = start; at < end; at += 6) {
      const id = buf.readUInt16BE(at);
      const value = buf.readUInt32BE(at + 2);
      switch (id) {
        case SETTINGS_HEADER_TABLE_SIZE:
          // Our encoder never inserts into the table (hpack.ts): any size suits it.
          break;
        case SETTINGS_ENABLE_PUSH:
        case SETTINGS_ENABLE_CONNECT_PROTOCOL:
          if (value > 1) {
            this.#connectionError(PROTOCOL_ERROR, false, 'a boolean setting past 1');
            return;
          }
          break;
        case SETTINGS_INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW) {
            this.#connectionError(FLOW_CONTROL_ERROR, false, 'SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1');
            return;
          }
          // Every stream's send window moves by the difference (§6.9.2).
          const delta = value - this.#peerInitialWindow;
          this.#peerInitialWindow = value;
          if (delta !== 0) {
            for (const stream of this.streams.values()) {
              stream.sendWindow += delta;
              if (stream.sendWindow > MAX_WINDOW) {
                this.#connectionError(FLOW_CONTROL_ERROR, false, 'a stream window past 2^31-1');
                return;
              }
            }
            if (delta > 0) grew = true;
          }
          break;
        }
        case SETTINGS_MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME_SIZE || value > 16777215) {
            this.#connectionError(PROTOCOL_ERROR, false, 'SETTINGS_MAX_FRAME_SIZE out of range');
            return;
          }
          this.#peerMaxFrame = value;
          break;
        default:
        // SETTINGS_MAX_CONCURRENT_STREAMS (streams we would push) and SETTINGS_MAX_HEADER_LIST_SIZE (advisory), unknown ones: ignored (§6.5.2).
      }
    }
    // The ACK goes before any DATA the new values allow: the client holds us to its old
    // settings until it has the ACK (§6.5.3), so DATA framed first could overflow its window.
    this.#control(SETTINGS, FLAG_ACK, null);
    if (grew) this.#flushBlocked();
  }

  #onWindowUpdate(buf: Buffer, streamId: number, start: number, end: number): void {
    if (end - start !== 4) {
      this.#connectionError(FRAME_SIZE_ERROR, false, 'WINDOW_UPDATE not 4 bytes');
      return;
    }
    const increment = buf.readUInt32BE(start) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) {
        this.#connectionError(PROTOCOL_ERROR, false, 'WINDOW_UPDATE of 0 on the connection');
        return;
      }
      this.#sendWindow += increment;
      if (this.#sendWindow > MAX_WINDOW) {
        this.#connectionError(FLOW_CONTROL_ERROR, false, 'the connection window past 2^31-1');
        return;
      }
      this.#flushBlocked();
      return;
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (streamId > this.lastStreamId) this.#connectionError(PROTOCOL_ERROR, false, 'WINDOW_UPDATE on an idle stream');
      return;
    }
    if (increment === 0) {
      this.#resetStream(stream, PROTOCOL_ERROR);
      return;
    }
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) {
      this.#resetStream(stream, FLOW_CONTROL_ERROR);
      return;
    }
    if (stream.outQueue !== null || stream.pendingEnd !== 0) this.flushStream(stream);
  }

  #peerGoaway(): void {
    // The client opens no more streams; the ones in flight finish.
    this.goingAway = true;
    if (this.streams.size === 0) this.#end();
  }

  // ---- writing ---------------------------------------------------------------

  /** Room for `n` bytes at #slabUsed. */
  #alloc(n: number): Buffer {
    if (this.#slabUsed + n > this.#slab.length) {
      this.#seal();
      const size = this.#slab === NO_SLAB ? SMALL_SLAB : SLAB_SIZE;
      this.#slab = Buffer.allocUnsafe(n > size ? n : size);
      this.#slabStart = 0;
      this.#slabUsed = 0;
    }
    return this.#slab;
  }

  /** The slab's bytes so far become a piece of the output. */
  #seal(): void {
    if (this.#slabUsed > this.#slabStart) {
      this.#out.push(this.#slab.subarray(this.#slabStart, this.#slabUsed));
      this.#slabStart = this.#slabUsed;
    }
  }

  #dirty(): void {
    if (this.#queued) return;
    this.#queued = true;
    dirty.push(this);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flushAll);
    }
  }

  /** Writes what this turn produced, in one write. */
  flush(): void {
    this.#queued = false;
    this.#seal();
    const out = this.#out;
    if (out.length === 0) return;
    this.#out = [];
    // The slab's remainder stays for next turn's frames (what was written is not touched again), unless the connection is idle.
    if (this.streams.size === 0) {
      this.#slab = NO_SLAB;
      this.#slabUsed = 0;
    }
    this.#slabStart = this.#slabUsed;
    const socket = this.socket;
    if (socket.destroyed) return;
    let ok: boolean;
    if (out.length === 1) ok = writeOwned(socket, out[0] as Buffer);
    else {
      let total = 0;
      for (let i = 0; i < out.length; i++) total += (out[i] as Buffer).length;
      if (total <= 256 * 1024) ok = writeOwned(socket, Buffer.concat(out, total));
      else {
        socket.cork();
        for (let i = 0; i < out.length - 1; i++) socket.write(out[i] as Buffer);
        ok = socket.write(out[out.length - 1] as Buffer);
        socket.uncork();
      }
    }
    if (!ok || socket.writableNeedDrain) this.congested = true;
    else this.#owedControl = 0;
  }

  /** @internal */
  onDrain(): void {
    this.congested = false;
    this.#owedControl = 0;
    this.#wakeWriters();
  }

  #wakeWriters(): void {
    if (this.#drainWaiters.size === 0 || this.congested) return;
    for (const stream of this.#drainWaiters) {
      if (stream.outQueued >= 64 * 1024) continue;
      this.#drainWaiters.delete(stream);
      stream.drained();
    }
  }

  /** A stream's write() returned false. */
  wantDrain(stream: H2Stream): void {
    this.#drainWaiters.add(stream);
  }

  /** A control frame we owe the client (an ACK); too many owed at once is a flood. */
  #control(type: number, flags: number, payload: Buffer | null): void {
    if (++this.#owedControl > MAX_OWED_CONTROL) {
      this.#connectionError(ENHANCE_YOUR_CALM, true, `more than ${MAX_OWED_CONTROL} SETTINGS/PING acknowledgements owed to a client that does not read them`);
      return;
    }
    const length = payload === null ? 0 : payload.length;
    const buf = this.#alloc(FRAME_HEADER_LENGTH + length);
    const at = this.#slabUsed;
    writeFrameHeader(buf, at, length, type, flags, 0);
    if (payload !== null) payload.copy(buf, at + FRAME_HEADER_LENGTH);
    this.#slabUsed = at + FRAME_HEADER_LENGTH + length;
    this.#dirty();
  }

  #windowUpdate(streamId: number, increment: number): void {
    this.#u32Frame(WINDOW_UPDATE, streamId, increment);
  }

  #rst(streamId: number, code: number): void {
    this.#u32Frame(RST_STREAM, streamId, code);
  }

  /** A frame whose payload is one 32-bit value (WINDOW_UPDATE, RST_STREAM). */
  #u32Frame(type: number, streamId: number, value: number): void {
    const buf = this.#alloc(FRAME_HEADER_LENGTH + 4);
    const at = this.#slabUsed;
    writeFrameHeader(buf, at, 4, type, 0, streamId);
    buf.writeUInt32BE(value, at + FRAME_HEADER_LENGTH);
    this.#slabUsed = at + FRAME_HEADER_LENGTH + 4;
    this.#dirty();
  }

  /** A header block (HEADERS, then CONTINUATION past the client's frame size). */
  #headers(streamId: number, fields: readonly string[], endStream: boolean): void {
    const bound = maxEncodedLength(fields);
    const maxFrame = this.#peerMaxFrame;
    const buf = this.#alloc(FRAME_HEADER_LENGTH + bound);
    const at = this.#slabUsed;
    const end = this.#encoder.encode(fields, buf, at + FRAME_HEADER_LENGTH);
    const length = end - at - FRAME_HEADER_LENGTH;
    const endFlag = endStream ? FLAG_END_STREAM : 0;
    if (length <= maxFrame) {
      writeFrameHeader(buf, at, length, HEADERS, FLAG_END_HEADERS | endFlag, streamId);
      this.#slabUsed = end;
    } else {
      // Rare: a block past the client's frame size is split (§4.3).
      const block = Buffer.from(buf.subarray(at + FRAME_HEADER_LENGTH, end));
      let off = 0;
      let first = true;
      while (off < block.length) {
        const n = Math.min(maxFrame, block.length - off);
        const last = off + n === block.length;
        const head = this.#alloc(FRAME_HEADER_LENGTH + n);
        const h = this.#slabUsed;
        writeFrameHeader(head, h, n, first ? HEADERS : CONTINUATION, (first ? endFlag : 0) | (last ? FLAG_END_HEADERS : 0), streamId);
        block.copy(head, h + FRAME_HEADER_LENGTH, off, off + n);
        this.#slabUsed = h + FRAME_HEADER_LENGTH + n;
        off += n;
        first = false;
      }
    }
    this.#dirty();
  }

  /** One DATA frame (within the windows, already taken). */
  #dataFrame(streamId: number, chunk: Buffer, start: number, end: number, endStream: boolean): void {
    const length = end - start;
    const flags = endStream ? FLAG_END_STREAM : 0;
    if (length <= COPY_DATA_BELOW) {
      const buf = this.#alloc(FRAME_HEADER_LENGTH + length);
      const at = this.#slabUsed;
      writeFrameHeader(buf, at, length, DATA, flags, streamId);
      if (length > 0) chunk.copy(buf, at + FRAME_HEADER_LENGTH, start, end);
      this.#slabUsed = at + FRAME_HEADER_LENGTH + length;
    } else {
      const buf = this.#alloc(FRAME_HEADER_LENGTH);
      const at = this.#slabUsed;
      writeFrameHeader(buf, at, length, DATA, flags, streamId);
      this.#slabUsed = at + FRAME_HEADER_LENGTH;
      this.#seal();
      this.#out.push(start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end));
    }
    this.#dirty();
  }

  /** stream.respond(). */
  sendHeaders(stream: H2Stream, fields: readonly string[], endStream: boolean): void {
    if (this.dead) return;
    this.#headers(stream.id, fields, endStream);
  }

  /** stream.write()/end(): DATA as far as the windows allow, the rest queued on the stream in order. */
  sendData(stream: H2Stream, chunk: Buffer, end: boolean): void {
    if (this.dead || stream.closed) return;
    if (stream.outQueue !== null || stream.pendingEnd !== 0) {
      stream.queueOut(chunk, end);
      this.flushStream(stream);
      return;
    }
    const length = chunk.length;
    if (length === 0) {
      if (end) {
        this.#dataFrame(stream.id, chunk, 0, 0, true);
        stream.finishedLocal();
      }
      return;
    }
    let off = 0;
    while (off < length) {
      let n = length - off;
      if (n > stream.sendWindow) n = stream.sendWindow;
      if (n > this.#sendWindow) n = this.#sendWindow;
      if (n > this.#peerMaxFrame) n = this.#peerMaxFrame;
      if (n <= 0) break;
      const last = off + n === length;
      this.#dataFrame(stream.id, chunk, off, off + n, end && last);
      stream.sendWindow -= n;
      this.#sendWindow -= n;
      off += n;
    }
    if (off < length) {
      stream.queueOut(off === 0 ? chunk : chunk.subarray(off), end);
      this.#blocked.add(stream);
      return;
    }
    if (end) stream.finishedLocal();
  }

  /** Sends a stream's queued DATA (and what follows it) as far as the windows allow. */
  flushStream(stream: H2Stream): void {
    if (this.dead || stream.closed) return;
    const queue = stream.outQueue;
    const pendingEnd = stream.pendingEnd;
    if (queue !== null) {
      while (queue.length > 0) {
        const chunk = queue[0] as Buffer;
        let off = 0;
        while (off < chunk.length) {
          let n = chunk.length - off;
          if (n > stream.sendWindow) n = stream.sendWindow;
          if (n > this.#sendWindow) n = this.#sendWindow;
          if (n > this.#peerMaxFrame) n = this.#peerMaxFrame;
          if (n <= 0) break;
          const last = off + n === chunk.length && queue.length === 1;
          this.#dataFrame(stream.id, chunk, off, off + n, last && pendingEnd === 1);
          stream.sendWindow -= n;
          this.#sendWindow -= n;
          stream.outQueued -= n;
          off += n;
        }
        if (off < chunk.length) {
          queue[0] = chunk.subarray(off);
          this.#blocked.add(stream);
          return;
        }
        queue.shift();
      }
      stream.outQueue = null;
      this.#blocked.delete(stream);
      if (pendingEnd === 1) {
        stream.finishedLocal();
        return;
      }
    }
    if (pendingEnd === 1) {
      this.#dataFrame(stream.id, EMPTY, 0, 0, true);
      stream.finishedLocal();
    } else if (pendingEnd === 2) {
      const trailers = stream.takeTrailers() as string[];
      this.#headers(stream.id, trailers, true);
      stream.finishedLocal();
    }
    if (stream.writableNeedDrain && !this.congested) {
      this.#drainWaiters.delete(stream);
      stream.drained();
    }
  }

  #flushBlocked(): void {
    for (const stream of this.#blocked) {
      if (this.#sendWindow <= 0) return;
      this.flushStream(stream);
    }
  }

  /** Request body bytes the stream's consumer took: the stream's window is given back in halves. */
  consumed(stream: H2Stream, n: number): void {
    stream.recvConsumed += n;
    const initial = this.settings.initialWindowSize;
    if (stream.recvConsumed >= initial >>> 1 && !stream.remoteEnded && !stream.closed) {
      this.#windowUpdate(stream.id, stream.recvConsumed);
      stream.recvWindow += stream.recvConsumed;
      stream.recvConsumed = 0;
    }
  }

  /** Both sides of the stream ended. */
  streamDone(stream: H2Stream): void {
    this.#closeStream(stream, undefined, false);
  }

  /** stream.close(code): RST_STREAM from us. */
  resetStream(stream: H2Stream, code: number): void {
    this.#resetStream(stream, code);
  }

  #resetStream(stream: H2Stream, code: number): void {
    if (stream.closed) return;
    if (!this.dead) this.#rst(stream.id, code);
    this.#closeStream(stream, code, false);
  }

  #closeStream(stream: H2Stream, code: number | undefined, aborted: boolean): void {
    if (!this.streams.delete(stream.id)) return;
    this.#blocked.delete(stream);
    this.#drainWaiters.delete(stream);
    stream.closedBy(code, aborted);
    if (this.goingAway && this.streams.size === 0) this.#end();
  }

  /** A stream error we found before the stream had an owner: RST_STREAM. */
  #streamError(streamId: number, code: number): void {
    const stream = this.streams.get(streamId);
    if (stream !== undefined) this.#resetStream(stream, code);
    else this.#rst(streamId, code);
  }

  // ---- the connection's end -----------------------------------------------

  /** GOAWAY NO_ERROR naming the last stream (§6.8): streams in flight finish, then the connection closes. */
  goaway(): void {
    if (this.dead) return;
    if (!this.goingAway) {
      this.goingAway = true;
      this.#goawayFrame(NO_ERROR);
    }
    if (this.streams.size === 0) this.#end();
  }

  #goawayFrame(code: number): void {
    const buf = this.#alloc(FRAME_HEADER_LENGTH + 8);
    const at = this.#slabUsed;
    writeFrameHeader(buf, at, 8, GOAWAY, 0, 0);
    // Streams refused after a GOAWAY still move lastStreamId; the id we announced never grows.
    if (this.#goawayLastId < 0) this.#goawayLastId = this.lastStreamId;
    buf.writeUInt32BE(this.#goawayLastId, at + FRAME_HEADER_LENGTH);
    buf.writeUInt32BE(code, at + FRAME_HEADER_LENGTH + 4);
    this.#slabUsed = at + FRAME_HEADER_LENGTH + 8;
    this.#dirty();
  }

  /** Closes gracefully: what is queued is written, then FIN. */
  #end(): void {
    if (this.dead) return;
    this.dead = true;
    this.flush();
    const socket = this.socket;
    socket.end();
    // A client that never closes its side would keep the socket half-open for good: it goes a while after
    // our last byte left (a client slow to read keeps it until then; the idle timeout bounds that).
    if (socket.writableFinished) lingerThenDestroy.call(socket);
    else socket.once('finish', lingerThenDestroy);
  }

  /** The client broke the protocol: GOAWAY `code`, every stream closed, the socket ended. */
  #connectionError(code: number, flood: boolean, message: string): void {
    if (this.dead) return;
    this.#goawayFrame(code);
    this.handler?.onConnectionError(flood, code, message);
    this.cutOff();
  }

  /** Closes at once after a GOAWAY already queued (or none): streams aborted, the socket ended after the queued bytes. */
  cutOff(code?: number): void {
    if (this.dead) return;
    if (code !== undefined) this.#goawayFrame(code);
    this.dead = true;
    this.#blockChunks = null;
    this.#abortStreams();
    this.flush();
    const socket = this.socket;
    socket.end();
    // A client that does not read would hold the socket open: it goes when the kernel has taken our bytes, or soon.
    setTimeout(destroySocket, LINGER_MS, socket).unref();
  }

  /** Closes at once. */
  destroy(): void {
    this.dead = true;
    this.#abortStreams();
    this.socket.destroy();
  }

  #abortStreams(): void {
    if (this.streams.size === 0) return;
    const streams = [...this.streams.values()];
    this.streams.clear();
    this.#blocked.clear();
    this.#drainWaiters.clear();
    for (const stream of streams) stream.closedBy(undefined, true);
  }

  /** @internal */
  onClose(): void {
    this.dead = true;
    this.#abortStreams();
    this.handler?.onClose();
  }
}

const EMPTY = Buffer.alloc(0);

/** Byte `i` of the concatenation of `pieces`. */
function byteAt(pieces: readonly Buffer[], i: number): number {
  for (const piece of pieces) {
    if (i < piece.length) return piece[i] as number;
    i -= piece.length;
  }
  return 0;
}

const kWire = Symbol('polyproxy.h2.wire');
type WireSocket = Socket & { [kWire]?: H2ServerConnection };

/** onread callback (core's shared read buffer): `buffer` is valid during the call. */
function wireOnRead(this: WireSocket, nread: number, buffer: Buffer): boolean {
  this[kWire]?.read(buffer.subarray(0, nread), true);
  return true;
}
function wireOnData(this: WireSocket, chunk: Buffer): void {
  this[kWire]?.read(chunk, false);
}
function wireOnDrain(this: WireSocket): void {
  this[kWire]?.onDrain();
}
function wireOnClose(this: WireSocket): void {
  this[kWire]?.onClose();
}

function lingerThenDestroy(this: Socket): void {
  setTimeout(destroySocket, LINGER_MS, this).unref();
}
function destroySocket(socket: Socket): void {
  if (!socket.destroyed) socket.destroy();
}
function noop(): void {}
