/**
 * SMTP routing end to end: the real `polyproxy` command (built dist/) in
 * front of two smtp-server backends standing in for two domains' mail
 * servers, driven by nodemailer and by raw sockets.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import nodemailer from 'nodemailer';
import type { Transporter } from 'nodemailer';
import MailComposer from 'nodemailer/lib/mail-composer';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { ROOT, startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { RawSmtp, startSmtpBackend, text } from '../helpers/smtp.ts';
import type { SmtpBackend } from '../helpers/smtp.ts';

let proxy: RunningCli;
let alpha: SmtpBackend;
let beta: SmtpBackend;
let pki: TestPki;
let ca: Buffer;
const raws: RawSmtp[] = [];

before(async () => {
  // alpha offers STARTTLS and XCLIENT (both must not reach the client); beta offers neither.
  alpha = await startSmtpBackend({ useXClient: true });
  beta = await startSmtpBackend({ disabledCommands: ['STARTTLS'] });
  pki = await makeTestPki({ serverNames: ['localhost', '127.0.0.1'] });
  ca = await readFile(pki.caCert);
  const file = await writeConfig({
    workers: 1,
    security: { allowBackends: ['127.0.0.0/8'] },
    resolver: { module: path.join(ROOT, 'test/fixtures/smtp-resolver.ts') },
    routes: {
      'alpha.test': `127.0.0.1:${alpha.port}`,
      'beta.test': `127.0.0.1:${beta.port}`,
      'down.test': '127.0.0.1:1',
    },
    listeners: [
      { name: 'mail', protocol: 'smtp', host: '127.0.0.1', port: 0, hostname: 'mx.proxy.test', connectTimeoutMs: 2000 },
      { name: 'mail-tls', protocol: 'smtp', host: '127.0.0.1', port: 0, hostname: 'mx.proxy.test', tls: { cert: pki.serverCert, key: pki.serverKey } },
      { name: 'mail-rcpt', protocol: 'smtp', host: '127.0.0.1', port: 0, hostname: 'mx.proxy.test', routeBy: 'rcpt' },
    ],
  });
  proxy = await startCli(['--config', file]);
});

after(async () => {
  for (const r of raws) r.destroy();
  await proxy?.stop();
  await alpha?.close();
  await beta?.close();
  await pki?.cleanup();
});

function raw(listener = 'mail'): RawSmtp {
  const r = new RawSmtp(proxy.port(listener));
  raws.push(r);
  return r;
}

/** A real message from nodemailer's composer, with lines that need dot-stuffing. */
async function compose(to: string, subject: string): Promise<Buffer> {
  const body = `Hello ${to}\r\n.leading dot\r\n..two dots\r\n.\r\nend with a lone dot above\r\n\u00e9t\u00e9 8-bit text\r\n`;
  const mail = new MailComposer({ from: 'sender@example.org', to, subject, text: body, textEncoding: 'quoted-printable', messageId: `<${subject}@example.org>`, date: new Date(0) });
  return await mail.compile().build();
}

function transport(listener: string, name: string, extra: Record<string, unknown> = {}): Transporter {
  return nodemailer.createTransport({ host: '127.0.0.1', port: proxy.port(listener), secure: false, name, ignoreTLS: true, ...extra });
}

test('routeBy ehlo: each message arrives byte-identical at the backend its EHLO domain routes to', async () => {
  for (const [domain, backend] of [['alpha.test', alpha], ['beta.test', beta]] as const) {
    const message = await compose(`user@${domain}`, `to-${domain}`);
    const arrived = backend.next();
    const info = await transport('mail', domain).sendMail({ envelope: { from: 'sender@example.org', to: [`user@${domain}`] }, raw: message });
    assert.deepEqual(info.accepted, [`user@${domain}`]);
    const received = await arrived;
    assert.equal(received.raw.toString('hex'), message.toString('hex'));
    assert.equal(received.clientHostname, domain);
    assert.deepEqual(received.to, [`user@${domain}`]);
  }
});

