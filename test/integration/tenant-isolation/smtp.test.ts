/**
 * Tenant isolation, SMTP (issue 15, defence 3). Domains `allowed.iso.test`
 * (routed), `refused.iso.test` (absent: NOT_FOUND) and
 * `forbidden.iso.test` (the resolver module throws FORBIDDEN) all live on
 * one sink: the most lenient backend there is, which answers 250 to any
 * command and records every command line. Through a session routed to
 * `allowed`, no command naming a refused domain may reach it.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import nodemailer from 'nodemailer';
import { parseConfig } from '../../../src/config/load.ts';
import { startProxy } from '../../../src/supervisor/proxy.ts';
import type { RunningProxy } from '../../../src/supervisor/proxy.ts';
import { ROOT } from '../../helpers/cli.ts';
import { RawSmtp } from '../../helpers/smtp.ts';

const ALLOWED = 'allowed.iso.test';
const REFUSED = ['refused.iso.test', 'forbidden.iso.test'] as const;

/** Command lines the sink received (message content excluded). */
const seen: string[] = [];
let sink: net.Server;
let proxy: RunningProxy | undefined;
const raws: RawSmtp[] = [];

function startSink(): Promise<net.Server> {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.write('220 sink ESMTP\r\n');
    let buffered = '';
    let content = false;
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl + 1);
        buffered = buffered.slice(nl + 1);
        if (content) {
          if (line === '.\r\n') {
            content = false;
            socket.write('250 2.0.0 queued\r\n');
          }
          continue;
        }
        seen.push(line.trimEnd());
        const verb = line.trimStart().slice(0, 4).toUpperCase();
        if (verb === 'EHLO') socket.write('250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n');
        else if (verb === 'DATA') {
          content = true;
          socket.write('354 go ahead\r\n');
        } else if (verb === 'QUIT') socket.end('221 bye\r\n');
        else socket.write('250 2.0.0 OK\r\n');
      }
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

before(async () => {
  sink = await startSink();
  const config = parseConfig(
    {
      workers: 1,
      logLevel: 'silent',
      security: { allowBackends: ['127.0.0.0/8'] },
      resolver: { module: 'test/fixtures/tenant-isolation-resolver.ts' },
      routes: { [ALLOWED]: `127.0.0.1:${(sink.address() as net.AddressInfo).port}` },
      listeners: [
        { name: 'rcpt', protocol: 'smtp', host: '127.0.0.1', port: 0, hostname: 'mx.iso.test', routeBy: 'rcpt' },
        { name: 'ehlo', protocol: 'smtp', host: '127.0.0.1', port: 0, hostname: 'mx.iso.test', routeBy: 'ehlo' },
      ],
    },
    ROOT,
  );
  proxy = await startProxy(config);
});

after(async () => {
  for (const r of raws) r.destroy();
  await proxy?.drain(1000);
  await new Promise((resolve) => sink.close(resolve));
});

function port(name: string): number {
  const bound = proxy?.bound.find((b) => b.name === name);
  assert.ok(bound !== undefined);
  return bound.port;
}

function raw(name: string): RawSmtp {
  const r = new RawSmtp(port(name));
  raws.push(r);
  return r;
}

function assertSinkNeverSaw(label: string): void {
  for (const refused of REFUSED) {
    const leaked = seen.filter((line) => line.toLowerCase().includes(refused.split('.')[0] as string));
    assert.deepEqual(leaked, [], `${label}: the sink got commands naming ${refused}`);
  }
}

/** RCPT lines that name a refused domain, each the way some server would read it. */
function rcptForms(domain: string): string[] {
  return [
    `RCPT TO:<b@${domain}>`,
    `rcpt to:<b@${domain.toUpperCase()}.>`,
    `RCPT TO: <b@${domain}>`,
    `RCPT TO:b@${domain}`,
    `RCPT\tTO:<b@${domain}>`,
    ` RCPT TO:<b@${domain}>`,
    `RCPT TO:<"x>y"@${domain}>`,
    `RCPT TO:<@${ALLOWED}:b@${domain}>`,
    `RCPT TO:<b@${domain}> NOTIFY=NEVER`,
  ];
}

test('routeBy rcpt: a refused recipient after an allowed one never reaches the backend, in every form', async () => {
  for (const domain of REFUSED) {
    for (const form of rcptForms(domain)) {
      const c = raw('rcpt');
      await c.reply();
      assert.match(await c.command('EHLO client.example'), /^250/);
      assert.match(await c.command('MAIL FROM:<s@example.org>'), /^250/);
      assert.match(await c.command(`RCPT TO:<a@${ALLOWED}>`), /^250/);
      assert.match(await c.command(form), /^[45]\d\d/, form);
      // Pipelined, after RSET and in a new transaction: still refused.
      c.send(`RSET\r\nMAIL FROM:<s@example.org>\r\n${form}\r\n`);
      assert.match(String((await c.reply())?.code), /^250$/);
      assert.match(String((await c.reply())?.code), /^250$/);
      assert.match(String((await c.reply())?.code), /^[45]\d\d$/, `pipelined ${form}`);
      c.destroy();
      assertSinkNeverSaw(form);
    }
  }
  assert.ok(seen.some((line) => line.includes(`a@${ALLOWED}`)), 'the allowed recipient reached the sink');
});

test('routeBy rcpt: a refused first recipient is refused, then an allowed one routes', async () => {
  for (const domain of REFUSED) {
    const c = raw('rcpt');
    await c.reply();
    await c.command('EHLO client.example');
    await c.command('MAIL FROM:<s@example.org>');
    assert.match(await c.command(`RCPT TO:<b@${domain}>`), /^5\d\d/);
    assert.match(await c.command(`RCPT TO:<a@${ALLOWED}>`), /^250/);
    c.destroy();
  }
  assertSinkNeverSaw('first recipient');
});

test('routeBy rcpt: nodemailer to an allowed and a refused recipient delivers only the allowed one', async () => {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: port('rcpt'), secure: false, ignoreTLS: true, name: 'client.example' });
  const info = await transport.sendMail({ from: 's@example.org', to: [`a@${ALLOWED}`, ...REFUSED.map((d) => `b@${d}`)], subject: 'iso', text: 'x' });
  assert.deepEqual(info.accepted, [`a@${ALLOWED}`]);
  assert.deepEqual([...info.rejected].sort(), REFUSED.map((d) => `b@${d}`).sort());
  transport.close();
  assertSinkNeverSaw('nodemailer');
});

test('routeBy ehlo: a refused greeting is refused; a second EHLO or HELO naming it after routing never reaches the backend', async () => {
  for (const domain of REFUSED) {
    const first = raw('ehlo');
    await first.reply();
    assert.match(await first.command(`EHLO ${domain}`), /^5\d\d/);
    first.destroy();
    for (const verb of ['EHLO', 'HELO', 'ehlo', ' EHLO']) {
      const c = raw('ehlo');
      await c.reply();
      assert.match(await c.command(`EHLO ${ALLOWED}`), /^250/);
      assert.match(await c.command(`${verb} ${domain}`), /^5\d\d/, verb);
      assert.match(await c.command(`EHLO ${ALLOWED}`), /^250/, 'the session goes on');
      c.destroy();
    }
  }
  assertSinkNeverSaw('second EHLO');
});
