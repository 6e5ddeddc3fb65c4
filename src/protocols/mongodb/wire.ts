/**
 * MongoDB wire protocol messages, as pure functions over buffers (no
 * sockets): the standard header, OP_MSG (flags, checksum, kind-0 body and
 * kind-1 document sequences), the legacy OP_QUERY handshake, and the
 * OP_MSG / OP_REPLY builders the proxy answers with.
 * https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/
 * https://github.com/mongodb/specifications/blob/master/source/message/OP_MSG.md
 */
import { PolyproxyError } from '../../core/errors.ts';
import { decodeDocument, documentLength, encodeDocument, firstKey } from './bson.ts';
import type { BsonDocument } from './bson.ts';
import { crc32c } from './crc32c.ts';

export const OP_REPLY = 1;
export const OP_QUERY = 2004;
export const OP_COMPRESSED = 2012;
export const OP_MSG = 2013;

/** OP_MSG flagBits. Bits 0-15 are "required": an unknown one set is an error. */
export const MSG_CHECKSUM_PRESENT = 1 << 0;
export const MSG_MORE_TO_COME = 1 << 1;
export const MSG_EXHAUST_ALLOWED = 1 << 16;
const MSG_REQUIRED_BITS = 0xffff;

export const HEADER_SIZE = 16;
/** mongod's maxBsonObjectSize. */
export const MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024;
/**
 * The largest message the proxy reads before a tenant is known: one
 * maximum-size document plus room for the command around it (mongod's
 * BSONObjMaxInternalSize). The hello answer advertises it as
 * maxMessageSizeBytes, so a driver never sends a first command this refuses.
 */
export const MAX_OPENING_MESSAGE = MAX_BSON_OBJECT_SIZE + 16 * 1024;

export interface MessageHeader {
  readonly messageLength: number;
  readonly requestID: number;
  readonly responseTo: number;
  readonly opCode: number;
}

export interface DocumentSequence {
  readonly identifier: string;
  readonly documents: readonly BsonDocument[];
}

export interface OpMsgRequest {
  readonly op: 'msg';
  readonly requestID: number;
  readonly flags: number;
  /** The kind-0 section: the command, with `$db`. */
  readonly body: BsonDocument;
  /** The body's first key: the command's name (undefined for an empty body). */
  readonly command: string | undefined;
  readonly sequences: readonly DocumentSequence[];
  /** The whole message as received (a copy). */
  readonly raw: Buffer;
}

export interface OpQueryRequest {
  readonly op: 'query';
  readonly requestID: number;
  readonly flags: number;
  /** `db.collection`; commands go to `db.$cmd`. */
  readonly collection: string;
  readonly numberToSkip: number;
  readonly numberToReturn: number;
  readonly query: BsonDocument;
  /** The command document: `query`, or its `$query` when the driver wrapped it. */
  readonly command: BsonDocument;
  readonly commandName: string | undefined;
  readonly raw: Buffer;
}

export type ClientMessage = OpMsgRequest | OpQueryRequest;

export interface ServerReply {
  readonly opCode: number;
  readonly requestID: number;
  readonly responseTo: number;
  /** OP_MSG flagBits, or OP_REPLY responseFlags. */
  readonly flags: number;
  readonly document: BsonDocument;
}

function protocolError(message: string, source: 'client' | 'backend' = 'client'): PolyproxyError {
  return new PolyproxyError('PROTOCOL', message, { source });
}

export function readHeader(buf: Buffer, offset = 0): MessageHeader {
  return {
    messageLength: buf.readInt32LE(offset),
    requestID: buf.readInt32LE(offset + 4),
    responseTo: buf.readInt32LE(offset + 8),
    opCode: buf.readInt32LE(offset + 12),
  };
}

/**
 * Frames one message: returns its length once the whole message is
 * buffered, undefined before. Refuses a length outside 16..max as soon as
 * the length is readable, and an op code not in `opCodes` as soon as the
 * header is.
 */
function frame(buf: Buffer, max: number, opCodes: readonly number[], what: string): number | undefined {
  if (buf.length < 4) return undefined;
  const length = buf.readInt32LE(0);
  if (length < HEADER_SIZE) throw protocolError(`message length ${length} is shorter than a header`);
  if (length > max) throw protocolError(`message length ${length} exceeds the ${max}-byte limit`);
  if (buf.length < HEADER_SIZE) return undefined;
  const opCode = buf.readInt32LE(12);
  if (!opCodes.includes(opCode)) {
    throw protocolError(opCode === OP_COMPRESSED ? 'OP_COMPRESSED was sent but compression was not negotiated' : `unexpected op code ${opCode} in ${what}`);
  }
  return buf.length < length ? undefined : length;
}