test('the EHLO reply relays the backend extensions without STARTTLS or XCLIENT; XCLIENT passes the client address', async () => {
  const r = raw();
  assert.equal(text(await r.reply()), '220 mx.proxy.test ESMTP polyproxy');
  r.send('EHLO alpha.test\r\n');
  const ehlo = await r.reply();
  assert.ok(ehlo !== null);
  const keywords = ehlo.lines.slice(1).map((l) => l.split(' ')[0]);
  for (const k of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'SIZE']) assert.ok(keywords.includes(k), `${k} in ${keywords.join(',')}`);
  assert.ok(!keywords.includes('STARTTLS'));
  assert.ok(!keywords.includes('XCLIENT'));
  assert.equal(ehlo.lines[0], 'mx.proxy.test greets alpha.test');
  const arrived = alpha.next();
  // Pipelined (RFC 2920): one write, replies in order; the content is dot-stuffed on the wire.
  r.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<x@alpha.test>\r\nDATA\r\n');
  assert.equal((await r.reply())?.code, 250);
  assert.equal((await r.reply())?.code, 250);
  assert.equal((await r.reply())?.code, 354);
  r.send('Subject: one\r\n\r\n..stuffed\r\nbody\r\n.\r\n');
  assert.equal((await r.reply())?.code, 250);
  const first = await arrived;
  assert.equal(first.raw.toString(), 'Subject: one\r\n\r\n.stuffed\r\nbody\r\n');
  assert.equal(first.xclientAddr, '127.0.0.1');
  // Second transaction in the same session, with RSET and NOOP in between.
  assert.equal((await r.command('RSET')).slice(0, 3), '250');
  assert.equal((await r.command('NOOP')).slice(0, 3), '250');
  const second = alpha.next();
  r.send('MAIL FROM:<b@example.org>\r\nRCPT TO:<y@alpha.test>\r\nRCPT TO:<z@alpha.test>\r\nDATA\r\n');
  for (const code of [250, 250, 250, 354]) assert.equal((await r.reply())?.code, code);
  r.send('Subject: two\r\n\r\nsecond\r\n.\r\nQUIT\r\n');
  assert.equal((await r.reply())?.code, 250);
  assert.equal((await r.reply())?.code, 221);
  const got = await second;
  assert.deepEqual(got.to, ['y@alpha.test', 'z@alpha.test']);
  assert.equal(got.raw.toString(), 'Subject: two\r\n\r\nsecond\r\n');
  await r.closedByPeer();
});

test('STARTTLS with a test certificate: the EHLO inside TLS routes', async () => {
  const r = raw('mail-tls');
  await r.reply();
  r.send('EHLO beta.test\r\n');
  const first = await r.reply();
  assert.ok(first?.lines.includes('STARTTLS'));
  const message = await compose('user@beta.test', 'tls');
  const arrived = beta.next();
  const info = await transport('mail-tls', 'beta.test', { ignoreTLS: false, requireTLS: true, tls: { ca, servername: 'localhost' } }).sendMail({
    envelope: { from: 'sender@example.org', to: ['user@beta.test'] },
    raw: message,
  });
  assert.deepEqual(info.accepted, ['user@beta.test']);
  assert.deepEqual((await arrived).raw, message);
});

test('a plaintext client on a TLS listener that skips STARTTLS is routed by its first EHLO', async () => {
  const message = await compose('user@alpha.test', 'plain-on-tls');
  const arrived = alpha.next();
  await transport('mail-tls', 'alpha.test').sendMail({ envelope: { from: 'sender@example.org', to: ['user@alpha.test'] }, raw: message });
  assert.deepEqual((await arrived).raw, message);
});

test('errors are SMTP replies: 421 closes the session', async () => {
  const cases: Array<[string, string]> = [
    ['EHLO sleepy.test', '421 4.3.0'],
    ['EHLO down.test', '421 4.3.0'],
  ];
  for (const [line, expected] of cases) {
    const r = raw();
    await r.reply();
    assert.equal((await r.command(line)).slice(0, 9), expected, line);
    await r.closedByPeer();
  }
  const early = raw();
  await early.reply();
  assert.equal((await early.command('MAIL FROM:<a@example.org>')).slice(0, 9), '503 5.5.1');
  assert.equal((await early.command('EHLO')).slice(0, 9), '501 5.5.4');
  assert.equal((await early.command(`NOOP ${'x'.repeat(600)}`)).slice(0, 9), '500 5.5.2');
  await early.closedByPeer();
});

