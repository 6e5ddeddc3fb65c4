/**
 * Fuzzing the MySQL parsers (issue 15): packets, greetings, handshake
 * responses and ERR packets round-trip and refuse only with PROTOCOL; the
 * USE scanner (one SqlReading per sql_mode quoting rule, and the UseScanner
 * that unions them) finds the same USE statements as a reference tokenizer
 * written here with regular expressions after MySQL's lexer (sql_lex.cc),
 * on SQL-ish text built from quotes, backslashes, comments, executable
 * comments, semicolons and USE statements, fed whole or in pieces.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PolyproxyError } from '../../src/core/errors.ts';
import {
  ANSI_QUOTES_QUOTING,
  DEFAULT_QUOTING,
  MAX_NAME_BYTES,
  NO_BACKSLASH_ESCAPES_QUOTING,
  SqlReading,
  UseScanner,
  changeUserDatabase,
} from '../../src/protocols/mysql/commands.ts';
import type { QuotingRules } from '../../src/protocols/mysql/commands.ts';
import {
  CLIENT_CONNECT_ATTRS,
  CLIENT_CONNECT_WITH_DB,
  CLIENT_PLUGIN_AUTH,
  CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
  CLIENT_PROTOCOL_41,
  CLIENT_SECURE_CONNECTION,
  buildGreeting,
  buildHandshakeResponse,
  encodePacket,
  errPacket,
  lenencBytes,
  packetParser,
  parseErr,
  parseGreeting,
  parseHandshakeResponse,
} from '../../src/protocols/mysql/packets.ts';
import { chunked, cuts, fuzz, text } from '../helpers/fuzz.ts';

function protocolErrorOr<T>(run: () => T): T | 'PROTOCOL' {
  try {
    return run();
  } catch (err) {
    assert.ok(err instanceof PolyproxyError && err.kind === 'PROTOCOL', `unexpected ${String(err)}`);
    return 'PROTOCOL';
  }
}

const bytes = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));

// --- packets -------------------------------------------------------------------

describe('MySQL packets', () => {
  it('packetParser waits, refuses or frames as the header says (3-byte length, sequence id)', (t) => {
    const max = 64;
    const parse = packetParser(max);
    const framed = fc.tuple(fc.integer({ min: 0, max: 80 }), fc.integer({ min: 0, max: 255 }), bytes).map(([length, seq, rest]) => {
      const head = Buffer.alloc(4);
      head.writeUIntLE(length, 0, 3);
      head[3] = seq;
      return Buffer.concat([head, rest]);
    });
    fuzz(
      t,
      fc.property(fc.oneof(bytes, framed), (b) => {
        const expected = b.length < 4 ? undefined : b.readUIntLE(0, 3) > max ? 'PROTOCOL' : b.length < 4 + b.readUIntLE(0, 3) ? undefined : { value: { seq: b[3], payload: b.subarray(4, 4 + b.readUIntLE(0, 3)) }, consumed: 4 + b.readUIntLE(0, 3) };
        assert.deepStrictEqual(protocolErrorOr(() => parse(b)), expected);
      }),
    );
  });

  it('encoded packets come back one by one from a growing buffer, however the stream is chunked', (t) => {
    const parse = packetParser(400);
    fuzz(
      t,
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), bytes), { maxLength: 6 }), cuts, (packets, points) => {
        const stream = Buffer.concat(packets.map(([seq, payload]) => encodePacket(seq, payload)));
        const got: Array<[number, Buffer]> = [];
        let buffered = Buffer.alloc(0);
        for (const chunk of chunked(stream, points)) {
          buffered = Buffer.concat([buffered, chunk]);
          for (let done = parse(buffered); done !== undefined; done = parse(buffered)) {
            got.push([done.value.seq, done.value.payload]);
            buffered = buffered.subarray(done.consumed);
          }
        }
        assert.equal(buffered.length, 0);
        assert.deepStrictEqual(got, packets);
      }),
    );
  });

  it('greetings round-trip; any bytes parse or fail only with PROTOCOL', (t) => {
    // Names are read as Latin-1: any bytes but NUL.
    const latin1Name = fc.uint8Array({ minLength: 1, maxLength: 30 }).map((a) => Buffer.from(a.map((byte) => byte || 0x61)).toString('latin1'));
    const greeting = fc.record({
      serverVersion: latin1Name,
      connectionId: fc.integer({ min: 0, max: 0xffffffff }),
      // The built-in plugins' 20-byte challenge; its second part is NUL-terminated on the wire.
      scramble: fc.tuple(fc.uint8Array({ minLength: 8, maxLength: 8 }), fc.uint8Array({ minLength: 12, maxLength: 12 }).map((a) => a.map((byte) => byte || 1))).map(([a, b]) => Buffer.concat([a, b])),
      capabilities: fc.integer({ min: 0, max: 0xffffffff }).map((caps) => (caps | CLIENT_SECURE_CONNECTION) >>> 0),
      charset: fc.integer({ min: 0, max: 255 }),
      status: fc.integer({ min: 0, max: 0xffff }),
      plugin: fc.oneof(fc.constantFrom('mysql_native_password', 'caching_sha2_password'), latin1Name),
    });
    fuzz(
      t,
      fc.property(greeting, bytes, (g, junk) => {
        const expected = { ...g, plugin: (g.capabilities & CLIENT_PLUGIN_AUTH) !== 0 ? g.plugin : '' };
        assert.deepStrictEqual(parseGreeting(buildGreeting(g)), expected);
        protocolErrorOr(() => parseGreeting(junk));
        protocolErrorOr(() => parseGreeting(Buffer.concat([Buffer.from([10]), junk])));
      }),
    );
  });

  it('a handshake response the proxy accepts, rebuilt for the backend, re-parses to the same fields', (t) => {
    /** Mostly-valid answers: PROTOCOL_41 set, and fields shaped by the capability flags. */
    const response = fc
      .record({
        caps: fc.integer({ min: 0, max: 0xffffffff }),
        user: fc.uint8Array({ maxLength: 12 }),
        auth: fc.uint8Array({ maxLength: 40 }),
        db: fc.uint8Array({ maxLength: 12 }),
        plugin: fc.uint8Array({ maxLength: 12 }),
        attrs: fc.array(fc.tuple(fc.uint8Array({ maxLength: 8 }), fc.uint8Array({ maxLength: 8 })), { maxLength: 3 }),
        tail: fc.uint8Array({ maxLength: 4 }),
        cut: fc.option(fc.nat()),
      })
      .map(({ caps, user, auth, db, plugin, attrs, tail, cut }) => {
        const capabilities = (caps | CLIENT_PROTOCOL_41) >>> 0;
        const head = Buffer.alloc(32);
        head.writeUInt32LE(capabilities, 0);
        const noNul = (a: Uint8Array): Buffer => Buffer.from(a.filter((byte) => byte !== 0));
        const parts: Buffer[] = [head, noNul(user), Buffer.from([0])];
        if ((capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) !== 0) parts.push(lenencBytes(Buffer.from(auth)));
        else if ((capabilities & CLIENT_SECURE_CONNECTION) !== 0) parts.push(Buffer.from([auth.length]), Buffer.from(auth));
        else parts.push(noNul(auth), Buffer.from([0]));
        if ((capabilities & CLIENT_CONNECT_WITH_DB) !== 0) parts.push(noNul(db), Buffer.from([0]));
        if ((capabilities & CLIENT_PLUGIN_AUTH) !== 0) parts.push(noNul(plugin), Buffer.from([0]));
        if ((capabilities & CLIENT_CONNECT_ATTRS) !== 0) parts.push(lenencBytes(Buffer.concat(attrs.flatMap(([k, v]) => [lenencBytes(Buffer.from(k)), lenencBytes(Buffer.from(v))]))));
        parts.push(Buffer.from(tail));
        const payload = Buffer.concat(parts);
        return cut === null ? payload : payload.subarray(0, cut % (payload.length + 1));
      });
    fuzz(
      t,
      fc.property(fc.oneof(response, bytes), (payload) => {
        const first = protocolErrorOr(() => parseHandshakeResponse(payload));
        if (first === 'PROTOCOL' || first.type === 'ssl') return;
        const again = parseHandshakeResponse(buildHandshakeResponse(first));
        assert.equal(again.type, 'response');
        if (again.type !== 'response') return;
        const meaning = (r: typeof again): unknown => ({
          capabilities: r.capabilities,
          maxPacket: r.maxPacket,
          charset: r.charset,
          user: r.user,
          authResponse: r.authResponse,
          database: r.database,
          plugin: r.plugin,
          // No attributes block and an empty one say the same.
          attributes: [...(r.attributes ?? [])],
        });
        assert.deepStrictEqual(meaning(again), meaning(first));
      }),
    );
  });

  it('ERR packets round-trip code, SQLSTATE and message; any ERR payload parses or fails only with PROTOCOL', (t) => {
    const parse = packetParser(0xffffff);
    fuzz(
      t,
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.option(fc.stringMatching(/^[0-9A-Z]{5}$/)),
        text(0, 40),
        bytes,
        (code, sqlState, message, junk) => {
          // Without a SQLSTATE (errors sent before the client's answer) a message starting "#xxxxx" would read as one.
          fc.pre(sqlState !== null || !message.startsWith('#'));
          const packet = parse(errPacket(1, code, sqlState, message));
          assert.ok(packet !== undefined);
          assert.deepStrictEqual(parseErr(packet.value.payload), { code, sqlState, message });
          protocolErrorOr(() => parseErr(Buffer.concat([Buffer.from([0xff]), junk])));
        },
      ),
    );
  });

  it('COM_CHANGE_USER names the database it was built with, and never throws on any bytes', (t) => {
    fuzz(
      t,
      fc.property(fc.boolean(), fc.uint8Array({ maxLength: 10 }), fc.uint8Array({ maxLength: 30 }), fc.string({ maxLength: 12 }).filter((db) => !db.includes('\0')), bytes, (secure, user, auth, db, junk) => {
        const noNul = (a: Uint8Array): Buffer => Buffer.from(a.filter((byte) => byte !== 0));
        const authPart = secure ? Buffer.concat([Buffer.from([auth.length]), auth]) : Buffer.concat([noNul(auth), Buffer.from([0])]);
        const payload = Buffer.concat([Buffer.from([0x11]), noNul(user), Buffer.from([0]), authPart, Buffer.from(`${db}\0`), Buffer.from([0x21, 0])]);
        assert.equal(changeUserDatabase(payload, secure ? CLIENT_SECURE_CONNECTION : 0), db);
        const got = changeUserDatabase(Buffer.concat([Buffer.from([0x11]), junk]), secure ? CLIENT_SECURE_CONNECTION : 0);
        assert.ok(got === null || typeof got === 'string');
      }),
    );
  });
});

