/**
 * Fuzzing the AMQP 0-9-1 handshake codecs (issue 22) against an
 * independent implementation: amqplib's generated codec (lib/defs.js).
 * Start-Ok, Tune-Ok and Open frames amqplib writes are read to the same
 * fields, whole, cut anywhere or followed by the next frame; mutated ones
 * are waited for, refused with an AmqpRefusal, or read the way amqplib
 * reads them; the protocol header is accepted exactly; Close frames the
 * proxy writes decode in amqplib to the same code and text.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AmqpRefusal } from '../../src/protocols/amqp/errors.ts';
import { PROTOCOL_HEADER, closeFrame, frameParser, parseProtocolHeader, readMethod, readOpen, readStartOk, readTune } from '../../src/protocols/amqp/frames.ts';
import { fuzz, text } from '../helpers/fuzz.ts';

// amqplib's package exports do not list lib/defs.js: reach it beside the package's main file.
const require = createRequire(import.meta.url);
const defs = require(path.join(path.dirname(require.resolve('amqplib')), 'lib/defs.js')) as {
  encodeMethod(id: number, channel: number, fields: Record<string, unknown>): Buffer;
  decode(id: number, args: Buffer): Record<string, unknown>;
  ConnectionStartOk: number;
  ConnectionTuneOk: number;
  ConnectionOpen: number;
  ConnectionClose: number;
};

const readFrame = frameParser(128 * 1024);

/** A shortstr's worth of text (at most 255 UTF-8 bytes). */
const short = (max: number): fc.Arbitrary<string> => text(0, max).filter((s) => Buffer.byteLength(s) <= 255);

const startOkArb = fc.record({
  clientProperties: fc.dictionary(short(10).filter((k) => k !== ''), fc.oneof(short(20), fc.boolean(), fc.integer({ min: -1000, max: 1000 })), { maxKeys: 4 }),
  mechanism: fc.constantFrom('PLAIN', 'AMQPLAIN', 'EXTERNAL'),
  response: fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b)),
  locale: short(8),
});
const tuneOkArb = fc.record({ channelMax: fc.integer({ min: 0, max: 65535 }), frameMax: fc.integer({ min: 0, max: 0xffffffff }), heartbeat: fc.integer({ min: 0, max: 65535 }) });
const openArb = fc.record({ virtualHost: short(40), capabilities: fc.constant(''), insist: fc.boolean() });

type Value<A> = A extends fc.Arbitrary<infer T> ? T : never;
type Encoded =
  | { kind: 'startOk'; bytes: Buffer; fields: Value<typeof startOkArb> }
  | { kind: 'tuneOk'; bytes: Buffer; fields: Value<typeof tuneOkArb> }
  | { kind: 'open'; bytes: Buffer; fields: Value<typeof openArb> };

const encodedArb: fc.Arbitrary<Encoded> = fc.oneof(
  startOkArb.map((fields) => ({ kind: 'startOk' as const, bytes: defs.encodeMethod(defs.ConnectionStartOk, 0, fields), fields })),
  tuneOkArb.map((fields) => ({ kind: 'tuneOk' as const, bytes: defs.encodeMethod(defs.ConnectionTuneOk, 0, fields), fields })),
  openArb.map((fields) => ({ kind: 'open' as const, bytes: defs.encodeMethod(defs.ConnectionOpen, 0, fields), fields })),
);

/** The proxy's reading of one method frame's arguments. */
function proxyRead(kind: Encoded['kind'], args: Buffer): unknown {
  if (kind === 'startOk') return readStartOk(args);
  if (kind === 'tuneOk') return readTune(args, 'Connection.Tune-Ok');
  return readOpen(args);
}