test('routeBy ehlo: 550 for an unrouted or forbidden EHLO keeps the session; a routable EHLO then delivers', async () => {
  const r = raw();
  await r.reply();
  assert.equal((await r.command('EHLO unknown.test')).slice(0, 9), '550 5.1.2');
  // Not greeted: mail commands wait for a successful EHLO.
  assert.equal((await r.command('MAIL FROM:<a@example.org>')).slice(0, 9), '503 5.5.1');
  assert.equal((await r.command('HELO forbidden.test')).slice(0, 9), '550 5.7.1');
  assert.equal((await r.command('NOOP')).slice(0, 3), '250');
  assert.equal((await r.command('RSET')).slice(0, 3), '250');
  assert.equal((await r.command('EHLO beta.test')).slice(0, 3), '250');
  const arrived = beta.next();
  r.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<x@beta.test>\r\nDATA\r\n');
  for (const code of [250, 250, 354]) assert.equal((await r.reply())?.code, code);
  r.send('Subject: after 550\r\n\r\nstill here\r\n.\r\n');
  assert.equal((await r.reply())?.code, 250);
  const got = await arrived;
  assert.equal(got.clientHostname, 'beta.test');
  assert.equal(got.raw.toString(), 'Subject: after 550\r\n\r\nstill here\r\n');
  assert.equal((await r.command('QUIT')).slice(0, 3), '221');
  await r.closedByPeer();
});

test('routeBy ehlo: a client refused on EHLO can QUIT cleanly', async () => {
  const r = raw();
  await r.reply();
  assert.equal((await r.command('EHLO unknown.test')).slice(0, 9), '550 5.1.2');
  assert.equal((await r.command('QUIT')).slice(0, 3), '221');
  await r.closedByPeer();
});

test('a plaintext client on a TLS listener that greeted with an unrouted domain gets 550 on its next command and may greet again', async () => {
  const r = raw('mail-tls');
  await r.reply();
  // The proxy answers the plaintext EHLO itself (to offer STARTTLS): no routing yet, and no
  // extension the backend may lack (PIPELINING, ENHANCEDSTATUSCODES, SIZE: issue 15).
  r.send('EHLO unknown.test\r\n');
  assert.deepEqual((await r.reply())?.lines.slice(1), ['STARTTLS']);
  assert.equal((await r.command('MAIL FROM:<a@example.org>')).slice(0, 9), '550 5.1.2');
  assert.equal((await r.command('MAIL FROM:<a@example.org>')).slice(0, 9), '503 5.5.1');
  r.send('EHLO alpha.test\r\n');
  assert.equal((await r.reply())?.code, 250);
  const arrived = alpha.next();
  assert.equal((await r.command('MAIL FROM:<a@example.org>')).slice(0, 3), '250');
  r.send('RCPT TO:<x@alpha.test>\r\nDATA\r\n');
  for (const code of [250, 354]) assert.equal((await r.reply())?.code, code);
  r.send('Subject: tls listener\r\n\r\nplain\r\n.\r\nQUIT\r\n');
  assert.equal((await r.reply())?.code, 250);
  assert.equal((await r.reply())?.code, 221);
  assert.equal((await arrived).raw.toString(), 'Subject: tls listener\r\n\r\nplain\r\n');
  await r.closedByPeer();
});

test('routeBy rcpt: 550 for an unrouted or forbidden first recipient keeps the transaction; the next routable one delivers', async () => {
  const r = raw('mail-rcpt');
  await r.reply();
  assert.equal((await r.command('EHLO client.example.org')).slice(0, 3), '250');
  assert.equal((await r.command('MAIL FROM:<s@example.org>')).slice(0, 3), '250');
  assert.equal((await r.command('RCPT TO:<a@unknown.test>')).slice(0, 9), '550 5.1.2');
  assert.equal((await r.command('RCPT TO:<b@forbidden.test>')).slice(0, 9), '550 5.7.1');
  const arrived = beta.next();
  // Pipelined after the refusals: the routable recipient, a later unrouted one (now the guard's), DATA.
  r.send('RCPT TO:<c@beta.test>\r\nRCPT TO:<d@unknown.test>\r\nDATA\r\n');
  const codes: number[] = [];
  for (let i = 0; i < 3; i++) codes.push((await r.reply())?.code ?? 0);
  assert.deepEqual(codes, [250, 550, 354]);
  r.send('Subject: rcpt after 550\r\n\r\nbody\r\n.\r\n');
  assert.equal((await r.reply())?.code, 250);
  const got = await arrived;
  assert.deepEqual(got.to, ['c@beta.test']);
  assert.equal(got.from, 's@example.org');
  assert.equal(got.raw.toString(), 'Subject: rcpt after 550\r\n\r\nbody\r\n');
  assert.equal((await r.command('QUIT')).slice(0, 3), '221');
});

