/**
 * The relay's client filter for MongoDB sessions (issue 15): a connection
 * stays with the tenant database it was routed by. A later request whose
 * `$db` names another database — other than `admin` (drivers send
 * endSessions, commitTransaction and abortTransaction there) and
 * `$external` (x.509 / LDAP authentication) — is answered with an error
 * document (13 Unauthorized) and the connection closes, before any byte of
 * it reaches the backend. So are the opcodes the proxy cannot read:
 * OP_COMPRESSED (compression is never advertised) and the legacy opcodes
 * other than OP_QUERY.
 *
 * Per chunk it walks message headers. A message whole in the chunk is read
 * in place (only the body's top-level keys are walked, no BSON is decoded);
 * one that spans chunks is collected, checked once complete, then
 * forwarded.
 */
import type { Socket } from 'node:net';
import { PolyproxyError } from '../../core/errors.ts';
import type { Relay, ClientFilter } from '../../core/relay.ts';
import { UNAUTHORIZED, errorDocument, replyTo } from './errors.ts';
import { nextRequestId } from './ids.ts';
import { HEADER_SIZE, MSG_CHECKSUM_PRESENT, MSG_MORE_TO_COME, OP_MSG, OP_QUERY } from './wire.ts';

interface Refusal {
  readonly requestID: number;
  readonly op: 'msg' | 'query';
  readonly moreToCome: boolean;
  readonly errmsg: string;
}

/** Databases any session may name besides its own. */
const SHARED = new Set(['admin', '$external']);

export class DbGuard implements ClientFilter {
  readonly #database: string;
  readonly #maxMessageBytes: number;
  /** A header that straddles chunks. */
  readonly #head = Buffer.alloc(HEADER_SIZE);
  #headFill = 0;
  /** A message being collected, and how much of it has arrived. */
  #collect: Buffer | null = null;
  #collectFill = 0;
  #refused = false;
  /** Where checked bytes go: the relay, or before it starts (prime) the backend socket. */
  #relay: Relay | null = null;
  #backend: Socket | null = null;

  constructor(database: string, maxMessageBytes: number) {
    this.#database = database;
    this.#maxMessageBytes = maxMessageBytes;
  }

  /**
   * Checks and writes bytes the client sent behind the routed request that
   * reach the backend before the relay starts (MongoProtocol.replay).
   * Throws FORBIDDEN for a request that may not pass.
   */
  prime(backend: Socket, bytes: Buffer): void {
    this.#backend = backend;
    this.#walk(bytes);
    this.#backend = null;
  }

  push(relay: Relay, chunk: Buffer): boolean {
    this.#relay = relay;
    return this.#walk(chunk);
  }

  #write(bytes: Buffer): boolean {
    const relay = this.#relay;
    return relay !== null ? relay.writeToBackend(bytes) : (this.#backend as Socket).write(bytes);
  }

