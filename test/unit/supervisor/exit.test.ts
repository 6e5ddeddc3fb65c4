/**
 * src/supervisor/exit.ts: a drained process ends by letting its event loop
 * run dry (Node emits 'beforeExit' only on that path, never on
 * process.exit()), with the code it was given; the supervisor's IPC channel
 * does not hold it; a handle someone forgot still cannot keep it alive.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const EXIT = fileURLToPath(new URL('../../../src/supervisor/exit.ts', import.meta.url));

/** Runs `body` in a child Node after importing exitWhenIdle; its output and exit code. */
function child(body: string, ipc = false): Promise<{ code: number | null; output: string }> {
  const script = `import { exitWhenIdle } from ${JSON.stringify(EXIT)};
process.on('beforeExit', () => process.stdout.write('natural exit\\n'));
${body}`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ipc ? ['ignore', 'pipe', 'inherit', 'ipc'] : ['ignore', 'pipe', 'inherit'] });
  let output = '';
  proc.stdout?.setEncoding('utf8').on('data', (text: string) => (output += text));
  return new Promise((resolve) => proc.once('close', (code) => resolve({ code, output })));
}

describe('exitWhenIdle', () => {
  it('exits with the code through a natural exit when nothing holds the loop', async () => {
    const { code, output } = await child('exitWhenIdle(3);');
    assert.equal(code, 3);
    assert.match(output, /natural exit/);
  });

  it('closes the IPC channel a supervisor left open, then exits naturally', async () => {
    const { code, output } = await child('exitWhenIdle(0);', true);
    assert.equal(code, 0);
    assert.match(output, /natural exit/);
  });

  it('still exits, with the code, when a forgotten handle holds the loop', async () => {
    const { code, output } = await child('setInterval(() => {}, 1000); exitWhenIdle(4);');
    assert.equal(code, 4);
    assert.doesNotMatch(output, /natural exit/);
  });
});