/**
 * Recognises one client request (OP_MSG or OP_QUERY) of at most `max`
 * bytes. Returns undefined until the whole message is buffered; throws
 * PolyproxyError('PROTOCOL') on anything malformed.
 */
export function parseClientMessageMax(buf: Buffer, max: number): { value: ClientMessage; consumed: number } | undefined {
  const length = frame(buf, max, [OP_MSG, OP_QUERY], 'a request');
  if (length === undefined) return undefined;
  const raw = Buffer.from(buf.subarray(0, length)); // copy: the caller's buffer is reused
  const requestID = raw.readInt32LE(4);
  const value = raw.readInt32LE(12) === OP_MSG ? parseOpMsg(raw, requestID) : parseOpQuery(raw, requestID);
  return { value, consumed: length };
}

/** The opening parser: one request of at most MAX_OPENING_MESSAGE bytes. */
export function parseClientMessage(buf: Buffer): { value: ClientMessage; consumed: number } | undefined {
  return parseClientMessageMax(buf, MAX_OPENING_MESSAGE);
}

function parseOpMsg(raw: Buffer, requestID: number): OpMsgRequest {
  if (raw.length < HEADER_SIZE + 4) throw protocolError('OP_MSG without flagBits');
  const flags = raw.readUInt32LE(HEADER_SIZE);
  const unknown = flags & MSG_REQUIRED_BITS & ~(MSG_CHECKSUM_PRESENT | MSG_MORE_TO_COME);
  if (unknown !== 0) throw protocolError(`OP_MSG has unknown required flag bits 0x${unknown.toString(16)}`);
  let end = raw.length;
  if ((flags & MSG_CHECKSUM_PRESENT) !== 0) {
    end -= 4;
    if (end < HEADER_SIZE + 4) throw protocolError('OP_MSG too short for its checksum');
    const expected = raw.readUInt32LE(end);
    const actual = crc32c(raw, 0, end);
    if (expected !== actual) throw protocolError(`OP_MSG checksum mismatch (0x${expected.toString(16)} sent, 0x${actual.toString(16)} computed)`);
  }
  let body: BsonDocument | undefined;
  let command: string | undefined;
  const sequences: DocumentSequence[] = [];
  let at = HEADER_SIZE + 4;
  while (at < end) {
    const kind = raw[at++];
    if (kind === 0) {
      if (body !== undefined) throw protocolError('OP_MSG has more than one body section');
      const size = documentLength(raw, at, end);
      command = firstKey(raw, at, at + size);
      body = decodeDocument(raw, at, at + size);
      at += size;
    } else if (kind === 1) {
      if (end - at < 4) throw protocolError('OP_MSG document sequence without a size');
      const size = raw.readInt32LE(at);
      if (size < 5 || size > end - at) throw protocolError(`OP_MSG document sequence size ${size} out of range`);
      const seqEnd = at + size;
      const idEnd = raw.indexOf(0, at + 4);
      if (idEnd < 0 || idEnd >= seqEnd) throw protocolError('OP_MSG document sequence identifier is not terminated');
      const identifier = raw.toString('utf8', at + 4, idEnd);
      const documents: BsonDocument[] = [];
      let docAt = idEnd + 1;
      while (docAt < seqEnd) {
        const docSize = documentLength(raw, docAt, seqEnd);
        documents.push(decodeDocument(raw, docAt, docAt + docSize));
        docAt += docSize;
      }
      sequences.push({ identifier, documents });
      at = seqEnd;
    } else {
      throw protocolError(`OP_MSG has an unknown section kind ${kind}`);
    }
  }
  if (body === undefined) throw protocolError('OP_MSG has no body section');
  return { op: 'msg', requestID, flags, body, command, sequences, raw };
}

function parseOpQuery(raw: Buffer, requestID: number): OpQueryRequest {
  const end = raw.length;
  let at = HEADER_SIZE;
  if (end - at < 4) throw protocolError('OP_QUERY without flags');
  const flags = raw.readInt32LE(at);
  at += 4;
  const nameEnd = raw.indexOf(0, at);
  if (nameEnd < 0 || nameEnd >= end) throw protocolError('OP_QUERY collection name is not terminated');
  const collection = raw.toString('utf8', at, nameEnd);
  at = nameEnd + 1;
  if (end - at < 8) throw protocolError('OP_QUERY without numberToSkip/numberToReturn');
  const numberToSkip = raw.readInt32LE(at);
  const numberToReturn = raw.readInt32LE(at + 4);
  at += 8;
  const size = documentLength(raw, at, end);
  const query = decodeDocument(raw, at, at + size);
  let commandName = firstKey(raw, at, at + size);
  at += size;
  if (at < end) {
    const selector = documentLength(raw, at, end); // returnFieldsSelector: checked, not used
    decodeDocument(raw, at, at + selector);
    at += selector;
  }
  if (at !== end) throw protocolError('OP_QUERY has trailing bytes');
  let command = query;
  const wrapped = commandName === '$query' || commandName === 'query' ? query[commandName] : undefined;
  if (wrapped !== undefined && wrapped !== null && typeof wrapped === 'object' && !Array.isArray(wrapped) && Object.getPrototypeOf(wrapped) === Object.prototype) {
    command = wrapped as BsonDocument;
    commandName = Object.keys(command)[0];
  }
  return { op: 'query', requestID, flags, collection, numberToSkip, numberToReturn, query, command, commandName, raw };
}

