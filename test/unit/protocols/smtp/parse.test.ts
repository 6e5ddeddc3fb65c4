import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import { SmtpReplyError, encodeFailure } from '../../../../src/protocols/smtp/errors.ts';
import { commandLineParser, heloDomain, parseCommand, parsePath, replyParser, rewriteEhloReply } from '../../../../src/protocols/smtp/parse.ts';
import type { Reply } from '../../../../src/protocols/smtp/parse.ts';

/** Feeds `bytes` growing one byte at a time; returns the first complete parse. */
function byteByByte<T>(parse: (b: Buffer) => { value: T; consumed: number } | undefined, bytes: Buffer): { value: T; consumed: number } {
  for (let n = 1; n <= bytes.length; n++) {
    const done = parse(bytes.subarray(0, n));
    if (done !== undefined) return done;
  }
  throw new Error('incomplete');
}

test('command lines: whole, byte by byte, CRLF or LF, with what follows left', () => {
  const parse = commandLineParser();
  const bytes = Buffer.from('EHLO alpha.test\r\nMAIL FROM:<a@b>\r\n');
  assert.deepEqual(parse(bytes), { value: 'EHLO alpha.test', consumed: 17 });
  assert.deepEqual(byteByByte(parse, bytes), { value: 'EHLO alpha.test', consumed: 17 });
  assert.deepEqual(parse(Buffer.from('NOOP\n')), { value: 'NOOP', consumed: 5 });
  assert.equal(parse(Buffer.from('EHLO alp')), undefined);
});

test('command lines: 512 octets, MAIL/RCPT up to maxLineLength, then 500 5.5.2', () => {
  const parse = commandLineParser(1024);
  const ok = `NOOP ${'x'.repeat(505)}\r\n`;
  assert.equal(ok.length, 512);
  assert.equal(parse(Buffer.from(ok))?.consumed, 512);
  const long = `NOOP ${'x'.repeat(506)}\r\n`;
  assert.throws(() => parse(Buffer.from(long)), (err: unknown) => err instanceof SmtpReplyError && String(err.reply).startsWith('500 5.5.2'));
  assert.throws(() => parse(Buffer.from(`NOOP ${'x'.repeat(600)}`)), SmtpReplyError);
  const mail = `MAIL FROM:<a@b> ${'X-P=1 '.repeat(100)}\r\n`;
  assert.equal(parse(Buffer.from(mail))?.consumed, mail.length);
  assert.throws(() => parse(Buffer.from(`MAIL FROM:<a@b> ${'x'.repeat(1100)}`)), SmtpReplyError);
});

test('commands, EHLO domains and paths', () => {
  assert.deepEqual(parseCommand('ehlo Alpha.Test'), { verb: 'EHLO', arg: 'Alpha.Test' });
  assert.deepEqual(parseCommand('DATA'), { verb: 'DATA', arg: '' });
  assert.equal(heloDomain('Alpha.TEST.'), 'alpha.test');
  assert.equal(heloDomain('[127.0.0.1]'), '[127.0.0.1]');
  assert.equal(heloDomain('[IPv6:::1] extra'), '[IPv6:::1]');
  assert.throws(() => heloDomain(''), SmtpReplyError);
  assert.throws(() => heloDomain('a/b'), SmtpReplyError);
  assert.deepEqual(parsePath('FROM:<a@Example.ORG> SIZE=10 BODY=8BITMIME', 'FROM'), { address: 'a@Example.ORG', domain: 'example.org', params: 'SIZE=10 BODY=8BITMIME' });
  assert.deepEqual(parsePath('FROM:<>', 'FROM'), { address: '', domain: '', params: '' });
  assert.deepEqual(parsePath('to: <@relay.net:u@Beta.Test>', 'TO'), { address: 'u@Beta.Test', domain: 'beta.test', params: '' });
  assert.deepEqual(parsePath('TO:u@x.test', 'TO'), { address: 'u@x.test', domain: 'x.test', params: '' });
  assert.equal(parsePath('TO:<postmaster>', 'TO').domain, '');
  assert.throws(() => parsePath('TO:<>', 'TO'), SmtpReplyError);
  assert.throws(() => parsePath('FROM <a@b>', 'FROM'), SmtpReplyError);
});