// --- the USE scanner -----------------------------------------------------------

/**
 * The reference: MySQL's lexer as regular expressions tried at each
 * position. Trivia: whitespace, `#...` and `--<space or control>...` to
 * the end of the line, `/* ... *\/`, and the `/*!`, `/*M!` (plus version
 * digits) and `*\/` that open and close an executable comment, whose
 * content is code. Strings and quoted identifiers end by the quoting
 * rules. A statement (after `;`) whose first word is USE names the next
 * word or quoted name (doubled quotes are literal, no escapes), read as
 * UTF-8, cut at MAX_NAME_BYTES with an ellipsis.
 */
const WHITESPACE = /[\t\n\v\f\r ]+/y;
// eslint-disable-next-line no-control-regex -- MySQL: `--` then any control character opens a comment
const LINE_COMMENT = /#[^\n]*|--(?:\n|[\x00-\x09\x0b-\x20\x7f][^\n]*)/y;
const EXEC_OPEN = /\/\*M?!\d*/y;
const BLOCK_COMMENT = /\/\*[\s\S]*?(?:\*\/|$)/y;
const EXEC_CLOSE = /\*\//y;
const WORD = /[A-Za-z0-9_$\x80-\xff]+/y;

function quotePattern(quote: string, escapes: boolean): RegExp {
  return escapes ? new RegExp(`${quote}(?:[^${quote}\\\\]|\\\\[\\s\\S])*(?:${quote}|\\\\?$)`, 'y') : new RegExp(`${quote}[^${quote}]*(?:${quote}|$)`, 'y');
}