/**
 * Recognises one reply from a server (OP_MSG or OP_REPLY with at least one
 * document). Used while the proxy talks to a backend itself.
 */
export function parseServerReply(buf: Buffer, max = MAX_OPENING_MESSAGE): { value: ServerReply; consumed: number } | undefined {
  let length: number | undefined;
  try {
    length = frame(buf, max, [OP_MSG, OP_REPLY], 'a reply');
  } catch (err) {
    throw protocolError((err as Error).message, 'backend');
  }
  if (length === undefined) return undefined;
  const raw = buf.subarray(0, length);
  const header = readHeader(raw);
  try {
    if (header.opCode === OP_MSG) {
      const msg = parseOpMsg(raw, header.requestID);
      return { value: { opCode: OP_MSG, requestID: header.requestID, responseTo: header.responseTo, flags: msg.flags, document: msg.body }, consumed: length };
    }
    // OP_REPLY: responseFlags, cursorID, startingFrom, numberReturned, documents
    if (length < HEADER_SIZE + 20) throw protocolError('OP_REPLY too short');
    const flags = raw.readInt32LE(HEADER_SIZE);
    const numberReturned = raw.readInt32LE(HEADER_SIZE + 16);
    if (numberReturned < 1) throw protocolError('OP_REPLY without a document');
    const at = HEADER_SIZE + 20;
    const size = documentLength(raw, at, length);
    return { value: { opCode: OP_REPLY, requestID: header.requestID, responseTo: header.responseTo, flags, document: decodeDocument(raw, at, at + size) }, consumed: length };
  } catch (err) {
    if (err instanceof PolyproxyError && err.kind === 'PROTOCOL') throw protocolError(err.message, 'backend');
    throw err;
  }
}

function header(out: Buffer, requestID: number, responseTo: number, opCode: number): void {
  out.writeInt32LE(out.length, 0);
  out.writeInt32LE(requestID, 4);
  out.writeInt32LE(responseTo, 8);
  out.writeInt32LE(opCode, 12);
}

/** An OP_MSG with one body section (the shape of every reply mongod sends, and of the proxy's own requests). */
export function encodeOpMsg(requestID: number, responseTo: number, body: BsonDocument, flags = 0): Buffer {
  const doc = encodeDocument(body);
  const out = Buffer.allocUnsafe(HEADER_SIZE + 4 + 1 + doc.length);
  header(out, requestID, responseTo, OP_MSG);
  out.writeUInt32LE(flags >>> 0, HEADER_SIZE);
  out[HEADER_SIZE + 4] = 0;
  doc.copy(out, HEADER_SIZE + 5);
  return out;
}

/** An OP_REPLY carrying one document: the answer to an OP_QUERY command. */
export function encodeOpReply(requestID: number, responseTo: number, document: BsonDocument, responseFlags = 0): Buffer {
  const doc = encodeDocument(document);
  const out = Buffer.allocUnsafe(HEADER_SIZE + 20 + doc.length);
  header(out, requestID, responseTo, OP_REPLY);
  out.writeInt32LE(responseFlags, HEADER_SIZE);
  out.writeBigInt64LE(0n, HEADER_SIZE + 4); // cursorID
  out.writeInt32LE(0, HEADER_SIZE + 12); // startingFrom
  out.writeInt32LE(1, HEADER_SIZE + 16); // numberReturned
  doc.copy(out, HEADER_SIZE + 20);
  return out;
}

/** The database a request is for: OP_MSG's `$db`, or the part of an OP_QUERY collection before the first dot. */
export function requestDatabase(msg: ClientMessage): unknown {
  if (msg.op === 'msg') return msg.body.$db;
  const dot = msg.collection.indexOf('.');
  return dot < 0 ? msg.collection : msg.collection.slice(0, dot);
}

/** What a listener lets a client buffer during its opening: one maximum message plus what it pipelined behind. */
export const MAX_OPENING_BUFFER = MAX_OPENING_MESSAGE + 64 * 1024;
