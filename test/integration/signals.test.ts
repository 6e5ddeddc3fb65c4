/**
 * issue 19: SIGTERM/SIGINT to the process the user started — the bin itself,
 * the Node 24 forwarder, `npm run`, `npx`, a container's PID 1 — drains and
 * exits, and leaves no process behind. Each run is started in its own process
 * group and signalled by the PID the test spawned; afterwards the group must
 * be empty and the polyproxy process gone.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { BIN, ROOT } from '../helpers/cli.ts';
import { exitedWithin, killGroup, startInGroup, waitGone } from '../helpers/process-group.ts';
import type { Started } from '../helpers/process-group.ts';

const ONE_LINE = ['--protocol', 'tcp', '--port', '0', '--host', '127.0.0.1', '--backend', '127.0.0.1:9'];
/** Node 24 first on PATH, as `npm test` has it, so npm and npx run on it. */
const ENV = { ...process.env, PATH: `${path.join(ROOT, 'node_modules/.bin')}:${process.env.PATH ?? ''}`, POLYPROXY_LOG_LEVEL: 'info' };

async function signalled(run: Started, signal: NodeJS.Signals): Promise<void> {
  const group = run.child.pid as number;
  try {
    process.kill(group, signal);
    await exitedWithin(run);
    assert.ok(await waitGone(group, [run.proxyPid]), `processes left after ${signal}:\n${run.output()}`);
    assert.match(run.output(), /"msg":"shutdown complete"/, 'polyproxy drained (logged "shutdown complete")');
  } finally {
    killGroup(group, [run.proxyPid]);
  }
}

/** An older Node than 24 on this machine, to run the bin's forwarder with. */
function olderNode(): string | null {
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node']) {
    if (!existsSync(candidate)) continue;
    const version = execFileSync(candidate, ['-p', 'process.versions.node'], { encoding: 'utf8' });
    if (Number(version.split('.')[0]) < 24) return candidate;
  }
  return null;
}

describe('signals: the bin directly (Node 24)', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} drains and exits`, async () => {
      const run = await startInGroup(process.execPath, [BIN, ...ONE_LINE], { cwd: ROOT, env: ENV });
      assert.equal(run.proxyPid, run.child.pid, 'no wrapper process on Node 24');
      await signalled(run, signal);
      assert.equal((await exitedWithin(run)).code, 0);
    });
  }
});

describe('signals: the bin on an older Node forwards to Node 24', () => {
  const old = olderNode();
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} to the forwarder drains the Node 24 child`, { skip: old === null ? 'no Node older than 24 here' : false }, async () => {
      const run = await startInGroup(old as string, [BIN, ...ONE_LINE], { cwd: ROOT, env: process.env });
      assert.notEqual(run.proxyPid, run.child.pid, 'the proxy runs in a Node 24 child');
      await signalled(run, signal);
    });
  }
  it('says what is needed when no Node 24 is installed', { skip: old === null ? 'no Node older than 24 here' : false }, () => {
    // From / (no project) and with the bin copied where no `node` package resolves.
    let stderr = '';
    try {
      execFileSync(old as string, ['--input-type=module', '-e', readFileSync(BIN, 'utf8').replace(/^#!.*\n/, '')], { cwd: '/', encoding: 'utf8', stdio: 'pipe' });
    } catch (err) {
      stderr = (err as { stderr: string }).stderr;
    }
    assert.match(stderr, /polyproxy needs Node\.js 24 or newer/);
  });
});

describe('signals: npm run', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} to npm drains and exits`, async () => {
      const run = await startInGroup('npm', ['run', '-s', 'start', '--', ...ONE_LINE], { cwd: ROOT, env: ENV, timeoutMs: 60000 });
      await signalled(run, signal);
    });
  }
});

describe('signals: npx', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} to npm exec drains and exits`, async () => {
      const run = await startInGroup('npx', ['polyproxy', ...ONE_LINE], { cwd: ROOT, env: ENV, timeoutMs: 180000 });
      await signalled(run, signal);
    });
  }
  it('SIGTERM with /bin/sh as npm\'s script shell (dash does not pass it on): polyproxy sees its parent go and drains', async () => {
    const run = await startInGroup('npx', ['polyproxy', ...ONE_LINE], { cwd: ROOT, env: { ...ENV, npm_config_script_shell: '/bin/sh' }, timeoutMs: 180000 });
    await signalled(run, 'SIGTERM');
  });
});

describe('signals: PID 1 of a PID namespace (a container)', () => {
  const canUnshare = ((): boolean => {
    try {
      execFileSync('unshare', ['--pid', '--fork', 'true'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  it('SIGTERM to PID 1 drains and exits', { skip: canUnshare ? false : 'unshare --pid is not permitted here' }, async () => {
    const run = await startInGroup('unshare', ['--pid', '--fork', process.execPath, BIN, ...ONE_LINE], { cwd: ROOT, env: ENV });
    assert.equal(run.proxyPid, 1, 'polyproxy is PID 1 in its namespace');
    const group = run.child.pid as number;
    let hostPid = 0;
    try {
      // The host pid of the namespace's PID 1: unshare's only child.
      hostPid = Number(readdirSync(`/proc/${group}/task`).flatMap((task) => readFileSync(`/proc/${group}/task/${task}/children`, 'utf8').trim().split(/\s+/))[0]);
      assert.ok(hostPid > 1, `no child of unshare (pid ${group}) in /proc`);
      process.kill(hostPid, 'SIGTERM');
      assert.equal((await exitedWithin(run)).code, 0);
      assert.ok(await waitGone(group, [hostPid]), `processes left:\n${run.output()}`);
      assert.match(run.output(), /"msg":"shutdown complete"/);
    } finally {
      killGroup(group, [hostPid]);
    }
  });
});
