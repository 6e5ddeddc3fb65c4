/**
 * The line protocol of the bench's helper processes (hold-clients,
 * idle-clients, ws-load): one command per stdin line (`name arg…`), one JSON
 * object per stdout line. The harness drives them through bench/lib/process.ts.
 */
import { createInterface } from 'node:readline';

/** Writes one JSON message line to the harness. */
export function reply(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

export type Command = (args: readonly string[]) => unknown;

/**
 * Serves commands until stdin closes (or SIGTERM), then exits. `queued`
 * commands run one after another, each after the previous one settled;
 * `immediate` ones run as they arrive (toggles and readings that must not
 * wait behind a long open). Announces `{"type":"ready"}` first.
 */
export function serveCommands(queued: Readonly<Record<string, Command>>, immediate: Readonly<Record<string, Command>> = {}): void {
  let queue: Promise<unknown> = Promise.resolve();
  createInterface({ input: process.stdin })
    .on('line', (line) => {
      const [command = '', ...args] = line.trim().split(/\s+/);
      const now = immediate[command];
      if (now !== undefined) {
        now(args);
        return;
      }
      queue = queue.then(() => {
        const run = queued[command];
        return run === undefined ? reply({ type: 'error', message: `unknown command ${line}` }) : run(args);
      });
    })
    .on('close', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
  reply({ type: 'ready', pid: process.pid });
}
