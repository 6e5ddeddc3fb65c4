/**
 * Ends the process after a drain by letting the event loop run dry, not by
 * process.exit(). Node's process.exit() can deadlock for good: it shuts the
 * V8 platform's worker threads down (NodePlatform::Shutdown joins them)
 * before the isolate is torn down, and a background compile job that is
 * waiting for a main-thread GC at that moment (CollectionBarrier::
 * AwaitCollectionBackground) never returns (nodejs/node#54918). Here that
 * left 2 of 60 drained processes hanging after "shutdown complete". A
 * natural exit disposes the isolate first, which releases such a job.
 *
 * A drained proxy has closed its listeners, sessions, pools and timers;
 * what may still hold the loop is the supervisor's IPC channel, closed
 * here. If anything else keeps the loop alive (a resolver call still
 * pending past the drain deadline holds its own timer), process.exit()
 * follows after FALLBACK_MS: the drain deadline stays hard. Unref'd, so it
 * never delays a natural exit, which takes a few ms after the drain.
 */
const FALLBACK_MS = 250;

export function exitWhenIdle(code: number): void {
  process.exitCode = code;
  if (process.connected) process.disconnect();
  setTimeout(() => process.exit(code), FALLBACK_MS).unref();
}
