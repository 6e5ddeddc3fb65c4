/**
 * Fuzzing the SMTP parsers (issue 15): command lines and replies, fed in
 * any pieces, end as references written here from RFC 5321 decide
 * (4.5.3.1.4 line limits, 4.2.1 reply lines); what the proxy accepts
 * re-parses to the same meaning once formatted again (commands, replies,
 * the rewritten EHLO reply); EHLO domains and MAIL/RCPT paths built from
 * the RFC 5321 grammar (4.1.2) read back their domain; the RCPT guard
 * (routeBy: rcpt) lets no recipient of another backend through, whatever
 * the session and however it is cut.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PolyproxyError } from '../../src/core/errors.ts';
import { COMMAND_LINE_LIMIT, commandLineParser, formatReply, heloDomain, parseCommand, parsePath, replyParser, rewriteEhloReply } from '../../src/protocols/smtp/parse.ts';
import type { Reply } from '../../src/protocols/smtp/parse.ts';
import { chunked, cuts, fuzz, fuzzAsync, text } from '../helpers/fuzz.ts';
import { SAME_BACKEND, run } from '../helpers/smtp-rcpt-session.ts';

type Outcome<T> = { value: T; consumed: number } | 'reject' | 'wait';

function isProtocolError(err: unknown): boolean {
  return err instanceof PolyproxyError && err.kind === 'PROTOCOL';
}

/** Feeds chunks into a growing buffer as ClientConnection does; the first result, refusal, or wait. */
function feedParser<T>(parse: (buffered: Buffer) => { value: T; consumed: number } | undefined, chunks: readonly Buffer[]): Outcome<T> {
  let buffered = Buffer.alloc(0);
  for (const chunk of chunks) {
    buffered = Buffer.concat([buffered, chunk]);
    try {
      const done = parse(buffered);
      if (done !== undefined) return done;
    } catch (err) {
      assert.ok(isProtocolError(err), `unexpected ${String(err)}`);
      return 'reject';
    }
  }
  return 'wait';
}

// --- command lines -------------------------------------------------------------

/**
 * The reference (RFC 5321 4.5.3.1.4): a line ends at LF (CRLF, or a bare
 * LF); with its line ending it may be 512 octets, or `max` when it is MAIL
 * or RCPT (parameters, UTF-8 addresses). The value is the line without its
 * ending, as UTF-8.
 */
function referenceLine(bytes: Buffer, max: number): Outcome<string> {
  const long = /^(?:MAIL|RCPT) /i.test(bytes.toString('latin1', 0, 5));
  const limit = long ? Math.max(max, COMMAND_LINE_LIMIT) : COMMAND_LINE_LIMIT;
  const lf = bytes.indexOf(0x0a);
  // `limit` bytes without a line ending cannot end within the limit any more.
  if (lf < 0) return bytes.length >= limit ? 'reject' : 'wait';
  if (lf + 1 > limit) return 'reject';
  const line = bytes.subarray(0, lf);
  return { value: line.toString('utf8', 0, line.at(-1) === 0x0d ? line.length - 1 : line.length), consumed: lf + 1 };
}

const lineBytes = fc
  .tuple(
    fc.constantFrom('MAIL FROM:<a@b>', 'RCPT TO:<c@d>', 'rcpt to:', 'EHLO x', 'HELO', 'DATA', 'MAIL', 'RCPT', 'mail ', 'NOOP ', ''),
    fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 480, max: 560 }), fc.integer({ min: 1000, max: 1100 })),
    fc.constantFrom('a', 'é', ' ', '\r', '\0'),
    fc.constantFrom('\r\n', '\n', '', '\r\r\n'),
    fc.uint8Array({ maxLength: 20 }),
  )
  .map(([start, padding, fill, end, after]) => Buffer.concat([Buffer.from(start + fill.repeat(padding) + end), after]));

