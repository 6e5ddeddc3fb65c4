/**
 * issue 19: the first `npx polyproxy demo` in the checkout. It prints what it
 * is doing at once, prints no EBADENGINE warning (npm runs on the machine's
 * Node while polyproxy runs on the pinned Node 24: the version check is the
 * bin's, at run time), and does not rebuild the checkout (`prepare` skips the
 * build under `npm exec` when dist/ exists).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ROOT } from '../helpers/cli.ts';
import { killGroup, startInGroup, waitGone } from '../helpers/process-group.ts';

/** The user's PATH: the machine's own node/npm, without the checkout's node_modules/.bin. */
const USER_PATH = (process.env.PATH ?? '')
  .split(':')
  .filter((dir) => !dir.startsWith(path.join(ROOT, 'node_modules')) && !dir.includes('node-gyp-bin'))
  .join(':');

describe('first run: npx polyproxy demo', () => {
  it('prints progress first, no engine warning, no rebuild, then ready', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: USER_PATH, POLYPROXY_DEMO_PG_PORT: '0', POLYPROXY_DEMO_TCP_PORT: '0', POLYPROXY_DEMO_ADMIN_PORT: '0' };
    for (const key of Object.keys(env)) if (key.startsWith('npm_')) delete env[key];
    const run = await startInGroup('npx', ['polyproxy', 'demo'], { cwd: ROOT, env, timeoutMs: 120000 });
    const group = run.child.pid as number;
    try {
      const output = run.output();
      assert.doesNotMatch(output, /EBADENGINE/);
      assert.doesNotMatch(output, /> tsc|npm run build/, 'npx did not rebuild the checkout');
      const starting = output.indexOf('polyproxy demo: starting');
      assert.ok(starting >= 0, output);
      assert.ok(starting < output.indexOf('"polyproxy ready"'), 'progress is printed before the proxy is up');
      process.kill(group, 'SIGTERM');
      await run.exited;
      assert.ok(await waitGone(group, [run.proxyPid]), run.output());
    } finally {
      killGroup(group, [run.proxyPid]);
    }
  });
});
