/**
 * SMTP load: `--connections` sessions at once, each sends EHLO `--ehlo`
 * once, then as many small messages as it can for `--seconds`: MAIL FROM,
 * RCPT TO and DATA in one write (PIPELINING), wait for the 354, then the
 * message and its final ".". Ends with QUIT.
 *
 * `--pipeline` (RFC 2920 3.1, and its example with several messages): the
 * final "." of one message and the next MAIL FROM, RCPT TO and DATA go in
 * the same write, so a message costs one round trip (wait for the 354)
 * instead of two (354, then the 250 for the message). Without it the
 * client waits for the message's 250 before the next envelope.
 *
 * Prints `{"type":"result","messages":N,"seconds":S,"cpuSeconds":C}` (C: this
 * process's user+system CPU, so a run can tell whether the load generator
 * was the limit) and exits.
 *
 *   node bench/lib/smtp-load.ts --port N [--connections 8] [--seconds 10] [--ehlo bench.test] [--size 512] [--pipeline]
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
    pipeline: { type: 'boolean', default: false },
  },
});
if (values.port === undefined) throw new Error('--port is required');
const port = Number(values.port);
const pipeline = values.pipeline;
const deadline = Date.now() + Number(values.seconds) * 1000;
const domain = values.ehlo;
const ENVELOPE = Buffer.from(`MAIL FROM:<sender@${domain}>\r\nRCPT TO:<rcpt@${domain}>\r\nDATA\r\n`);
const head = `From: sender@${domain}\r\nTo: rcpt@${domain}\r\nSubject: bench\r\nMessage-ID: <bench@${domain}>\r\n\r\n`;
const bodyLine = `${'x'.repeat(70)}\r\n`;
const MESSAGE = Buffer.from(`${head}${bodyLine.repeat(Math.max(1, Math.ceil((Number(values.size) - head.length) / bodyLine.length)))}.\r\n`);
const MESSAGE_AND_ENVELOPE = Buffer.concat([MESSAGE, ENVELOPE]);
const QUIT = Buffer.from('QUIT\r\n');
const MESSAGE_AND_QUIT = Buffer.concat([MESSAGE, QUIT]);

/** What a reply answers (replies come in command order, RFC 2920). */
const BANNER = 0;
const EHLO = 1;
const MAIL = 2;
const RCPT = 3;
const DATA = 4;
const MESSAGE_END = 5;
const QUIT_REPLY = 6;
const EXPECTED_CODE = [220, 250, 250, 250, 354, 250, 221];

/** One session; resolves with the number of messages accepted (250 after the final "."). */
function session(): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: values.host, port, noDelay: true });
    let sent = 0;
    const expected: number[] = [BANNER];
    // The first 4 bytes of the reply line being read, and how many came.
    const lineHead = Buffer.alloc(4);
    let fill = 0;
    const onReply = (code: number): void => {
      const what = expected.shift();
      if (what === undefined || code !== EXPECTED_CODE[what]) {
        socket.destroy();
        reject(new Error(`unexpected reply ${code} (expected ${what === undefined ? 'none' : EXPECTED_CODE[what]})`));
        return;
      }
      switch (what) {
        case BANNER:
          socket.write(`EHLO ${domain}\r\n`);
          expected.push(EHLO);
          break;
        case EHLO:
          socket.write(ENVELOPE);
          expected.push(MAIL, RCPT, DATA);
          break;
        case DATA:
          if (!pipeline) {
            socket.write(MESSAGE);
            expected.push(MESSAGE_END);
          } else if (Date.now() < deadline) {
            socket.write(MESSAGE_AND_ENVELOPE);
            expected.push(MESSAGE_END, MAIL, RCPT, DATA);
          } else {
            socket.write(MESSAGE_AND_QUIT);
            expected.push(MESSAGE_END, QUIT_REPLY);
          }
          break;
        case MESSAGE_END:
          sent++;
          if (!pipeline) {
            if (Date.now() < deadline) {
              socket.write(ENVELOPE);
              expected.push(MAIL, RCPT, DATA);
            } else {
              socket.write(QUIT);
              expected.push(QUIT_REPLY);
            }
          }
          break;
        case QUIT_REPLY:
          socket.end();
          break;
        default:
          break;
      }
    };
    socket.on('data', (chunk: Buffer) => {
      for (let i = 0; i < chunk.length; i++) {
        const b = chunk[i] as number;
        if (b === 0x0a) {
          // Only the last line of a reply ("250 ok", not "250-PIPELINING") counts.
          if (fill >= 3 && lineHead[3] !== 0x2d) onReply(((lineHead[0] as number) - 48) * 100 + ((lineHead[1] as number) - 48) * 10 + ((lineHead[2] as number) - 48));
          fill = 0;
          lineHead[3] = 0;
        } else if (fill < 4) {
          lineHead[fill++] = b;
        }
      }
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(sent));
  });
}

const started = process.hrtime.bigint();
const counts = await Promise.all(Array.from({ length: Number(values.connections) }, session));
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const cpu = process.cpuUsage();
process.stdout.write(`${JSON.stringify({ type: 'result', messages: counts.reduce((a, b) => a + b, 0), seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 })}\n`);
process.exit(0);