function referenceUse(sql: string, rules: QuotingRules): string[] | null {
  const quotes: Record<string, RegExp> = { "'": quotePattern("'", rules.escapeInSingle), '"': quotePattern('"', rules.escapeInDouble), '`': quotePattern('`', false) };
  const found: string[] = [];
  let exec = false;
  let at = 0;
  const match = (pattern: RegExp): string | null => {
    pattern.lastIndex = at;
    const m = pattern.exec(sql);
    if (m === null) return null;
    at += m[0].length;
    return m[0];
  };
  /** Skips one piece of trivia; false when the next character is something else. */
  const trivia = (): boolean => {
    if (match(WHITESPACE) !== null || match(LINE_COMMENT) !== null) return true;
    if (match(EXEC_OPEN) !== null) {
      exec = true;
      return true;
    }
    if (match(BLOCK_COMMENT) !== null) return true;
    if (exec && match(EXEC_CLOSE) !== null) {
      exec = false;
      return true;
    }
    return false;
  };
  const emit = (latin1: string): void => {
    const name = Buffer.from(latin1, 'latin1');
    found.push(name.length > MAX_NAME_BYTES ? `${name.toString('utf8', 0, MAX_NAME_BYTES)}\u2026` : name.toString('utf8'));
  };
  let mode: 'start' | 'gap' | 'body' = 'start';
  while (at < sql.length) {
    if (mode !== 'body' && trivia()) continue;
    if (mode === 'start') {
      if (sql[at] === ';') {
        at++;
        continue;
      }
      const word = match(WORD);
      mode = word !== null && word.toLowerCase() === 'use' ? 'gap' : 'body';
      continue;
    }
    if (mode === 'gap') {
      mode = 'body';
      const quote = sql[at] as string;
      if (quote in quotes) {
        // Up to the first lone closing quote, or the end of the text.
        const name = new RegExp(`${quote}((?:[^${quote}]|${quote}${quote})*)`, 'y');
        name.lastIndex = at;
        const inner = (name.exec(sql) as RegExpExecArray)[1] as string;
        at += 1 + inner.length + (sql[at + 1 + inner.length] === quote ? 1 : 0);
        emit(inner.replaceAll(quote + quote, quote));
        continue;
      }
      const word = match(WORD);
      if (word !== null) emit(word);
      continue;
    }
    // Body: comments and executable-comment marks, strings, `;`, anything else one character at a time.
    if (sql[at] === ';') {
      at++;
      mode = 'start';
      continue;
    }
    if (trivia()) continue;
    const quote = quotes[sql[at] as string];
    if (quote !== undefined) {
      match(quote);
      continue;
    }
    if (match(WORD) === null) at++;
  }
  return found.length === 0 ? null : found;
}