describe('SMTP command lines', () => {
  it('end, wait or are refused as the RFC 5321 limits say, fed in any pieces', (t) => {
    const max = 1024;
    const parse = commandLineParser(max);
    fuzz(
      t,
      fc.property(fc.oneof(lineBytes, fc.uint8Array({ maxLength: 600 }).map((raw) => Buffer.from(raw))), cuts, (bytes, points) => {
        const actual = feedParser(parse, chunked(bytes, points));
        const expected = referenceLine(bytes, max);
        // The parser may wait for one more byte before refusing a line exactly at the 512 limit.
        if (actual === 'wait' && expected === 'reject' && bytes.length === COMMAND_LINE_LIMIT) return;
        assert.deepStrictEqual(actual, expected);
      }),
    );
  });

  it('a parsed command, written as verb and argument again, parses the same', (t) => {
    fuzz(
      t,
      fc.property(fc.oneof(text(0, 30), fc.stringMatching(/^[A-Za-z]{2,5}( {1,3}[ -~]{0,20})?$/)), (line) => {
        const command = parseCommand(line);
        assert.equal(command.verb, command.verb.toUpperCase());
        assert.deepStrictEqual(parseCommand(`${command.verb} ${command.arg}`), command);
      }),
    );
  });
});

// --- EHLO domains and MAIL/RCPT paths -------------------------------------------

/**
 * The reference for EHLO/HELO: the first word; an address literal
 * `[...]` as is, else dot-separated labels of letters, digits, '_' and '-'
 * (a trailing dot allowed and dropped), lowercased.
 */
function referenceHelo(arg: string): string | 'reject' {
  const first = arg.split(' ')[0] as string;
  if (first === '' || first.length > 255) return 'reject';
  if (first.startsWith('[') && first.endsWith(']') && first.length > 2 && [...first.slice(1, -1)].every((c) => c >= '!' && c <= '~' && c !== '[' && c !== '\\' && c !== ']')) return first;
  const name = first.endsWith('.') ? first.slice(0, -1) : first;
  const labelOk = (label: string): boolean => label !== '' && [...label].every((c) => c === '_' || c === '-' || /^[\p{L}\p{N}]$/u.test(c));
  return name.split('.').every(labelOk) ? name.toLowerCase() : 'reject';
}

const label = fc.oneof(fc.stringMatching(/^[A-Za-z0-9_-]{1,8}$/), fc.constantFrom('xn--bcher-kva', 'bücher', 'Ωmega', 'x1'));
const domainArb = fc.array(label, { minLength: 1, maxLength: 4 }).map((labels) => labels.join('.'));

describe('SMTP EHLO domains', () => {
  it('accept and normalise as the label reference does; a result reads back as itself', (t) => {
    const arg = fc.oneof(
      fc.tuple(domainArb, fc.constantFrom('', '.', '..', ' more', '.x y')).map(([domain, tail]) => domain + tail),
      fc.constantFrom('[127.0.0.1]', '[IPv6:::1]', '[a]b', '[]', '[x\\]', ' lead', ''),
      text(0, 20),
    );
    fuzz(
      t,
      fc.property(arg, (value) => {
        let actual: string;
        try {
          actual = heloDomain(value);
        } catch (err) {
          assert.ok(isProtocolError(err), String(err));
          actual = 'reject';
        }
        assert.equal(actual, referenceHelo(value));
        if (actual !== 'reject') assert.equal(heloDomain(actual), actual);
      }),
    );
  });
});

