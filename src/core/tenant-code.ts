/**
 * Tenant code: a resolver is a user's module (DESIGN.md §2), and one
 * tenant's bug must not reach the process or the other tenants. Every call
 * into a resolver goes through here:
 *
 * - `tenantResolver` reads the user's object once, at load: getters and
 *   proxy traps run there (a failure is a load error), and the proxy then
 *   holds a plain object of bound methods it can test and call freely.
 * - `callHook` runs a fire-and-forget hook (onConnect, onDisconnect, track,
 *   purge): a sync throw, a rejected promise or thenable, a `then` getter
 *   that throws — each is counted in `polyproxy_resolver_hook_errors_total`
 *   and logged at most once per hook kind per minute, never thrown.
 * - `thenOf` + `adopt` turn whatever `resolve` returned into a promise of
 *   our own (a native promise, a Bluebird-like, a thenable that never
 *   settles) so the router can put one deadline on all of them.
 * - `describeError` reads a thrown value without trusting it (a hostile
 *   `message` getter, a Symbol, a proxy).
 */
import { types } from 'node:util';
import { log } from './logger.ts';
import { resolverHookErrors } from './metrics.ts';
import type { Resolver } from './resolver.ts';

/** The `hook` label. `wake` counts only a wake() promise no handler could be attached to: a wake that fails is the cold start's to report. */
export type HookName = 'resolve' | 'onConnect' | 'onDisconnect' | 'track' | 'purge' | 'stats' | 'wake';

const HOOKS = ['onConnect', 'onDisconnect', 'track', 'purge', 'stats'] as const;

/**
 * The user's resolver as a plain object of its methods, bound to it, read
 * once. A hook that is null or absent stays absent. Throws TypeError (the
 * caller makes it a load error) when `resolve` is not a function, a hook is
 * something else than a function, or reading a property throws.
 */
export function tenantResolver(user: object): Resolver {
  const u = user as Record<string, unknown>;
  const resolve = u.resolve;
  if (typeof resolve !== 'function') throw new TypeError('resolve must be a function');
  const resolver: Record<string, unknown> = { resolve: (resolve as () => unknown).bind(user) };
  for (const name of HOOKS) {
    const hook = u[name];
    if (hook === undefined || hook === null) continue;
    if (typeof hook !== 'function') throw new TypeError(`${name} must be a function when present, got ${typeof hook}`);
    resolver[name] = (hook as () => unknown).bind(user);
  }
  return resolver as unknown as Resolver;
}

/**
 * Runs a resolver hook whose answer nobody waits for. Whatever it does —
 * throw, return a promise that rejects, return a hostile thenable — is
 * counted and logged (rate-limited), never thrown and never left as an
 * unhandled rejection. `undefined` (the usual answer) costs no allocation.
 */
export function callHook(hook: HookName, call: () => unknown): void {
  let result: unknown;
  try {
    result = call();
  } catch (err) {
    hookFailed(hook, err);
    return;
  }
  if (result === undefined || result === null || (typeof result !== 'object' && typeof result !== 'function')) return;
  let then: ThenFunction | undefined;
  try {
    then = thenOf(result);
  } catch (err) {
    hookFailed(hook, err);
    return;
  }
  if (then !== undefined) adopt(hook, result, then).then(undefined, (err: unknown) => hookFailed(hook, err));
}

type ThenFunction = (this: unknown, onFulfilled: (value: unknown) => void, onRejected: (reason: unknown) => void) => unknown;

/**
 * The `then` method of a value tenant code returned, if it is a thenable
 * (read once: a getter may answer differently the next time). Throws what
 * a getter or proxy trap threw.
 */
export function thenOf(value: unknown): ThenFunction | undefined {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return undefined;
  const then = (value as { then?: unknown }).then;
  return typeof then === 'function' ? (then as ThenFunction) : undefined;
}

/**
 * A native promise of our own that settles as the tenant's thenable does,
 * or rejects with what its `then` threw. It may never settle: callers that
 * wait on it put a deadline on it (router.ts withDeadline).
 */
export function adopt(hook: HookName, value: object, then: ThenFunction): Promise<unknown> {
  return new Promise((resolve, reject) => {
    // A native promise is waited on through Promise.prototype.then whatever
    // its own `then` says, so its rejection is always handled.
    const native = types.isPromise(value);
    try {
      (native ? (Promise.prototype.then as ThenFunction) : then).call(value, resolve, reject);
    } catch (err) {
      // Promise.prototype.then reads `constructor` (species): a hostile getter
      // there throws before any reaction is attached, so a later rejection
      // would be unhandled and end the process. Absorb it when it comes.
      if (native) orphan(hook, value as Promise<unknown>);
      reject(err);
    }
  });
}

/** Native promises from tenant code that no handler could be attached to, with the hook that returned each. */
const orphans = new WeakMap<Promise<unknown>, HookName>();
let orphanListener = false;

function orphan(hook: HookName, promise: Promise<unknown>): void {
  orphans.set(promise, hook);
  if (orphanListener) return;
  orphanListener = true;
  process.on('unhandledRejection', absorbOrphan);
}

function absorbOrphan(reason: unknown, promise: Promise<unknown>): void {
  const hook = orphans.get(promise);
  if (hook !== undefined) {
    orphans.delete(promise);
    hookFailed(hook, reason);
    return;
  }
  // Not tenant code's: keep Node's default for our own bugs (a crash with the reason).
  process.nextTick(rethrow, reason);
}

function rethrow(reason: unknown): never {
  throw reason;
}

/** How often each hook kind's failures are logged (every one is counted). */
const LOG_INTERVAL_MS = 60_000;
const MAX_DESCRIPTION = 500;

interface LogState {
  at: number;
  suppressed: number;
}

const logged = new Map<HookName, LogState>();

/** Counts a failed hook call and logs it, once per hook kind per minute (with how many were not logged since). */
export function hookFailed(hook: HookName, err: unknown): void {
  resolverHookErrors.inc({ hook });
  const now = Date.now();
  const state = logged.get(hook);
  if (state !== undefined && now - state.at < LOG_INTERVAL_MS) {
    state.suppressed++;
    return;
  }
  const suppressed = state?.suppressed ?? 0;
  logged.set(hook, { at: now, suppressed: 0 });
  // The error is described, never handed to pino: its serializer would read tenant getters.
  log.error({ hook, err: describeError(err), stack: stackOf(err), suppressed }, `resolver ${hook} failed (logged once per minute per hook; all are counted in polyproxy_resolver_hook_errors_total)`);
}

/** A one-line description of anything thrown, without trusting it. */
export function describeError(err: unknown): string {
  let text: string;
  try {
    if (err instanceof Error) text = `${String(err.name)}: ${String(err.message)}`;
    else if (err !== null && typeof err === 'object') text = `thrown ${Object.prototype.toString.call(err)}`;
    else text = typeof err === 'symbol' ? err.toString() : String(err);
  } catch {
    text = 'a thrown value that cannot be read';
  }
  return text.length > MAX_DESCRIPTION ? `${text.slice(0, MAX_DESCRIPTION)}...` : text;
}

function stackOf(err: unknown): string | undefined {
  try {
    const stack = err instanceof Error ? err.stack : undefined;
    return typeof stack === 'string' ? stack : undefined;
  } catch {
    return undefined;
  }
}
