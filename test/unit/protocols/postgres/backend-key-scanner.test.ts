/**
 * BackendKeyScanner over the messages a backend sends after the
 * StartupMessage (protocol-flow.html#PROTOCOL-FLOW-START-UP): Authentication,
 * ParameterStatus, BackendKeyData, ReadyForQuery — or an ErrorResponse.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BackendKeyScanner } from '../../../../src/protocols/postgres/parse.ts';
import { hex } from './wire.ts';

//                     type | length   | body
const AUTH_OK = hex('52     | 00000008 | 00000000');
const PARAM_SERVER_VERSION = hex('53 | 00000018 | 7365727665725f76657273696f6e00 31362e3200'); // server_version=16.2
const PARAM_CLIENT_ENCODING = hex('53 | 00000019 | 636c69656e745f656e636f64696e6700 5554463800'); // client_encoding=UTF8
const PARAM_DATESTYLE = hex('53 | 00000017 | 446174655374796c6500 49534f2c204d445900'); // DateStyle=ISO, MDY
//                    type | length | pid 12345 | secret (3.0: 4 bytes)
const KEY_DATA = hex('4b  | 0000000c | 00003039 | deadbeef');
const KEY_HEX = '00003039deadbeef';
const READY_IDLE = hex('5a | 00000005 | 49'); // ReadyForQuery, idle
// ErrorResponse: S FATAL, V FATAL, C 28P01, M password authentication failed for user "alice"
const AUTH_FAILED = hex(`45 | 0000004b |
  53464154414c00 56464154414c00 433238503031 00
  4d70617373776f72642061757468656e7469636174696f6e206661696c656420666f7220757365722022616c69636522 00
  00`);

const STARTUP = [AUTH_OK, PARAM_SERVER_VERSION, PARAM_CLIENT_ENCODING, PARAM_DATESTYLE, KEY_DATA, READY_IDLE];
const STREAM = Buffer.concat(STARTUP);
/** Offset just past the K message: the key is known from there on. */
const KEY_END = Buffer.concat(STARTUP.slice(0, 5)).length;

function scan(chunks: readonly Buffer[]): BackendKeyScanner {
  const scanner = new BackendKeyScanner();
  for (const chunk of chunks) scanner.push(chunk);
  return scanner;
}