/** RFC 5321 4.1.2 atext, for Dot-string local parts. */
const atom = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,8}$/);
/** Quoted-string: qtextSMTP or a backslash pair, which may hold '>', '@', spaces and quotes. */
const quotedString = fc
  .array(fc.oneof(fc.stringMatching(/^[ !#-[\]-~]$/), fc.constantFrom('>', '@', ' ', '<', ':'), fc.stringMatching(/^\\[ -~]$/)), { maxLength: 8 })
  .map((parts) => `"${parts.join('')}"`);
const localPart = fc.oneof(fc.array(atom, { minLength: 1, maxLength: 3 }).map((atoms) => atoms.join('.')), quotedString);
const mailbox = fc.tuple(localPart, domainArb).map(([local, domain]) => ({ address: `${local}@${domain}`, domain: domain.toLowerCase() }));
const params = fc.constantFrom('', 'SIZE=100', 'BODY=8BITMIME SMTPUTF8', 'NOTIFY=NEVER');

describe('SMTP MAIL/RCPT paths', () => {
  it('a path built from the RFC 5321 grammar reads back its address, domain and parameters', (t) => {
    fuzz(
      t,
      fc.property(
        mailbox,
        fc.constantFrom('FROM', 'TO'),
        fc.constantFrom('', ' '),
        fc.constantFrom('', '@relay.example:', '@a.example,@b.example:'),
        params,
        fc.boolean(),
        ({ address, domain }, keyword: 'FROM' | 'TO', space, route, extra, brackets) => {
          // Without brackets (a lenient form) the path ends at the first space outside quotes.
          const path = brackets ? `<${route}${address}>` : address;
          const arg = `${keyword}:${space}${path}${extra === '' ? '' : ` ${extra}`}`;
          assert.deepStrictEqual(parsePath(arg, keyword), { address, domain, params: extra });
        },
      ),
    );
  });

  it('any argument parses or is refused with a 501, and what parses reads back the same once written in brackets', (t) => {
    fuzz(
      t,
      fc.property(fc.oneof(text(0, 40), fc.tuple(fc.constantFrom('TO:', 'FROM:', 'to: ', 'TO:<'), text(0, 30)).map(([a, b]) => a + b)), fc.constantFrom('FROM', 'TO'), (arg, keyword: 'FROM' | 'TO') => {
        let path: ReturnType<typeof parsePath>;
        try {
          path = parsePath(arg, keyword);
        } catch (err) {
          assert.ok(isProtocolError(err), String(err));
          return;
        }
        // An address with '>', a space or an unclosed quote outside quoted strings (the bracket-less form) cannot be written back unchanged.
        fc.pre(!/[>" ]/.test(path.address.replace(/"(?:[^"\\]|\\.)*"/g, '')));
        assert.deepStrictEqual(parsePath(`${keyword}:<${path.address}>${path.params === '' ? '' : ` ${path.params}`}`, keyword), path);
      }),
    );
  });
});

// --- replies -------------------------------------------------------------------

/**
 * The reference (RFC 5321 4.2.1): lines of a 2xx..5xx code, then '-' (more
 * follow) or ' ' or nothing (the last), every line with the same code; the
 * whole reply at most `maxBytes`.
 */
function referenceReply(bytes: Buffer, maxBytes: number): Outcome<{ code: number; lines: string[] }> {
  const lines: string[] = [];
  let code: number | null = null;
  let at = 0;
  for (;;) {
    const lf = bytes.indexOf(0x0a, at);
    if (lf < 0) return bytes.length > maxBytes ? 'reject' : 'wait';
    if (lf + 1 > maxBytes) return 'reject';
    const raw = bytes.subarray(at, lf);
    const line = raw.toString('utf8', 0, raw.at(-1) === 0x0d ? raw.length - 1 : raw.length);
    at = lf + 1;
    const m = /^([2-5][0-9][0-9])(?:([ -])([\s\S]*))?$/.exec(line);
    if (m === null || (code !== null && Number(m[1]) !== code)) return 'reject';
    code = Number(m[1]);
    lines.push(m[3] ?? '');
    if (m[2] !== '-') return { value: { code, lines }, consumed: at };
  }
}

const replyBytes = fc
  .tuple(
    fc.constantFrom(250, 220, 550, 199, 600),
    fc.array(fc.tuple(fc.constantFrom('-', ' ', '', '+'), fc.oneof(fc.constantFrom('PIPELINING', 'SIZE 100', 'STARTTLS', '8BITMIME', 'x\r'), text(0, 12, '\n'))), { minLength: 1, maxLength: 5 }),
    fc.constantFrom('\r\n', '\n'),
    fc.boolean(),
    fc.uint8Array({ maxLength: 12 }),
  )
  .map(([code, lines, newline, sameCode, after]) =>
    Buffer.concat([Buffer.from(lines.map(([sep, line], i) => `${sameCode || i === 0 ? code : code + 1}${sep}${sep === '' ? '' : line}${newline}`).join('')), after]),
  );

describe('SMTP replies', () => {
  it('end, wait or are refused as the reference says, fed in any pieces', (t) => {
    const maxBytes = 64;
    const parse = replyParser(maxBytes);
    fuzz(
      t,
      fc.property(fc.oneof(replyBytes, fc.uint8Array({ maxLength: 100 }).map((raw) => Buffer.from(raw))), cuts, (bytes, points) => {
        const actual = feedParser(parse, chunked(bytes, points));
        const expected = referenceReply(bytes, maxBytes);
        if (typeof actual === 'string' || typeof expected === 'string') assert.deepStrictEqual(actual, expected);
        else {
          assert.deepStrictEqual({ code: actual.value.code, lines: actual.value.lines, consumed: actual.consumed }, { ...expected.value, consumed: expected.consumed });
          assert.deepStrictEqual(actual.value.raw, bytes.subarray(0, actual.consumed));
        }
      }),
    );
  });

  it('a reply formatted from what was parsed, and the rewritten EHLO reply, parse back to the same lines', (t) => {
    const parse = replyParser();
    fuzz(
      t,
      fc.property(replyBytes, fc.boolean(), (bytes, offerStartTls) => {
        let first: ReturnType<typeof parse>;
        try {
          first = parse(bytes);
        } catch {
          first = undefined;
        }
        fc.pre(first !== undefined);
        const reply: Reply = first.value;
        const again = parse(Buffer.from(formatReply(reply.code, reply.lines)));
        assert.deepStrictEqual(again?.value.lines, reply.lines);
        assert.equal(again.value.code, reply.code);
        const rewritten = parse(Buffer.from(rewriteEhloReply(reply, 'proxy.example greets you', offerStartTls)));
        const kept = reply.lines.slice(1).filter((line) => !['STARTTLS', 'CHUNKING', 'BINARYMIME', 'XCLIENT', 'XFORWARD', 'PROXY'].includes((line.split(' ', 1)[0] ?? '').toUpperCase()));
        assert.deepStrictEqual(rewritten?.value.lines, ['proxy.example greets you', ...kept, ...(offerStartTls ? ['STARTTLS'] : [])]);
        assert.equal(rewritten.value.code, 250);
      }),
    );
  });
});

describe('SMTP RCPT guard', () => {
  it('well-formed pipelined sessions, split anywhere: no foreign RCPT reaches the backend, every command is answered in order', async (t) => {
    const rcpt = fc.constantFrom('alpha.test', 'alpha2.test', 'beta.test', 'nowhere.test', 'forbidden.test', 'sleepy.test').map((d) => `RCPT TO:<u@${d}>\r\n`);
    const content = fc
      .array(fc.constantFrom('line\r\n', '..dot\r\n', 'RCPT TO:<x@beta.test>\r\n', '...\r\n', 'QUIT\r\n', '\r\n'), { maxLength: 5 })
      .map((lines) => `${lines.join('')}.\r\n`);
    const command = fc.oneof(
      rcpt,
      fc.constantFrom('MAIL FROM:<s@example.org>\r\n', 'RSET\r\n', 'NOOP\r\n', 'EHLO x.example\r\n', 'HELP\r\n'),
      content.map((c) => ({ data: c })),
    );
    await fuzzAsync(
      t,
      fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 12 }), cuts, async (commands, points) => {
        // DATA is sent with its content pipelined; the content only counts as such if the backend says 354.
        let stream = '';
        for (const c of commands) stream += typeof c === 'string' ? c : `DATA\r\n${c.data}`;
        stream += 'NOOP\r\n';
        const s = await run(chunked(Buffer.from(stream), points));
        for (const line of s.backend.rcpts) {
          const domain = parsePath(line.slice(5), 'TO').domain;
          assert.ok(SAME_BACKEND.has(domain), `forwarded ${line}`);
        }
        assert.equal(s.unsent, 0, 'every chunk was taken');
        assert.equal(s.client.paused, false);
        assert.equal(s.client.replies.at(-1), '250 2.0.0 OK', `the final NOOP is answered last: ${s.client.replies.join(' | ')}`);
      }),
    );
  });

  it('arbitrary bytes split at random points never throw and never forward a foreign RCPT', async (t) => {
    const piece = fc.oneof(
      fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
      fc.constantFrom('RCPT TO:<a@beta.test>\r\n', 'rcpt to: <b@BETA.test.>\r\n', 'RCPT TO:<c@alpha2.test>\n', 'DATA\r\n', '\r\n.\r\n', '.\r\n', 'RCPT TO:<d@nowhere.test>\r\n', 'BDAT 1\r\n', 'STARTTLS\r\n', '\r', '\n').map((p) => Buffer.from(p)),
    );
    await fuzzAsync(
      t,
      fc.asyncProperty(fc.array(piece, { maxLength: 25 }), cuts, async (pieces, points) => {
        const s = await run(chunked(Buffer.concat(pieces), points));
        for (const line of s.backend.rcpts) {
          let domain: string;
          try {
            domain = parsePath(line.slice(5).trim(), 'TO').domain;
          } catch {
            continue; // unparseable: the backend refuses it too
          }
          assert.ok(domain === '' || SAME_BACKEND.has(domain), `forwarded ${JSON.stringify(line)}`);
        }
      }),
    );
  });
});
