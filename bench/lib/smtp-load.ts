/**
 * SMTP load: `--connections` sessions at once, each sends EHLO `--ehlo`
 * once, then as many small messages as it can for `--seconds`: MAIL FROM,
 * RCPT TO and DATA in one write (PIPELINING), wait for the 354, then the
 * message and its final "." in one write, wait for the 250. Ends with QUIT.
 * Prints `{"type":"result","messages":N,"seconds":S}` and exits.
 *
 *   node bench/lib/smtp-load.ts --port N [--connections 8] [--seconds 10] [--ehlo bench.test] [--size 512]
 */
import net from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    connections: { type: 'string', default: '8' },
    seconds: { type: 'string', default: '10' },
    ehlo: { type: 'string', default: 'bench.test' },
    size: { type: 'string', default: '512' },
  },
});
if (values.port === undefined) throw new Error('--port is required');
const port = Number(values.port);
const deadline = Date.now() + Number(values.seconds) * 1000;
const domain = values.ehlo;
const ENVELOPE = Buffer.from(`MAIL FROM:<sender@${domain}>\r\nRCPT TO:<rcpt@${domain}>\r\nDATA\r\n`);
const head = `From: sender@${domain}\r\nTo: rcpt@${domain}\r\nSubject: bench\r\nMessage-ID: <bench@${domain}>\r\n\r\n`;
const bodyLine = `${'x'.repeat(70)}\r\n`;
const MESSAGE = Buffer.from(`${head}${bodyLine.repeat(Math.max(1, Math.ceil((Number(values.size) - head.length) / bodyLine.length)))}.\r\n`);

/** One session; resolves with the number of messages accepted (250 after the final "."). */
function session(): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: values.host, port, noDelay: true });
    let buffered = '';
    let sent = 0;
    // Replies still expected before the next step, and what to do then.
    let state: 'banner' | 'ehlo' | 'envelope' | 'data' | 'quit' = 'banner';
    let expect = 1;
    const step = (code: number, line: string): void => {
      const fail = (): void => {
        socket.destroy();
        reject(new Error(`unexpected reply in ${state}: ${line}`));
      };
      if (state === 'banner') {
        if (code !== 220) return fail();
        state = 'ehlo';
        socket.write(`EHLO ${domain}\r\n`);
      } else if (state === 'ehlo') {
        if (code !== 250) return fail();
        state = 'envelope';
        expect = 3;
        socket.write(ENVELOPE);
      } else if (state === 'envelope') {
        if (--expect > 0) {
          if (code !== 250) return fail();
          return;
        }
        if (code !== 354) return fail();
        state = 'data';
        expect = 1;
        socket.write(MESSAGE);
      } else if (state === 'data') {
        if (code !== 250) return fail();
        sent++;
        if (Date.now() >= deadline) {
          state = 'quit';
          socket.write('QUIT\r\n');
        } else {
          state = 'envelope';
          expect = 3;
          socket.write(ENVELOPE);
        }
      } else {
        socket.end();
      }
    };
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        // Only the last line of a reply ("250 ok", not "250-PIPELINING") counts.
        if (line.length >= 4 && line[3] === '-') continue;
        step(Number(line.slice(0, 3)), line);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(sent));
  });
}

const started = process.hrtime.bigint();
const counts = await Promise.all(Array.from({ length: Number(values.connections) }, session));
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
process.stdout.write(`${JSON.stringify({ type: 'result', messages: counts.reduce((a, b) => a + b, 0), seconds })}\n`);
process.exit(0);
