/**
 * The relay's client filter for `routeBy: rcpt` (rcpt-guard.ts), between a
 * scripted client and a small SMTP backend that answers like smtp-server:
 * what reaches the backend, what the client is told and in which order, for
 * pipelined command streams split at every offset. (Its properties over
 * arbitrary sessions and chunks: test/fuzz/smtp.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Session, run } from '../../../helpers/smtp-rcpt-session.ts';

/** The stream whole, byte by byte, and cut in two at every offset. */
function splits(text: string): Buffer[][] {
  const stream = Buffer.from(text);
  const out: Buffer[][] = [[stream], [...stream].map((b) => Buffer.from([b]))];
  for (let cut = 1; cut < stream.length; cut++) out.push([stream.subarray(0, cut), stream.subarray(cut)]);
  return out;
}

describe('RcptGuard', () => {
  it('passes RCPTs of the first domain, other commands and a message through unchanged, with no lookup', async () => {
    const stream = 'RCPT TO:<b@alpha.test>\r\nRCPT TO:<c@Alpha.Test.>\r\nNOOP\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n';
    for (const chunks of splits(stream)) {
      const s = await run(chunks);
      assert.equal(s.backend.bytes.toString(), stream);
      assert.deepEqual(s.client.codes, [250, 250, 250, 354, 250, 221]);
      assert.deepEqual(s.lookups, []);
      assert.deepEqual(s.backend.messages, ['Subject: x\r\n\r\nhi\r\n']);
      assert.equal(s.client.paused, false);
    }
  });

  it('answers a pipelined RCPT routed to another backend 451 4.3.0 in its place; the rest goes through in order', async () => {
    const stream = 'RCPT TO:<b@beta.test>\r\nRCPT TO:<c@alpha2.test>\r\nRCPT TO:<d@beta.test>\r\nDATA\r\nbody\r\n.\r\n';
    for (const chunks of splits(stream)) {
      const s = await run(chunks);
      assert.deepEqual(s.client.codes, [451, 250, 451, 354, 250], s.client.replies.join(' | '));
      assert.match(s.client.replies[0] as string, /^451 4\.3\.0 <beta\.test> is served by another server/);
      assert.deepEqual(s.backend.rcpts, ['RCPT TO:<c@alpha2.test>']);
      assert.equal(s.backend.bytes.toString(), 'RCPT TO:<c@alpha2.test>\r\nDATA\r\nbody\r\n.\r\n');
      assert.deepEqual(s.backend.messages, ['body\r\n']);
    }
  });

  it('looks a domain up once: a domain found on this backend passes later without a lookup', async () => {
    const s = await run(['RCPT TO:<a@alpha2.test>\r\nRCPT TO:<b@alpha2.test>\r\nRCPT TO:<c@beta.test>\r\nRCPT TO:<d@beta.test>\r\n']);
    assert.deepEqual(s.client.codes, [250, 250, 451, 451]);
    // A refused domain is asked again (its route may change); an accepted one is remembered.
    assert.deepEqual(s.lookups, ['alpha2.test', 'beta.test', 'beta.test']);
  });

  it('passes a domain whose balanced route includes this backend', async () => {
    const s = await run(['RCPT TO:<a@pool.test>\r\n']);
    assert.deepEqual(s.client.codes, [250]);
    assert.deepEqual(s.backend.rcpts, ['RCPT TO:<a@pool.test>']);
  });

  it('maps lookup failures: not routed 550 5.1.2, forbidden 550 5.7.1, unavailable 451 4.3.0', async () => {
    const s = await run(['RCPT TO:<a@nowhere.test>\r\nRCPT TO:<b@forbidden.test>\r\nRCPT TO:<c@sleepy.test>\r\nNOOP\r\n']);
    assert.deepEqual(
      s.client.replies.map((r) => r.slice(0, 9)),
      ['550 5.1.2', '550 5.7.1', '451 4.3.0', '250 2.0.0'],
    );
    assert.equal(s.backend.bytes.toString(), 'NOOP\r\n');
  });

  it('answers 451 when the session has no backend to compare with yet', async () => {
    const s = await run(['RCPT TO:<a@alpha2.test>\r\n'], { connected: false });
    assert.deepEqual(s.client.codes, [451]);
    assert.equal(s.backend.bytes.length, 0);
  });

  it('forwards a RCPT without a domain; refuses RCPTs it cannot parse instead of forwarding them (issue 15)', async () => {
    const s = await run(['RCPT TO:<postmaster>\r\nRCPT <x@beta.test>\r\nRCPT TO:<unterminated@beta.test\r\nRCPT TO:<"x"@>\r\n']);
    assert.deepEqual(s.backend.rcpts, ['RCPT TO:<postmaster>']);
    assert.deepEqual(s.client.codes, [250, 501, 501, 501]);
    assert.deepEqual(s.lookups, []);
  });

  it('reads RCPT as a lenient backend would: leading blanks, a tab after the verb, a quoted ">" (issue 15)', async () => {
    for (const line of [' RCPT TO:<x@beta.test>', 'RCPT\tTO:<x@beta.test>', 'rcpt to: <x@BETA.test.>', 'RCPT TO:<"a>b"@beta.test>', 'RCPT TO:<@alpha.test:x@beta.test>']) {
      const s = await run([`${line}\r\n`]);
      assert.deepEqual(s.backend.rcpts, [], line);
      assert.deepEqual(s.lookups, ['beta.test'], line);
      assert.deepEqual(s.client.codes, [451], line);
    }
  });

  it('routeBy ehlo: a later EHLO/HELO is checked like a recipient, RCPTs pass (issue 15)', async () => {
    for (const chunks of splits('EHLO alpha2.test\r\nHELO beta.test\r\n ehlo forbidden.test\r\nEHLO bad..name\r\nRCPT TO:<x@beta.test>\r\n')) {
      const s = await run(chunks, { routeBy: 'ehlo' });
      assert.deepEqual(s.client.codes, [250, 550, 550, 501, 250], s.client.replies.join(' | '));
      assert.deepEqual(s.lookups, ['alpha2.test', 'beta.test', 'forbidden.test']);
      assert.ok(!s.backend.bytes.toString().includes('beta.test\r\nEHLO') && !s.backend.bytes.toString().includes('HELO beta'));
      assert.ok(!s.backend.bytes.toString().includes('forbidden'));
    }
  });

  it('holds what follows DATA until the backend answers: content is never read as commands', async () => {
    // Lines in the content that look like commands must reach the backend as content, untouched.
    const content = 'RCPT TO:<x@beta.test>\r\n..\r\nSTARTTLS\r\n.not the end\r\n';
    const stream = `DATA\r\n${content}.\r\nRCPT TO:<y@beta.test>\r\n`;
    for (const chunks of splits(stream)) {
      const s = await run(chunks);
      assert.deepEqual(s.backend.messages, [content]);
      assert.deepEqual(s.client.codes, [354, 250, 451], s.client.replies.join(' | '));
      assert.deepEqual(s.lookups, ['beta.test']);
    }
  });

  it('an empty message: the "." right after DATA ends it', async () => {
    for (const chunks of splits('DATA\r\n.\r\nNOOP\r\n')) {
      const s = await run(chunks);
      assert.deepEqual(s.backend.messages, ['']);
      assert.deepEqual(s.client.codes, [354, 250, 250]);
    }
  });

  it('a refused DATA (no valid recipients) leaves the guard in command mode: what follows are commands again', async () => {
    const s = new Session();
    s.send('RSET\r\nDATA\r\nRCPT TO:<x@beta.test>\r\n');
    await s.settle();
    assert.deepEqual(s.client.codes, [250, 554, 451]);
    assert.deepEqual(s.backend.rcpts, []);
  });

  it('RSET between transactions: each transaction is checked the same way', async () => {
    const stream =
      'RCPT TO:<x@beta.test>\r\nRSET\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<y@alpha.test>\r\nRCPT TO:<z@beta.test>\r\nDATA\r\none\r\n.\r\n' +
      'MAIL FROM:<s@example.org>\r\nRCPT TO:<w@alpha2.test>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n';
    for (const chunks of [[stream], ...splits(stream).slice(1, 3)]) {
      const s = await run(chunks);
      assert.deepEqual(s.client.codes, [451, 250, 250, 250, 451, 354, 250, 250, 250, 354, 250, 221], s.client.replies.join(' | '));
      assert.deepEqual(s.backend.messages, ['one\r\n', 'two\r\n']);
      assert.deepEqual(s.backend.rcpts, ['RCPT TO:<y@alpha.test>', 'RCPT TO:<w@alpha2.test>']);
    }
  });

  it('counts multi-line backend replies once (EHLO mid-session)', async () => {
    const s = await run(['EHLO again.example\r\nRCPT TO:<x@beta.test>\r\n']);
    assert.deepEqual(s.client.codes, [250, 451]);
    assert.ok(s.client.replies[1]?.startsWith('451'), 'the local reply follows the whole multi-line reply');
  });

  it('refuses STARTTLS (454) and BDAT (502) itself: commands must stay readable and content only comes as DATA', async () => {
    const s = await run(['STARTTLS\r\nBDAT 5 LAST\r\nNOOP\r\n']);
    assert.deepEqual(s.client.replies.map((r) => r.slice(0, 9)), ['454 4.7.0', '502 5.5.1', '250 2.0.0']);
    assert.equal(s.backend.bytes.toString(), 'NOOP\r\n');
  });

  it('ends the session on a command line longer than 64 KiB', async () => {
    const s = await run([`NOOP ${'x'.repeat(40_000)}`, 'x'.repeat(40_000)]);
    assert.ok(s.backend.destroyed);
    assert.ok(s.client.ended);
    assert.deepEqual(s.client.replies, ['500 5.5.2 Line too long']);
    assert.equal(s.relay.reason, 'refused-command');
  });

  it('reports backpressure: push returns false when the backend does not take the bytes', () => {
    const s = new Session();
    s.backend.accepting = false;
    assert.equal(s.guard.push(s.relay, Buffer.from('NOOP\r\n')), false);
    s.backend.accepting = true;
    assert.equal(s.guard.push(s.relay, Buffer.from('NOOP\r\n')), true, 'a command still awaiting its reply is no reason to pause');
  });
});