test('routeBy rcpt: an unavailable first recipient answers 421 4.3.0 and closes', async () => {
  const r = raw('mail-rcpt');
  await r.reply();
  await r.command('EHLO client.example.org');
  await r.command('MAIL FROM:<s@example.org>');
  assert.equal((await r.command('RCPT TO:<a@sleepy.test>')).slice(0, 9), '421 4.3.0');
  await r.closedByPeer();
});

test('a client that vanishes mid-DATA leaves an aborted transaction, not a delivered half message', async () => {
  const before = alpha.messages.length;
  const abortedBefore = alpha.aborted;
  const r = raw();
  await r.reply();
  await r.command('EHLO alpha.test');
  r.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<x@alpha.test>\r\nDATA\r\n');
  for (const code of [250, 250, 354]) assert.equal((await r.reply())?.code, code);
  r.send('Subject: half\r\n\r\nonly the first half\r\n');
  await new Promise((resolve) => setTimeout(resolve, 100));
  r.destroy();
  const deadline = Date.now() + 5000;
  while (alpha.aborted === abortedBefore && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(alpha.aborted, abortedBefore + 1);
  assert.equal(alpha.messages.length, before);
});

test('routeBy rcpt: later recipients of another domain get 451 4.3.0, in pipelined order', async () => {
  const r = raw('mail-rcpt');
  await r.reply();
  const ehlo = await r.command('EHLO client.example.org');
  assert.equal(ehlo.slice(0, 3), '250');
  const arrived = alpha.next();
  r.send('MAIL FROM:<s@example.org>\r\nRCPT TO:<a@alpha.test>\r\nRCPT TO:<b@beta.test>\r\nRCPT TO:<c@alpha.test>\r\nRCPT TO:<d@unknown.test>\r\nDATA\r\n');
  const replies: string[] = [];
  for (let i = 0; i < 6; i++) replies.push(text(await r.reply()).slice(0, 9));
  assert.deepEqual(replies.map((s) => s.slice(0, 3)), ['250', '250', '451', '250', '550', '354']);
  assert.equal(replies[2], '451 4.3.0');
  assert.equal(replies[4], '550 5.1.2');
  r.send('Subject: mixed\r\n\r\n.\r\n'.replace('.\r\n', '..\r\n.\r\n'));
  assert.equal((await r.reply())?.code, 250);
  const got = await arrived;
  assert.deepEqual(got.to, ['a@alpha.test', 'c@alpha.test']);
  assert.equal(got.raw.toString(), 'Subject: mixed\r\n\r\n.\r\n');
  assert.equal(await r.command('QUIT').then((s) => s.slice(0, 3)), '221');
});

test('routeBy rcpt with nodemailer: mixed-domain recipients are split, nothing lost or misdelivered', async () => {
  const message = await compose('a@alpha.test, b@beta.test', 'mixed');
  const toAlpha = alpha.next();
  const t = transport('mail-rcpt', 'client.example.org');
  const info = await t.sendMail({ envelope: { from: 'sender@example.org', to: ['a@alpha.test', 'b@beta.test'] }, raw: message });
  assert.deepEqual(info.accepted, ['a@alpha.test']);
  assert.deepEqual(info.rejected, ['b@beta.test']);
  const first = await toAlpha;
  assert.deepEqual(first.to, ['a@alpha.test']);
  assert.deepEqual(first.raw, message);
  // The sender retries the deferred recipient in a separate transaction.
  const toBeta = beta.next();
  await t.sendMail({ envelope: { from: 'sender@example.org', to: ['b@beta.test'] }, raw: message });
  const second = await toBeta;
  assert.deepEqual(second.to, ['b@beta.test']);
  assert.deepEqual(second.raw, message);
});