describe('BackendKeyScanner', () => {
  it('finds the key as hex of pid + secret and is done after ReadyForQuery, fed whole', () => {
    const scanner = new BackendKeyScanner();
    assert.equal(scanner.push(STREAM), true);
    assert.equal(scanner.key, KEY_HEX);
    assert.equal(scanner.done, true);
  });

  it('is not done before ReadyForQuery has fully arrived', () => {
    const scanner = new BackendKeyScanner();
    assert.equal(scanner.push(STREAM.subarray(0, STREAM.length - 1)), false);
    assert.equal(scanner.key, KEY_HEX);
    assert.equal(scanner.done, false);
    assert.equal(scanner.push(STREAM.subarray(STREAM.length - 1)), true);
  });

  it('learns the key exactly when the last byte of BackendKeyData arrives and is done exactly at the last byte, byte by byte', () => {
    const scanner = new BackendKeyScanner();
    for (let i = 0; i < STREAM.length; i++) {
      const done = scanner.push(STREAM.subarray(i, i + 1));
      const fed = i + 1;
      assert.equal(scanner.key, fed >= KEY_END ? KEY_HEX : null, `after ${fed} bytes`);
      assert.equal(done, fed === STREAM.length, `after ${fed} bytes`);
      assert.equal(scanner.done, done);
    }
  });

  it('finds the key when the stream is split at every offset', () => {
    for (let cut = 0; cut <= STREAM.length; cut++) {
      const scanner = new BackendKeyScanner();
      const firstDone = scanner.push(STREAM.subarray(0, cut));
      assert.equal(firstDone, cut === STREAM.length, `cut at ${cut}`);
      assert.equal(scanner.key, cut >= KEY_END ? KEY_HEX : null, `cut at ${cut}`);
      assert.equal(scanner.push(STREAM.subarray(cut)), true, `cut at ${cut}`);
      assert.equal(scanner.key, KEY_HEX, `cut at ${cut}`);
    }
  });

  it('finds the key when the stream is split at every pair of offsets', () => {
    for (let a = 0; a <= STREAM.length; a++) {
      for (let b = a; b <= STREAM.length; b++) {
        const scanner = scan([STREAM.subarray(0, a), STREAM.subarray(a, b), STREAM.subarray(b)]);
        assert.equal(scanner.done, true, `cuts at ${a}, ${b}`);
        assert.equal(scanner.key, KEY_HEX, `cuts at ${a}, ${b}`);
      }
    }
  });

  it('ignores what follows ReadyForQuery (a later K is query traffic, not the session key)', () => {
    const other = hex('4b 0000000c 00000001 00000002');
    const scanner = scan([STREAM, other]);
    assert.equal(scanner.key, KEY_HEX);
    assert.equal(scanner.push(other), true);
    assert.equal(scanner.key, KEY_HEX);
  });

  it('reads a 3.2 BackendKeyData with a 32-byte secret', () => {
    const secret = '00112233445566778899aabbccddeeff'.repeat(2);
    // NegotiateProtocolVersion is not expected here; 3.2 servers just send a longer K.
    const key32 = hex(`4b | 00000028 | 0000d431 | ${secret}`);
    const stream = Buffer.concat([AUTH_OK, PARAM_SERVER_VERSION, key32, READY_IDLE]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const scanner = scan([stream.subarray(0, cut), stream.subarray(cut)]);
      assert.equal(scanner.done, true);
      assert.equal(scanner.key, `0000d431${secret}`, `cut at ${cut}`);
    }
  });

  it('accepts the largest BackendKeyData: pid + 256-byte secret', () => {
    const key = Buffer.concat([hex('4b 00000108 00000007'), Buffer.alloc(256, 0xcd)]);
    const scanner = scan([AUTH_OK, key, READY_IDLE]);
    assert.equal(scanner.done, true);
    assert.equal(scanner.key, '00000007' + 'cd'.repeat(256));
  });

  it('skips a message with an empty body without losing its place', () => {
    const empty = hex('6e 00000004'); // NoData: header only
    const stream = Buffer.concat([AUTH_OK, empty, KEY_DATA, empty, READY_IDLE]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const scanner = scan([stream.subarray(0, cut), stream.subarray(cut)]);
      assert.equal(scanner.done, true, `cut at ${cut}`);
      assert.equal(scanner.key, KEY_HEX, `cut at ${cut}`);
    }
  });

  it('is done without a key when the backend answers with an ErrorResponse', () => {
    const stream = Buffer.concat([AUTH_OK, PARAM_SERVER_VERSION, AUTH_FAILED]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const scanner = new BackendKeyScanner();
      assert.equal(scanner.push(stream.subarray(0, cut)), cut === stream.length, `cut at ${cut}`);
      assert.equal(scanner.push(stream.subarray(cut)), true, `cut at ${cut}`);
      assert.equal(scanner.key, null);
    }
    // Byte by byte: done exactly at the ErrorResponse's last byte.
    const scanner = new BackendKeyScanner();
    for (let i = 0; i < stream.length; i++) assert.equal(scanner.push(stream.subarray(i, i + 1)), i === stream.length - 1, `byte ${i}`);
  });

  it('stops scanning, without a key and without throwing, on a BackendKeyData of absurd length', () => {
    const absurd = hex('4b ffffffff 00003039 deadbeef');
    const scanner = new BackendKeyScanner();
    assert.doesNotThrow(() => scanner.push(Buffer.concat([AUTH_OK, absurd, READY_IDLE])));
    assert.equal(scanner.done, true);
    assert.equal(scanner.key, null);
    // Split inside the header: stops as soon as the length is known.
    const split = new BackendKeyScanner();
    assert.equal(split.push(Buffer.concat([AUTH_OK, absurd.subarray(0, 3)])), false);
    assert.equal(split.push(absurd.subarray(3, 5)), true);
    assert.equal(split.key, null);
  });

  it('stops scanning on BackendKeyData bodies too short or too long for any protocol version', () => {
    for (const bad of [
      hex('4b 00000008 00003039'), // 4-byte body: pid only
      hex('4b 0000000b 00003039 deadbe'), // 7-byte body
      Buffer.concat([hex('4b 00000109 00003039'), Buffer.alloc(257)]), // 261-byte body: secret > 256
    ]) {
      const scanner = scan([AUTH_OK, bad, KEY_DATA, READY_IDLE]);
      assert.equal(scanner.done, true, bad.subarray(0, 5).toString('hex'));
      assert.equal(scanner.key, null, bad.subarray(0, 5).toString('hex'));
    }
  });

  it('stops scanning on a length below 4, which no PostgreSQL message has', () => {
    const scanner = scan([AUTH_OK, hex('53 00000003'), KEY_DATA, READY_IDLE]);
    assert.equal(scanner.done, true);
    assert.equal(scanner.key, null);
  });
});
