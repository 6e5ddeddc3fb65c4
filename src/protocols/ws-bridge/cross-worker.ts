/**
 * ws-bridge across worker processes (workers > 1). Clients are spread over
 * the workers by the kernel (SO_REUSEPORT), and so are the API's pushes, so
 * a worker that does not hold a push's ClientId asks its siblings through
 * the supervisor (core/cluster.ts `ask`) and answers 404 only when none
 * does. The same request/reply sums the bridge's own metrics and, with
 * `duplicateClientId: refuse`, finds a ClientId held elsewhere; with
 * `replace`, a new connection is announced so a sibling holding the same
 * ClientId closes its older one. One handler per topic per process: each
 * message names its listener.
 */
import { ask, broadcast, onAsk, onBroadcast } from '../../core/cluster.ts';
import type { AskResult } from '../../core/cluster.ts';
import type { StatsSnapshot } from './metrics.ts';

/** What the sibling workers' messages need from a bridge. */
export interface LocalBridge {
  /** Sends a push to a client of this process; false when it has none with that id. */
  deliver(clientId: string, body: Buffer, binary: boolean): boolean;
  holds(clientId: string): boolean;
  statsSnapshot(): StatsSnapshot;
  /** A sibling accepted `clientId` at `openedAt`: close an older local connection with that id. */
  replacedElsewhere(clientId: string, openedAt: number): void;
}

const TOPIC_PUSH = 'ws-bridge:push';
const TOPIC_HOLDS = 'ws-bridge:holds';
const TOPIC_METRICS = 'ws-bridge:metrics';
const TOPIC_OPENED = 'ws-bridge:opened';

/** How long a worker waits for its siblings' answers. */
export const ASK_TIMEOUT_MS = 2000;

const bridges = new Map<string, LocalBridge>();

interface PushPayload {
  readonly listener: string;
  readonly id: string;
  readonly body: Uint8Array;
  readonly binary: boolean;
}

interface IdPayload {
  readonly listener: string;
  readonly id: string;
}

interface OpenedPayload extends IdPayload {
  readonly at: number;
}

let installed = false;

function install(): void {
  if (installed) return;
  installed = true;
  onAsk(TOPIC_PUSH, (payload) => {
    const p = payload as PushPayload;
    // Structured clone hands a Buffer over as a plain Uint8Array.
    const body = Buffer.from(p.body.buffer, p.body.byteOffset, p.body.byteLength);
    return bridges.get(p.listener)?.deliver(p.id, body, p.binary) ?? false;
  });
  onAsk(TOPIC_HOLDS, (payload) => {
    const p = payload as IdPayload;
    return bridges.get(p.listener)?.holds(p.id) ?? false;
  });
  onAsk(TOPIC_METRICS, (payload) => bridges.get((payload as { listener: string }).listener)?.statsSnapshot());
  onBroadcast(TOPIC_OPENED, (payload) => {
    const p = payload as OpenedPayload;
    bridges.get(p.listener)?.replacedElsewhere(p.id, p.at);
  });
}

export function registerBridge(name: string, bridge: LocalBridge): void {
  install();
  bridges.set(name, bridge);
}

/** This process's bridge for `listener` (the fleet's messages reach it through here). */
export function localBridge(name: string): LocalBridge | undefined {
  return bridges.get(name);
}

export function unregisterBridge(name: string, bridge: LocalBridge): void {
  if (bridges.get(name) === bridge) bridges.delete(name);
}

/** True when a sibling delivered it; `missing` > 0 when some sibling did not answer. */
export async function pushElsewhere(listener: string, id: string, body: Buffer, binary: boolean): Promise<{ delivered: boolean; missing: number }> {
  const result = await ask(TOPIC_PUSH, { listener, id, body, binary } satisfies PushPayload, ASK_TIMEOUT_MS);
  return { delivered: result.answers.some((a) => a === true), missing: result.missing };
}

export async function heldElsewhere(listener: string, id: string): Promise<boolean> {
  const result = await ask(TOPIC_HOLDS, { listener, id } satisfies IdPayload, ASK_TIMEOUT_MS);
  return result.answers.some((a) => a === true);
}

/** Every sibling's figures for `listener` (objects only). */
export async function siblingStats(listener: string): Promise<StatsSnapshot[]> {
  const result: AskResult = await ask(TOPIC_METRICS, { listener }, ASK_TIMEOUT_MS);
  return result.answers.filter((a): a is StatsSnapshot => typeof a === 'object' && a !== null);
}

/** Announces a new connection (duplicateClientId: replace). False in a single process. */
export function announceOpened(listener: string, id: string, at: number): boolean {
  return broadcast(TOPIC_OPENED, { listener, id, at } satisfies OpenedPayload);
}
