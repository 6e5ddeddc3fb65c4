/**
 * The answers the proxy gives itself before a tenant is known: `hello` /
 * `isMaster`, `ping`, `buildInfo`, `endSessions` on `admin`. Pure: the
 * caller passes the facts, the connection id and the clock.
 *
 * The facts start as sane defaults (a MongoDB 7.0 standalone) and are
 * replaced by what the listener's backends say in their own hello and
 * buildInfo (see ServerFacts.learn*), so later handshakes advertise the
 * wire versions and limits of the servers behind the proxy.
 */
import { Double } from './bson.ts';
import type { BsonDocument, BsonValue, ObjectId } from './bson.ts';
import { MAX_BSON_OBJECT_SIZE, MAX_OPENING_MESSAGE } from './wire.ts';

export class ServerFacts {
  minWireVersion = 0;
  /** 21 = MongoDB 7.0. */
  maxWireVersion = 21;
  maxBsonObjectSize = MAX_BSON_OBJECT_SIZE;
  maxWriteBatchSize = 100000;
  logicalSessionTimeoutMinutes: number | null = 30;
  version = '7.0.0';
  helloLearned = false;
  buildInfoLearned = false;

  /** Takes the limits a backend's hello reply advertises. */
  learnFromHello(doc: BsonDocument): void {
    if (!isOk(doc)) return;
    const min = intField(doc, 'minWireVersion');
    const max = intField(doc, 'maxWireVersion');
    if (min !== undefined && max !== undefined && min >= 0 && min <= max) {
      this.minWireVersion = min;
      this.maxWireVersion = max;
    }
    const size = intField(doc, 'maxBsonObjectSize');
    // Never more than the proxy itself reads in an opening message.
    if (size !== undefined && size > 0) this.maxBsonObjectSize = Math.min(size, MAX_BSON_OBJECT_SIZE);
    const batch = intField(doc, 'maxWriteBatchSize');
    if (batch !== undefined && batch > 0) this.maxWriteBatchSize = batch;
    // A server without sessions (no field) makes drivers stop sending lsid: follow it.
    const minutes = intField(doc, 'logicalSessionTimeoutMinutes');
    this.logicalSessionTimeoutMinutes = minutes !== undefined && minutes > 0 ? minutes : null;
    this.helloLearned = true;
  }

  learnFromBuildInfo(doc: BsonDocument): void {
    if (!isOk(doc) || typeof doc.version !== 'string' || !/^\d+\.\d+\.\d+/.test(doc.version)) return;
    this.version = doc.version;
    this.buildInfoLearned = true;
  }
}

function isOk(doc: BsonDocument): boolean {
  const ok = doc.ok;
  return ok === 1 || ok === true || (ok instanceof Double && ok.value === 1);
}

function intField(doc: BsonDocument, name: string): number | undefined {
  const value = doc[name];
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
  if (typeof value === 'bigint' && value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(value);
  return undefined;
}

/** The commands answered before routing. Names are case-sensitive, as in mongod (which accepts both spellings below). */
export type HandshakeCommand = 'hello' | 'isMaster' | 'ping' | 'buildInfo' | 'endSessions';

export function handshakeCommand(name: string | undefined): HandshakeCommand | undefined {
  switch (name) {
    case 'hello':
      return 'hello';
    case 'isMaster':
    case 'ismaster':
      return 'isMaster';
    case 'ping':
      return 'ping';
    case 'buildInfo':
    case 'buildinfo':
      return 'buildInfo';
    case 'endSessions':
      return 'endSessions';
    default:
      return undefined;
  }
}

/** The proxy's topologyVersion: a process id that changes when the proxy restarts, and a counter that never moves. */
export interface TopologyVersion {
  readonly processId: ObjectId;
  readonly counter: bigint;
}

export interface HelloContext {
  readonly facts: ServerFacts;
  readonly topologyVersion: TopologyVersion;
  readonly connectionId: number;
  readonly now: Date;
}

/**
 * A standalone's hello answer. No `compression` (the proxy reads the opening
 * uncompressed and the backend connection never negotiated it), no
 * `saslSupportedMechs` or `speculativeAuthenticate` (authentication is the
 * backend's, after routing).
 */
export function helloReply(command: HandshakeCommand, request: BsonDocument, ctx: HelloContext): BsonDocument {
  const facts = ctx.facts;
  const doc: BsonDocument = {};
  if (request.helloOk === true) doc.helloOk = true;
  if (command === 'isMaster') doc.ismaster = true;
  else doc.isWritablePrimary = true;
  doc.topologyVersion = { processId: ctx.topologyVersion.processId, counter: ctx.topologyVersion.counter };
  doc.maxBsonObjectSize = facts.maxBsonObjectSize;
  doc.maxMessageSizeBytes = MAX_OPENING_MESSAGE;
  doc.maxWriteBatchSize = facts.maxWriteBatchSize;
  doc.localTime = ctx.now;
  if (facts.logicalSessionTimeoutMinutes !== null) doc.logicalSessionTimeoutMinutes = facts.logicalSessionTimeoutMinutes;
  doc.connectionId = ctx.connectionId;
  doc.minWireVersion = facts.minWireVersion;
  doc.maxWireVersion = facts.maxWireVersion;
  doc.readOnly = false;
  doc.ok = new Double(1);
  return doc;
}

export function buildInfoReply(facts: ServerFacts): BsonDocument {
  const versionArray: BsonValue[] = facts.version
    .split(/[.-]/)
    .slice(0, 3)
    .map((part) => Number.parseInt(part, 10) || 0);
  while (versionArray.length < 3) versionArray.push(0);
  versionArray.push(0);
  return {
    version: facts.version,
    versionArray,
    bits: 64,
    maxBsonObjectSize: facts.maxBsonObjectSize,
    ok: new Double(1),
  };
}

/**
 * How long an awaitable hello may be held: its maxAwaitTimeMS when it
 * names the proxy's current topologyVersion, else undefined (answer now, as
 * mongod does when the client's view is stale or it did not ask to wait).
 */
export function awaitTimeMs(request: BsonDocument, current: TopologyVersion): number | undefined {
  const seen = request.topologyVersion;
  const wait = request.maxAwaitTimeMS;
  if (seen === null || typeof seen !== 'object' || Array.isArray(seen) || Object.getPrototypeOf(seen) !== Object.prototype) return undefined;
  const version = seen as BsonDocument;
  if (!current.processId.equals(version.processId)) return undefined;
  const counter = version.counter;
  const sameCounter = typeof counter === 'bigint' ? counter === current.counter : typeof counter === 'number' && Number.isSafeInteger(counter) && BigInt(counter) === current.counter;
  if (!sameCounter) return undefined;
  let ms: number | undefined;
  if (typeof wait === 'number') ms = wait;
  else if (typeof wait === 'bigint') ms = Number(wait);
  if (ms === undefined || !Number.isFinite(ms) || ms < 0) return undefined;
  return Math.min(Math.floor(ms), 0x7fffffff);
}
