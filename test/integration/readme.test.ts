/**
 * issue 19: the README's commands run as written. Every ```sh block after a
 * `<!-- readme-test: run -->` marker runs here, line by line, in a temp
 * folder holding the files of the `<!-- readme-test: file NAME -->` blocks
 * of the same section. Pragmatic substitutions, each said here:
 * - `npx polyproxy` runs `node bin/polyproxy.js` (npx itself is tested in
 *   signals.test.ts and package.test.ts); `npm install` lines are skipped.
 * - the proxy's listening ports (6432, 3307, 7000, 9900) become free ports,
 *   so the test runs next to whatever else uses them; backend ports stay.
 * - `<!-- readme-test: run with CMD -->` runs CMD first (a block that
 *   uses the proxy the block before started).
 * - a polyproxy line that runs a proxy starts it in the background until
 *   "polyproxy ready" (the README means another terminal); it is stopped
 *   with SIGTERM at the end of the block.
 * A line whose comment says `# refused: TEXT` must fail and print TEXT;
 * `# twice: …` runs twice and the two answers must differ (round-robin).
 * Everything else must exit 0.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { BIN, ROOT } from '../helpers/cli.ts';
import { killGroup, startInGroup, waitGone } from '../helpers/process-group.ts';
import type { Started } from '../helpers/process-group.ts';
import { canConnect, serviceMissing } from '../helpers/services.ts';

const exec = promisify(execFile);
const PROXY_PORTS = ['6432', '3307', '7000', '9900'];

interface Block {
  readonly section: string;
  readonly lines: string[];
  readonly files: Record<string, string>;
}

function runnableBlocks(): Block[] {
  const lines = readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('\n');
  const blocks: Block[] = [];
  let section = '';
  let files: Record<string, string> = {};
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line.startsWith('## ')) {
      section = line.slice(3);
      files = {};
    }
    const marker = /^<!-- readme-test: (run(?: with (.+))?|file (\S+)) -->$/.exec(line);
    if (marker === null) continue;
    const start = i + 2;
    let end = start;
    while (lines[end] !== '```') end++;
    const body = lines.slice(start, end);
    if (marker[3] !== undefined) files = { ...files, [marker[3]]: `${body.join('\n')}\n` };
    else blocks.push({ section, lines: [...(marker[2] === undefined ? [] : [marker[2]]), ...body.filter((l) => l.trim() !== '')], files });
    i = end;
  }
  return blocks;
}

async function freePort(): Promise<string> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return String(port);
}

/** Services a block talks to, by what it names. */
async function missingService(text: string): Promise<string | null> {
  const needs: Array<[RegExp, string, number]> = [
    [/127\.0\.0\.1:5432|user=postgres/, 'PostgreSQL', 5432],
    [/3306/, 'MariaDB', 3306],
    [/6379/, 'Redis', 6379],
  ];
  for (const [pattern, name, port] of needs) {
    if (!pattern.test(text)) continue;
    const why = await serviceMissing(`${name} is not reachable on 127.0.0.1:${port}`, () => canConnect('127.0.0.1', port));
    if (why !== null) return why;
  }
  return null;
}

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe('README: commands run as written', () => {
  const blocks = runnableBlocks();
  it('has runnable blocks', () => assert.ok(blocks.length >= 6, `found ${blocks.length}`));

  blocks.forEach((block, n) => {
    it(`${block.section} #${n}: ${block.lines.find((l) => !l.startsWith('npm install')) ?? ''}`, async (t) => {
      const why = await missingService([...block.lines, ...Object.values(block.files)].join('\n'));
      if (why !== null) return t.skip(why);
      const ports = new Map<string, string>();
      for (const port of PROXY_PORTS) ports.set(port, await freePort());
      const substitute = (text: string): string => text.replace(/\b(6432|3307|7000|9900)\b/g, (p) => ports.get(p) as string);
      const dir = await mkdtemp(path.join(os.tmpdir(), 'polyproxy-readme-'));
      dirs.push(dir);
      for (const [name, text] of Object.entries(block.files)) await writeFile(path.join(dir, name), substitute(text));
      const env: NodeJS.ProcessEnv = { ...process.env, POLYPROXY_DEMO_PG_PORT: ports.get('6432'), POLYPROXY_DEMO_TCP_PORT: ports.get('7000'), POLYPROXY_DEMO_ADMIN_PORT: ports.get('9900'), PGCONNECT_TIMEOUT: '10' };
      for (const key of Object.keys(env)) if (key.startsWith('POLYPROXY_') && !key.startsWith('POLYPROXY_DEMO_')) delete env[key];
      const servers: Started[] = [];
      try {
        for (const raw of block.lines) {
          if (raw.startsWith('npm install')) continue;
          const line = substitute(raw).replace(/\bnpx polyproxy\b/g, `"${process.execPath}" "${BIN}"`);
          const comment = /#\s*(refused|twice):\s*(.*)$/.exec(raw);
          const runsProxy = raw.includes('npx polyproxy') && !/npx polyproxy (check|fastcgi|help)/.test(raw);
          if (runsProxy) {
            // bash execs a lone simple command (assignments included): the PID is polyproxy's.
            servers.push(await startInGroup('bash', ['-c', line], { cwd: dir, env, timeoutMs: 60000 }));
            continue;
          }
          const once = (): Promise<{ code: number; stdout: string; stderr: string }> =>
            exec('bash', ['-c', line], { cwd: dir, env, timeout: 30000 }).then(
              ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
              (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }),
            );
          const first = await once();
          if (comment?.[1] === 'refused') {
            assert.notEqual(first.code, 0, `${raw}\nshould fail`);
            assert.ok(first.stderr.includes((comment[2] as string).trim()), `${raw}\nstderr: ${first.stderr}`);
            continue;
          }
          assert.equal(first.code, 0, `${raw}\nexit ${first.code}\nstdout: ${first.stdout}\nstderr: ${first.stderr}`);
          if (comment?.[1] === 'twice') {
            const second = await once();
            assert.equal(second.code, 0, second.stderr);
            assert.notEqual(second.stdout, first.stdout, `${raw}: the second run reached the other backend`);
          }
        }
      } finally {
        for (const server of servers) {
          const group = server.child.pid as number;
          try {
            process.kill(group, 'SIGTERM');
          } catch {
            // already gone
          }
          await server.exited;
          await waitGone(group, [server.proxyPid]);
          killGroup(group, [server.proxyPid]);
        }
      }
    });
  });
});