const EHLO_REPLY = '250-backend.test Hello\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-SIZE 1000\r\n250-STARTTLS\r\n250-CHUNKING\r\n250-XCLIENT NAME ADDR\r\n250-AUTH PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES\r\n';

test('replies: multi-line, whole, byte by byte and split at every offset', () => {
  const parse = replyParser();
  const bytes = Buffer.from(`${EHLO_REPLY}220 next`);
  const whole = parse(bytes);
  assert.equal(whole?.consumed, EHLO_REPLY.length);
  assert.equal(whole?.value.code, 250);
  assert.equal(whole?.value.lines.length, 10);
  assert.equal(byteByByte(parse, bytes).consumed, EHLO_REPLY.length);
  for (let cut = 1; cut < EHLO_REPLY.length; cut++) assert.equal(parse(bytes.subarray(0, cut)), undefined);
  assert.deepEqual(parse(Buffer.from('250\r\n'))?.value.lines, ['']);
  assert.throws(() => parse(Buffer.from('250-a\r\n251 b\r\n')), PolyproxyError);
  assert.throws(() => parse(Buffer.from('hello\r\n')), PolyproxyError);
});

test('EHLO reply rewriting keeps what the proxy can carry and adds STARTTLS only when asked', () => {
  const reply = (replyParser()(Buffer.from(EHLO_REPLY)) as { value: Reply }).value;
  const out = rewriteEhloReply(reply, 'mx.proxy greets a.test', false);
  assert.equal(out, '250-mx.proxy greets a.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-SIZE 1000\r\n250-AUTH PLAIN LOGIN\r\n250 ENHANCEDSTATUSCODES\r\n');
  assert.ok(rewriteEhloReply(reply, 'mx', true).endsWith('250 STARTTLS\r\n'));
});

test('failures map to SMTP replies', () => {
  const reply = (kind: ConstructorParameters<typeof PolyproxyError>[0]): string => encodeFailure(new PolyproxyError(kind, 'x'), 'a.test').toString().slice(0, 9);
  assert.equal(reply('NOT_FOUND'), '550 5.1.2');
  assert.equal(reply('FORBIDDEN'), '550 5.7.1');
  assert.equal(reply('UNAVAILABLE'), '421 4.3.0');
  assert.equal(reply('TIMEOUT'), '421 4.3.0');
  assert.equal(reply('BACKEND_UNREACHABLE'), '421 4.3.0');
  assert.equal(reply('PROTOCOL'), '500 5.5.2');
  assert.equal(reply('HANDSHAKE_TIMEOUT'), '421 4.4.2');
  assert.equal(reply('TOO_MANY'), '421 4.3.2');
});

test('paths: a quoted local part may hold \'>\', \'@\' and spaces; the domain is after the last \'@\' outside quotes (issue 15 fuzzing)', () => {
  // The guard read <"a>b"@other.test> as the address "a with no domain and let it through unchecked.
  assert.deepEqual(parsePath('TO:<"a>b"@Other.test>', 'TO'), { address: '"a>b"@Other.test', domain: 'other.test', params: '' });
  assert.deepEqual(parsePath('TO:"a b"@other.test NOTIFY=NEVER', 'TO'), { address: '"a b"@other.test', domain: 'other.test', params: 'NOTIFY=NEVER' });
  assert.deepEqual(parsePath('TO:<"x@evil.test"@good.test>', 'TO'), { address: '"x@evil.test"@good.test', domain: 'good.test', params: '' });
  assert.deepEqual(parsePath('TO:<"q\\"@x>"@good.test>', 'TO'), { address: '"q\\"@x>"@good.test', domain: 'good.test', params: '' });
  assert.deepEqual(parsePath('TO:<"postmaster@x">', 'TO'), { address: '"postmaster@x"', domain: '', params: '' });
});