describe('AMQP frames and connection methods', () => {
  it("read what amqplib writes: Start-Ok's mechanism and locale, Tune-Ok's limits, Open's vhost; whole, cut, or followed by more", (t) => {
    fuzz(
      t,
      fc.property(encodedArb, fc.nat(), (encoded, cut) => {
        const { bytes } = encoded;
        const parsed = readFrame(bytes);
        assert.ok(parsed !== undefined);
        assert.equal(parsed.consumed, bytes.length);
        assert.ok(parsed.value.raw.equals(bytes), 'the replay is the frame as received');
        assert.deepEqual([parsed.value.type, parsed.value.channel], [1, 0]);
        const method = readMethod(parsed.value.payload);
        assert.equal(method.classId, 10);
        const value = proxyRead(encoded.kind, method.args);
        if (encoded.kind === 'startOk') assert.deepEqual(value, { mechanism: encoded.fields.mechanism, locale: encoded.fields.locale });
        else if (encoded.kind === 'tuneOk') assert.deepEqual(value, { channelMax: encoded.fields.channelMax, frameMax: encoded.fields.frameMax, heartbeat: encoded.fields.heartbeat });
        else assert.equal(value, encoded.fields.virtualHost);
        assert.equal(readFrame(bytes.subarray(0, cut % bytes.length)), undefined);
        assert.equal(readFrame(Buffer.concat([bytes, bytes]))?.consumed, bytes.length);
      }),
    );
  });

  it('mutated frames: wait, an AmqpRefusal, or the fields amqplib reads from the same bytes', (t) => {
    const mutated = fc.tuple(encodedArb, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'drop', 'add')), { minLength: 1, maxLength: 3 })).map(([encoded, edits]) => {
      const bytes = [...encoded.bytes];
      for (const [at, byte, how] of edits) {
        const i = at % (bytes.length + 1);
        if (how === 'set' && i < bytes.length) bytes[i] = byte;
        else if (how === 'drop') bytes.splice(i, 1);
        else if (how === 'add') bytes.splice(i, 0, byte);
      }
      return { kind: encoded.kind, bytes: Buffer.from(bytes) };
    });
    fuzz(
      t,
      fc.property(mutated, ({ kind, bytes }) => {
        let value: unknown;
        let args: Buffer;
        let id: number;
        try {
          const parsed = readFrame(bytes);
          if (parsed === undefined) return;
          const method = readMethod(parsed.value.payload);
          args = method.args;
          id = method.classId * 65536 + method.methodId;
          value = proxyRead(kind, args);
        } catch (err) {
          assert.ok(err instanceof AmqpRefusal, String(err));
          assert.equal(err.kind, 'PROTOCOL');
          assert.ok(typeof err.reply === 'number' && err.reply >= 500 && err.reply <= 506, String(err.reply));
          return;
        }
        const expectedId = kind === 'startOk' ? defs.ConnectionStartOk : kind === 'tuneOk' ? defs.ConnectionTuneOk : defs.ConnectionOpen;
        if (id !== expectedId) return; // the handshake refuses another method by its id (503), not by its arguments
        // amqplib reads arguments leniently (trailing bytes, any UTF-8): where it reads them, it reads the same.
        let reference: Record<string, unknown>;
        try {
          reference = defs.decode(id, args);
        } catch {
          return;
        }
        if (kind === 'startOk') assert.deepEqual(value, { mechanism: reference.mechanism, locale: reference.locale });
        else if (kind === 'tuneOk') assert.deepEqual(value, { channelMax: reference.channelMax, frameMax: reference.frameMax, heartbeat: reference.heartbeat });
        else assert.equal(value, reference.virtualHost);
      }),
    );
  });

  it('the protocol header: exactly AMQP 0-9-1 is accepted, a prefix waits, anything else is answered with the header', (t) => {
    fuzz(
      t,
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b)), fc.tuple(fc.nat(8), fc.uint8Array({ maxLength: 4 })).map(([n, more]) => Buffer.concat([PROTOCOL_HEADER.subarray(0, n), more]))), (bytes) => {
        const n = Math.min(bytes.length, 8);
        const matches = bytes.subarray(0, n).equals(PROTOCOL_HEADER.subarray(0, n));
        if (!matches) {
          assert.throws(() => parseProtocolHeader(bytes), (err: unknown) => err instanceof AmqpRefusal && err.reply === 'header');
          return;
        }
        assert.deepEqual(parseProtocolHeader(bytes), n < 8 ? undefined : { value: true, consumed: 8 });
      }),
    );
  });

  it('Close frames the proxy writes decode in amqplib to the same code, text (cut to 255 bytes on a character) and method', (t) => {
    fuzz(
      t,
      fc.property(fc.integer({ min: 200, max: 599 }), text(0, 300), fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }), (code, reason, classId, methodId) => {
        const frame = closeFrame(code, reason, classId, methodId);
        const parsed = readFrame(frame);
        assert.ok(parsed !== undefined && parsed.consumed === frame.length);
        const fields = defs.decode(defs.ConnectionClose, readMethod(parsed.value.payload).args);
        assert.equal(fields.replyCode, code);
        assert.equal(fields.classId, classId);
        assert.equal(fields.methodId, methodId);
        const said = fields.replyText as string;
        assert.ok(Buffer.byteLength(said) <= 255);
        assert.ok(reason.startsWith(said), 'a prefix of the text, cut on a character boundary');
        if (Buffer.byteLength(reason) <= 255) assert.equal(said, reason);
      }),
    );
  });
});
