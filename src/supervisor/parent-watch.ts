/**
 * Drains when the process that started polyproxy goes away without passing
 * a signal on. `npx polyproxy` and `npm run` start it through `sh -c`; npm
 * forwards SIGTERM/SIGINT to that shell, not to polyproxy, and a shell that
 * does not exec its last command (Debian's dash) dies of the SIGTERM and
 * leaves polyproxy running, reparented (npm/cli#5776). Only then — started
 * by npm (`npm_lifecycle_event` set) or by bin/polyproxy.js's Node 24
 * forwarder (POLYPROXY_PARENT_WATCH=1) — is the parent watched: a proxy
 * started with `nohup … &` from a shell must outlive that shell.
 *
 * process.ppid reads getppid() each time; a reparented process sees its
 * subreaper's or init's pid. One coarse unref'd timer, off the hot path.
 */
const CHECK_MS = 500;

export function watchParent(onGone: () => void, env: NodeJS.ProcessEnv = process.env): NodeJS.Timeout | null {
  if (env.npm_lifecycle_event === undefined && env.POLYPROXY_PARENT_WATCH !== '1') return null;
  const parent = process.ppid;
  if (parent <= 1) return null;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onGone();
  }, CHECK_MS);
  timer.unref();
  return timer;
}