  #walk(chunk: Buffer): boolean {
    if (this.#refused) return false;
    const length = chunk.length;
    let at = 0;
    let flushFrom = 0;
    let ok = true;
    while (at < length) {
      const collect = this.#collect;
      if (collect !== null) {
        const take = Math.min(collect.length - this.#collectFill, length - at);
        chunk.copy(collect, this.#collectFill, at, at + take);
        this.#collectFill += take;
        at += take;
        flushFrom = at;
        if (this.#collectFill < collect.length) break;
        this.#collect = null;
        const refusal = this.#check(collect, 0, collect.length);
        if (refusal !== null) return this.#refuse(refusal);
        ok = this.#write(collect) && ok;
        continue;
      }
      if (this.#headFill > 0 || length - at < HEADER_SIZE) {
        // A header that straddles chunks (rare): assemble it, then collect the message.
        if (at > flushFrom) ok = this.#write(chunk.subarray(flushFrom, at)) && ok;
        const take = Math.min(HEADER_SIZE - this.#headFill, length - at);
        chunk.copy(this.#head, this.#headFill, at, at + take);
        this.#headFill += take;
        at += take;
        flushFrom = at;
        if (this.#headFill < HEADER_SIZE) break;
        this.#headFill = 0;
        const messageLength = this.#head.readInt32LE(0);
        if (!this.#sane(messageLength, this.#head.readInt32LE(4))) return false;
        this.#collect = Buffer.allocUnsafe(messageLength);
        this.#head.copy(this.#collect, 0);
        this.#collectFill = HEADER_SIZE;
        continue;
      }
      const messageLength = chunk.readInt32LE(at);
      if (!this.#sane(messageLength, chunk.readInt32LE(at + 4))) return false;
      if (at + messageLength <= length) {
        const refusal = this.#check(chunk, at, at + messageLength);
        if (refusal !== null) {
          // What passed before it in this chunk goes first.
          if (at > flushFrom) this.#write(chunk.subarray(flushFrom, at));
          return this.#refuse(refusal);
        }
        at += messageLength;
        continue;
      }
      if (at > flushFrom) ok = this.#write(chunk.subarray(flushFrom, at)) && ok;
      const started = Buffer.allocUnsafe(messageLength);
      chunk.copy(started, 0, at, length);
      this.#collect = started;
      this.#collectFill = length - at;
      at = flushFrom = length;
    }
    if (at > flushFrom) ok = this.#write(flushFrom === 0 && at === length ? chunk : chunk.subarray(flushFrom, at)) && ok;
    return ok;
  }

  #sane(messageLength: number, requestID: number): boolean {
    if (messageLength >= HEADER_SIZE && messageLength <= this.#maxMessageBytes) return true;
    this.#refuse({ requestID, op: 'msg', moreToCome: false, errmsg: `message length ${messageLength} is not allowed through the proxy` });
    return false;
  }

  /** Checks the message in buf[start, end): null when it may pass, else why not. */
  #check(buf: Buffer, start: number, end: number): Refusal | null {
    const requestID = buf.readInt32LE(start + 4);
    const opCode = buf.readInt32LE(start + 12);
    let database: string | null;
    let moreToCome = false;
    if (opCode === OP_MSG) {
      if (end - start < HEADER_SIZE + 5) database = null;
      else {
        const flags = buf.readUInt32LE(start + HEADER_SIZE);
        moreToCome = (flags & MSG_MORE_TO_COME) !== 0;
        database = opMsgDatabase(buf, start + HEADER_SIZE + 4, (flags & MSG_CHECKSUM_PRESENT) !== 0 ? end - 4 : end);
      }
    } else if (opCode === OP_QUERY) {
      const nameStart = start + HEADER_SIZE + 4;
      const nameEnd = nameStart < end ? buf.indexOf(0, nameStart) : -1;
      const name = nameEnd < 0 || nameEnd >= end ? null : buf.toString('utf8', nameStart, nameEnd);
      const dot = name === null ? -1 : name.indexOf('.');
      database = name === null || dot < 0 ? null : name.slice(0, dot);
    } else {
      return { requestID, op: 'msg', moreToCome: false, errmsg: `opcode ${opCode} is not allowed through the proxy` };
    }
    if (database === this.#database || (database !== null && SHARED.has(database))) return null;
    return {
      requestID,
      op: opCode === OP_MSG ? 'msg' : 'query',
      moreToCome,
      errmsg: database === null ? 'a request needs a $db string naming its database' : `this connection serves database "${this.#database}": "${database}" needs a connection of its own`,
    };
  }

  /** Answers the refused request (13 Unauthorized) and ends the session. Returns false (the client stops). */
  #refuse({ requestID, op, moreToCome, errmsg }: Refusal): false {
    this.#refused = true;
    const relay = this.#relay;
    if (relay === null) throw new PolyproxyError('FORBIDDEN', errmsg, { source: 'client' });
    if (relay.reason === null) relay.reason = 'refused-command';
    const reply = replyTo({ requestID, op, moreToCome }, nextRequestId(), errorDocument(UNAUTHORIZED, errmsg));
    relay.backend.destroy();
    if (reply === null) relay.client.end();
    else {
      relay.bytesOut += reply.length;
      relay.client.end(reply);
    }
    return false;
  }
}

/**
 * The `$db` of the OP_MSG whose sections span buf[at, end): the body's
 * (kind 0) top-level string `$db`, or null when there is none or the
 * sections are malformed.
 */
export function opMsgDatabase(buf: Buffer, at: number, end: number): string | null {
  while (at < end) {
    const kind = buf[at] as number;
    at++;
    if (end - at < 4) return null;
    const size = buf.readInt32LE(at);
    if (size < 5 || size > end - at) return null;
    if (kind === 0) return topLevelString(buf, at, at + size, '$db');
    if (kind !== 1) return null;
    at += size;
  }
  return null;
}

/** Bytes a BSON value of `type` takes at `at`, or -1 when unknown or malformed. */
function valueSize(buf: Buffer, type: number, at: number, end: number): number {
  switch (type) {
    case 0x01: case 0x09: case 0x11: case 0x12: return 8; // double, datetime, timestamp, int64
    case 0x10: return 4; // int32
    case 0x08: return 1; // bool
    case 0x07: return 12; // ObjectId
    case 0x13: return 16; // decimal128
    case 0x06: case 0x0a: case 0x7f: case 0xff: return 0; // undefined, null, maxKey, minKey
    case 0x02: case 0x0d: case 0x0e: return end - at < 4 ? -1 : 4 + buf.readInt32LE(at); // string, code, symbol
    case 0x03: case 0x04: case 0x0f: return end - at < 4 ? -1 : buf.readInt32LE(at); // document, array, code with scope
    case 0x05: return end - at < 4 ? -1 : 5 + buf.readInt32LE(at); // binary
    case 0x0c: return end - at < 4 ? -1 : 16 + buf.readInt32LE(at); // DBPointer
    case 0x0b: { // regex: two cstrings
      const first = buf.indexOf(0, at);
      const second = first < 0 ? -1 : buf.indexOf(0, first + 1);
      return second < 0 ? -1 : second + 1 - at;
    }
    default: return -1;
  }
}

/** The string value of top-level key `key` in the document at buf[start, end), or null. */
function topLevelString(buf: Buffer, start: number, end: number, key: string): string | null {
  let at = start + 4;
  const last = end - 1;
  let value: string | null = null;
  while (at < last) {
    const type = buf[at] as number;
    const nameEnd = buf.indexOf(0, at + 1);
    if (nameEnd < 0 || nameEnd >= last) return null;
    const valueAt = nameEnd + 1;
    const size = valueSize(buf, type, valueAt, last);
    if (size < 0 || valueAt + size > last) return null;
    if (nameEnd - at - 1 === key.length && buf.toString('latin1', at + 1, nameEnd) === key) {
      // A repeated $db is refused: the server and the proxy might not read the same one.
      if (value !== null || type !== 0x02 || size < 5) return null;
      value = buf.toString('utf8', valueAt + 4, valueAt + size - 1);
    }
    at = valueAt + size;
  }
  return at === last ? value : null;
}
