/** The Redis listener's own answers before AUTH: HELLO's arguments as Redis 7 checks them, and its reply in RESP2 and RESP3. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HELLO_VERSION, helloReply, parseHello } from '../../../../src/protocols/redis/session.ts';
import { replyParser } from '../../../../src/protocols/redis/resp.ts';

const args = (...words: string[]): Buffer[] => words.map((w) => Buffer.from(w));

describe('parseHello', () => {
  it('reads the version, AUTH and SETNAME in any order', () => {
    const hello = parseHello(args('HELLO', '3', 'SETNAME', 'n', 'AUTH', 'u', 'p'));
    assert.ok(!('error' in hello));
    assert.equal(hello.proto, 3);
    assert.deepEqual(hello.auth?.map(String), ['u', 'p']);
    assert.equal(String(hello.setname), 'n');
    const bare = parseHello(args('HELLO'));
    assert.ok(!('error' in bare));
    assert.equal(bare.proto, null);
    assert.equal(bare.auth, null);
  });

  it("answers bad arguments with Redis 7's errors", () => {
    assert.deepEqual(parseHello(args('HELLO', 'x')), { error: '-ERR Protocol version is not an integer or out of range' });
    assert.deepEqual(parseHello(args('HELLO', '4')), { error: '-NOPROTO unsupported protocol version' });
    assert.deepEqual(parseHello(args('HELLO', '1')), { error: '-NOPROTO unsupported protocol version' });
    assert.deepEqual(parseHello(args('HELLO', '3', 'AUTH', 'u')), { error: "-ERR Syntax error in HELLO option 'AUTH'" });
    assert.deepEqual(parseHello(args('HELLO', '3', 'SETNAME')), { error: "-ERR Syntax error in HELLO option 'SETNAME'" });
    assert.deepEqual(parseHello(args('HELLO', '3', 'FOO')), { error: "-ERR Syntax error in HELLO option 'FOO'" });
  });
});

describe('helloReply', () => {
  it('is a flat array of 14 in RESP2 and a map of 7 in RESP3, with the fields Redis 7 sends', () => {
    const two = helloReply(2, 5).toString();
    const three = helloReply(3, 5).toString();
    assert.ok(two.startsWith('*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n'));
    assert.ok(three.startsWith('%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n'));
    assert.ok(two.includes(`$7\r\nversion\r\n$${HELLO_VERSION.length}\r\n${HELLO_VERSION}\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:5\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n`));
    assert.ok(three.includes('$5\r\nproto\r\n:3\r\n'));
    // Each is one complete RESP reply.
    assert.equal(replyParser(helloReply(3, 1))?.consumed, helloReply(3, 1).length);
    assert.equal(replyParser(helloReply(2, 1))?.consumed, helloReply(2, 1).length);
  });
});
