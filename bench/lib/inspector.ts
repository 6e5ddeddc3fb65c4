/**
 * A minimal Chrome DevTools Protocol client for a child started with
 * `--inspect=127.0.0.1:0`: force a full GC and read V8 heap usage. Used only
 * for diagnostic passes (the inspector itself costs the process some memory).
 */
import type { Tracked } from './process.ts';

export const INSPECT_FLAG = '--inspect=127.0.0.1:0';

export class Inspector {
  readonly #ws: WebSocket;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.addEventListener('message', (event) => {
      const msg = JSON.parse(String(event.data)) as { id?: number; result?: unknown; error?: { message: string } };
      if (msg.id === undefined) return;
      const p = this.#pending.get(msg.id);
      if (p === undefined) return;
      this.#pending.delete(msg.id);
      if (msg.error !== undefined) p.reject(new Error(msg.error.message));
      else p.resolve(msg.result);
    });
  }

  /** `url` is the ws:// address from "Debugger listening on ws://…". */
  static open(url: string): Promise<Inspector> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.addEventListener('open', () => resolve(new Inspector(ws)), { once: true });
      ws.addEventListener('error', () => reject(new Error(`cannot open inspector at ${url}`)), { once: true });
    });
  }

  /** The address a child started with INSPECT_FLAG printed on stderr ("Debugger listening on ws://…"). */
  static async address(proc: Tracked, timeoutMs = 15_000): Promise<string> {
    const pattern = /Debugger listening on (ws:\/\/\S+)/;
    const seen = proc.tail.find((line) => pattern.test(line)) ?? (await proc.waitForLine(pattern, timeoutMs, 'stderr'));
    return (pattern.exec(seen) as RegExpExecArray)[1] as string;
  }

  call<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Full, forced garbage collection in the inspected process. */
  async collectGarbage(): Promise<void> {
    await this.call('HeapProfiler.collectGarbage');
  }

  /** V8 heap bytes in use (after a GC: retained JS objects). */
  async heapUsedBytes(): Promise<number> {
    const usage = await this.call<{ usedSize: number }>('Runtime.getHeapUsage');
    return usage.usedSize;
  }

  close(): void {
    this.#ws.close();
  }
}