/** SQL-ish text: pieces that open and close strings, comments and statements, mixed with USE statements. */
const sqlPiece = fc.oneof(
  { arbitrary: fc.constantFrom('use ', 'USE', 'use', 'Use `a`', 'use db1', 'use "db 2"', "use 'x''y'", 'use `a``b`', 'select ', 'user', ' ', '\n', '\t', '\r\n'), weight: 6 },
  { arbitrary: fc.constantFrom("'", '"', '`', '\\', "\\'", '\\"', "''", '""', ';', '; ', '#', '-- ', '--', '-', '---', '--\n', '--\x01', '/*', '*/', '/*!', '/*!50000', '/*M!', '/*M', '*', '/', '!', '.', '@'), weight: 8 },
  { arbitrary: fc.stringMatching(/^[a-z0-9_$]{1,6}$/), weight: 2 },
  fc.constantFrom('é', '\u00ff', '\x7f', '\x0b'),
);
const sqlish = fc.array(sqlPiece, { maxLength: 24 }).map((pieces) => Buffer.from(pieces.join(''), 'utf8'));
const READINGS: ReadonlyArray<[string, QuotingRules]> = [
  ['default', DEFAULT_QUOTING],
  ['ANSI_QUOTES', ANSI_QUOTES_QUOTING],
  ['NO_BACKSLASH_ESCAPES', NO_BACKSLASH_ESCAPES_QUOTING],
];

function readChunks(rules: QuotingRules, chunks: readonly Buffer[]): string[] | null {
  const reading = new SqlReading(rules);
  for (const chunk of chunks) reading.feed(chunk, 0, chunk.length);
  reading.finish();
  return reading.found;
}

describe('MySQL USE scanner', () => {
  for (const [name, rules] of READINGS) {
    it(`reads ${name} quoting as the reference tokenizer does, whole or in pieces`, (t) => {
      fuzz(
        t,
        fc.property(sqlish, cuts, (sql, points) => {
          const expected = referenceUse(sql.toString('latin1'), rules);
          assert.deepStrictEqual(readChunks(rules, [sql]), expected, 'whole');
          assert.deepStrictEqual(readChunks(rules, chunked(sql, points)), expected, 'in pieces');
        }),
      );
    });
  }

  it('UseScanner reports the union of the three readings, scanned whole (lazy re-reads) or streamed in pieces', (t) => {
    fuzz(
      t,
      fc.property(fc.oneof(sqlish, bytes), cuts, (sql, points) => {
        const union = new Set(READINGS.flatMap(([, rules]) => readChunks(rules, [sql]) ?? []));
        const scanner = new UseScanner();
        const whole = scanner.scan(sql, 0, sql.length);
        assert.deepStrictEqual(new Set(whole ?? []), union);
        assert.equal(whole === null, union.size === 0);
        for (const chunk of chunked(sql, points)) scanner.feed(chunk, 0, chunk.length);
        scanner.finish();
        assert.deepStrictEqual(scanner.found, whole);
      }),
    );
  });
});
