/** The RESP opening parsers: client commands (multibulk and inline, Redis's pre-auth limits) and backend replies (RESP2/RESP3). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../../src/core/errors.ts';
import { commandParser, encodeCommand, parseInteger, replyParser, splitArgs } from '../../../../src/protocols/redis/resp.ts';

const b = (text: string): Buffer => Buffer.from(text, 'latin1');
const words = (args: readonly Buffer[] | null | undefined): string[] | null | undefined => (args === null || args === undefined ? args : args.map((a) => a.toString('latin1')));

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof PolyproxyError);
    assert.equal(err.kind, 'PROTOCOL');
    return err.message;
  }
  assert.fail('accepted');
}

describe('commandParser', () => {
  it('reads a multibulk command whole, and waits at every shorter prefix', () => {
    const bytes = encodeCommand(['AUTH', 'alice', 'pw']);
    assert.equal(bytes.toString(), '*3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$2\r\npw\r\n');
    for (let cut = 1; cut < bytes.length; cut++) assert.equal(commandParser(bytes.subarray(0, cut)), undefined, `cut ${cut}`);
    const done = commandParser(Buffer.concat([bytes, b('PING\r\n')]));
    assert.deepEqual(words(done?.value), ['AUTH', 'alice', 'pw']);
    assert.equal(done?.consumed, bytes.length);
  });

  it('reads inline commands with Redis quoting, and ignores empty ones', () => {
    assert.deepEqual(words(commandParser(b('AUTH alice "p w\\x41"\r\n'))?.value), ['AUTH', 'alice', 'p wA']);
    assert.deepEqual(words(commandParser(b("PING 'it\\'s'\n"))?.value), ['PING', "it's"]);
    assert.equal(commandParser(b('\r\n'))?.value, null);
    assert.equal(commandParser(b('*0\r\n'))?.value, null);
    assert.equal(commandParser(b('*-1\r\n'))?.consumed, 5);
  });

  it("refuses with Redis's protocol error texts", () => {
    assert.equal(refusal(() => commandParser(b('*x\r\n'))), 'Protocol error: invalid multibulk length');
    assert.equal(refusal(() => commandParser(b('*11\r\n'))), 'Protocol error: unauthenticated multibulk length');
    assert.equal(refusal(() => commandParser(b('*1\r\n+PING\r\n'))), "Protocol error: expected '$', got '+'");
    assert.equal(refusal(() => commandParser(b('*1\r\n$-1\r\n'))), 'Protocol error: invalid bulk length');
    assert.equal(refusal(() => commandParser(b('*1\r\n$16385\r\n'))), 'Protocol error: unauthenticated bulk length');
    assert.equal(refusal(() => commandParser(b('*1\r\n$4\r\nPINGxx'))), 'Protocol error: invalid bulk length');
    assert.equal(refusal(() => commandParser(b('PING "open\r\n'))), 'Protocol error: unbalanced quotes in request');
    assert.equal(refusal(() => commandParser(Buffer.alloc(65 * 1024, 0x61))), 'Protocol error: too big inline request');
    assert.equal(refusal(() => commandParser(Buffer.concat([b('*'), Buffer.alloc(65 * 1024, 0x31)]))), 'Protocol error: too big mbulk count string');
  });

  it('parseInteger is string2ll: no leading zeros, no plus, 64-bit range', () => {
    const p = (s: string): number | null => parseInteger(b(s), 0, s.length);
    assert.equal(p('0'), 0);
    assert.equal(p('-12'), -12);
    assert.equal(p('012'), null);
    assert.equal(p('+1'), null);
    assert.equal(p(''), null);
    assert.equal(p('-'), null);
    assert.equal(p('1 '), null);
  });

  it('splitArgs: a closing quote must end the word', () => {
    assert.equal(splitArgs(b('"a"b')), null);
    assert.deepEqual(splitArgs(b('  a   b  '))?.map(String), ['a', 'b']);
  });
});

describe('replyParser', () => {
  it('finds the end of every RESP2 and RESP3 type, nested, and waits for partial ones', () => {
    const replies = [
      '+OK\r\n',
      '-WRONGPASS invalid username-password pair or user is disabled.\r\n',
      ':1\r\n',
      '$-1\r\n',
      '$3\r\nfoo\r\n',
      '*-1\r\n',
      '*2\r\n$1\r\na\r\n:2\r\n',
      '%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nmodules\r\n*0\r\n',
      '_\r\n',
      '#t\r\n',
      ',1.5\r\n',
      '(123\r\n',
      '=8\r\ntxt:abcd\r\n',
      '!5\r\nERR x\r\n',
      '~1\r\n+a\r\n',
      '>2\r\n+message\r\n+x\r\n',
      '|1\r\n+key\r\n+val\r\n+OK\r\n',
    ];
    for (const text of replies) {
      const bytes = b(`${text}+NEXT\r\n`);
      const done = replyParser(bytes);
      assert.equal(done?.consumed, text.length, text);
      assert.equal(done?.value.error, text.startsWith('-') || text.startsWith('!'), text);
      for (let cut = 1; cut < text.length; cut++) assert.equal(replyParser(b(text.slice(0, cut))), undefined, `${JSON.stringify(text)} cut at ${cut}`);
    }
  });

  it('refuses unknown types and bad lengths as a backend failure', () => {
    for (const bad of ['?x\r\n', '$x\r\n', '*-2\r\n', '%-1\r\n', '$3\r\nfooXY']) {
      assert.throws(() => replyParser(b(bad)), (err: unknown) => err instanceof PolyproxyError && err.kind === 'BACKEND_UNREACHABLE' && err.source === 'backend', bad);
    }
  });
});
