/**
 * Endpoint health: a circuit breaker per endpoint, fed by passive results
 * (every connect the proxy makes) and by active probes (a TCP connect, or an
 * HTTP GET for endpoints that serve an http listener).
 *
 *   closed ──(failureThreshold connects fail, or `fall` probes fail)──▶ open
 *   open ──(openMs passes)──▶ half-open: one trial connection is let through
 *   half-open ──trial succeeds──▶ closed      ──trial fails──▶ open
 *   open / half-open ──(`rise` probes succeed)──▶ closed
 *
 * Balanced routes skip open endpoints; a route whose endpoints are all open
 * fails fast with UNAVAILABLE (the router's job, see Router).
 *
 * Active probes run for the endpoints of balanced routes (lists), where
 * skipping a dead one matters; a lone endpoint has nowhere else to go and is
 * judged by its connects alone (its breaker still fails fast, and a trial
 * readmits it). Only endpoints the proxy has used recently are tracked: one
 * nobody connected to for `forgetAfterMs` is dropped. State is per process;
 * each worker keeps its own (the admin server merges them).
 */
import net from 'node:net';
import type { BreakerState, EndpointStats } from '../admin/source.ts';
import type { Endpoint } from './endpoint.ts';
import type { Logger } from './logger.ts';

export interface HealthSettings {
  /** Active probe period; 0 turns active probes off (passive counting and the breaker stay). */
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Consecutive successful probes that close an open breaker. */
  readonly rise: number;
  /** Consecutive failed probes that open the breaker. */
  readonly fall: number;
  /** Consecutive failed connects (passive) that open the breaker. */
  readonly failureThreshold: number;
  /** How long an open breaker refuses before letting one trial through. */
  readonly openMs: number;
  /** Probe http endpoints with `GET <httpPath>` (2xx/3xx is healthy) instead of a bare connect. */
  readonly httpPath: string | undefined;
  /** Stop probing an endpoint nobody used for this long. */
  readonly forgetAfterMs: number;
}

export const DEFAULT_HEALTH: HealthSettings = {
  intervalMs: 2000,
  timeoutMs: 1000,
  rise: 2,
  fall: 2,
  failureThreshold: 3,
  openMs: 10000,
  httpPath: undefined,
  forgetAfterMs: 10 * 60 * 1000,
};

/**
 * A protocol's own probe (the mqtt and amqp descriptors'): once connected,
 * send `hello` and judge the reply as it arrives. A backend that accepts
 * connections but cannot speak (a broker still booting, one out of
 * resources) is then found down, as an HTTP probe finds a 503.
 */
export interface ExchangeProbe {
  /** Names the probe in logs and tests. */
  readonly name: string;
  readonly hello: Buffer;
  /** The reply so far: null when healthy, what is wrong, or undefined to wait for more. */
  judge(reply: Buffer): string | null | undefined;
}

/** A TCP connect, an HTTP GET (httpPath), or a protocol's exchange. */
export type ProbeKind = 'tcp' | 'http' | ExchangeProbe;

const CLOSED = 0;
const HALF_OPEN = 1;
const OPEN = 2;
type State = typeof CLOSED | typeof HALF_OPEN | typeof OPEN;
const STATE_NAMES: readonly BreakerState[] = ['closed', 'half-open', 'open'];

class EndpointRecord {
  readonly endpoint: Endpoint;
  kind: ProbeKind;
  state: State = CLOSED;
  failures = 0;
  probeFailures = 0;
  probeSuccesses = 0;
  openedAt = 0;
  /** Half-open: a trial connection is out; nobody else may pass until it settles (or openMs passes: it was never dialled). */
  trialOut = false;
  trialAt = 0;
  healthy: boolean | null = null;
  lastProbeAt: number | null = null;
  lastUsedAt: number;
  probing = false;
  /** Part of a balanced route: probed actively. */
  probed: boolean;
  /**
   * The last failures came after an accepted connect (answered): a bare TCP
   * probe, which only connects, cannot tell it is well again, so it does
   * not close the breaker; a successful answer (the half-open trial) or an
   * HTTP probe does.
   */
  failedAfterConnect = false;

  constructor(endpoint: Endpoint, kind: ProbeKind, probed: boolean, now: number) {
    this.endpoint = endpoint;
    this.kind = kind;
    this.probed = probed;
    this.lastUsedAt = now;
  }
}

export class EndpointHealth {
  #settings: HealthSettings;
  readonly #log: Logger | undefined;
  readonly #records = new Map<string, EndpointRecord>();
  /** Endpoints not closed: while 0, `usable` needs no lookups at all. */
  #unhealthy = 0;
  #timer: NodeJS.Timeout | null = null;

  constructor(settings: Partial<HealthSettings> = {}, log?: Logger) {
    this.#settings = { ...DEFAULT_HEALTH, ...settings };
    this.#log = log;
  }

  get settings(): HealthSettings {
    return this.#settings;
  }

  /** New thresholds and probe period (reload); states are kept. */
  configure(settings: Partial<HealthSettings>): void {
    this.#settings = { ...DEFAULT_HEALTH, ...settings };
    if (this.#timer !== null) {
      this.stop();
      this.start();
    }
  }

  /** Starts the probe timer (idempotent). */
  start(): void {
    if (this.#timer !== null || this.#settings.intervalMs <= 0) return;
    this.#timer = setInterval(() => this.probeAll(), this.#settings.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Starts tracking the endpoints a route uses; those of a balanced route (more than one) are probed too, unless `probed` says otherwise. */
  watch(endpoints: readonly Endpoint[], kind: ProbeKind, probed = endpoints.length > 1): void {
    const now = Date.now();
    for (const endpoint of endpoints) {
      const record = this.#records.get(endpoint.label);
      if (record === undefined) this.#records.set(endpoint.label, new EndpointRecord(endpoint, kind, probed, now));
      else {
        record.lastUsedAt = now;
        if (kind !== 'tcp') record.kind = kind;
        if (probed) record.probed = true;
      }
    }
  }

  /**
   * The candidates that may be dialled now, in order. Open endpoints are
   * left out; a half-open one is included once (its trial). Returns the
   * same array when every endpoint is closed.
   */
  usable(candidates: readonly Endpoint[]): readonly Endpoint[] {
    if (this.#unhealthy === 0) return candidates;
    let out: Endpoint[] | null = null;
    for (let i = 0; i < candidates.length; i++) {
      const endpoint = candidates[i] as Endpoint;
      const ok = this.#admit(endpoint);
      if (ok && out !== null) out.push(endpoint);
      else if (!ok && out === null) out = candidates.slice(0, i);
    }
    return out ?? candidates;
  }

  #admit(endpoint: Endpoint): boolean {
    const record = this.#records.get(endpoint.label);
    if (record === undefined || record.state === CLOSED) return true;
    if (record.state === OPEN) {
      if (Date.now() - record.openedAt < this.#settings.openMs) return false;
      this.#setState(record, HALF_OPEN);
    }
    const now = Date.now();
    if (record.trialOut && now - record.trialAt < this.#settings.openMs) return false;
    record.trialOut = true;
    record.trialAt = now;
    return true;
  }

  /** A connect to `endpoint` succeeded, or (after `connected`) the backend answered (passive). */
  succeeded(endpoint: Endpoint): void {
    const record = this.#records.get(endpoint.label);
    if (record === undefined) return;
    record.lastUsedAt = Date.now();
    record.failures = 0;
    record.trialOut = false;
    record.failedAfterConnect = false;
    if (record.state !== CLOSED) this.#setState(record, CLOSED);
  }

  /**
   * A connect to `endpoint` was accepted, and whether the backend works is
   * told by its first answer (`answered`). For an endpoint of a balanced
   * route the failure count is kept until then, so a backend that accepts
   * and then fails still reaches the threshold; a lone endpoint is judged by
   * its connect alone (as `succeeded`): with nowhere else to go, failing
   * fast after a few bad sessions would only turn a partly working backend
   * into a down one.
   */
  connected(endpoint: Endpoint): void {
    const record = this.#records.get(endpoint.label);
    if (record === undefined) return;
    if (!record.probed) this.succeeded(endpoint);
    else record.lastUsedAt = Date.now();
  }

  /**
   * After `connected`: the backend's first answer came (`problem` null), or
   * it failed before one (reset, closed, silent past its deadline, garbage).
   * Counts for endpoints of balanced routes only (see `connected`).
   */
  answered(endpoint: Endpoint, problem: string | null): void {
    const record = this.#records.get(endpoint.label);
    if (record === undefined || !record.probed) return;
    if (problem === null) this.succeeded(endpoint);
    else {
      record.failedAfterConnect = true;
      this.failed(endpoint, problem);
    }
  }

  /** A connect to `endpoint` failed, or the backend failed right after it (no first answer in time, reset before one: passive). */
  failed(endpoint: Endpoint, why: string): void {
    const record = this.#records.get(endpoint.label);
    if (record === undefined) return;
    record.lastUsedAt = Date.now();
    record.failures++;
    record.trialOut = false;
    if (record.state === HALF_OPEN || (record.state === CLOSED && record.failures >= this.#settings.failureThreshold)) this.#open(record, why);
    else if (record.state === OPEN) record.openedAt = Date.now();
  }

  #open(record: EndpointRecord, why: string): void {
    record.openedAt = Date.now();
    if (record.state !== OPEN) {
      this.#log?.warn({ endpoint: record.endpoint.label, failures: record.failures, why }, 'endpoint down: circuit open');
      this.#setState(record, OPEN);
    }
  }

  #setState(record: EndpointRecord, state: State): void {
    if (record.state === state) return;
    if (record.state === CLOSED) this.#unhealthy++;
    if (state === CLOSED) {
      this.#unhealthy--;
      record.probeFailures = 0;
      this.#log?.info({ endpoint: record.endpoint.label }, 'endpoint up: circuit closed');
    }
    record.state = state;
  }

  /** Probes every tracked endpoint once (the timer calls this; tests may too). Resolves when all answered. */
  probeAll(): Promise<void> {
    const now = Date.now();
    const probes: Array<Promise<void>> = [];
    for (const [label, record] of this.#records) {
      if (now - record.lastUsedAt > this.#settings.forgetAfterMs) {
        if (record.state !== CLOSED) this.#unhealthy--;
        this.#records.delete(label);
        continue;
      }
      if (record.probing || !record.probed) continue;
      record.probing = true;
      probes.push(
        probe(record.endpoint, record.kind === 'http' ? this.#settings.httpPath : undefined, this.#settings.timeoutMs, typeof record.kind === 'object' ? record.kind : undefined).then((problem) => {
          record.probing = false;
          this.#probed(record, problem);
        }),
      );
    }
    return Promise.all(probes).then(noop);
  }

  #probed(record: EndpointRecord, problem: string | null): void {
    record.lastProbeAt = Date.now();
    record.healthy = problem === null;
    if (problem === null) {
      record.probeFailures = 0;
      record.probeSuccesses++;
      const probeCanTell = (record.kind === 'http' && this.#settings.httpPath !== undefined) || typeof record.kind === 'object';
      if (record.state !== CLOSED && record.probeSuccesses >= this.#settings.rise && (probeCanTell || !record.failedAfterConnect)) {
        record.failures = 0;
        record.trialOut = false;
        record.failedAfterConnect = false;
        this.#setState(record, CLOSED);
      }
    } else {
      record.probeSuccesses = 0;
      record.probeFailures++;
      if (record.probeFailures >= this.#settings.fall) this.#open(record, `probe: ${problem}`);
    }
  }

  /** The breaker state of one endpoint ('closed' when untracked). */
  state(label: string): BreakerState {
    const record = this.#records.get(label);
    return record === undefined ? 'closed' : (STATE_NAMES[record.state] as BreakerState);
  }

  stats(): EndpointStats[] {
    const out: EndpointStats[] = [];
    for (const record of this.#records.values()) {
      out.push({ endpoint: record.endpoint.label, state: STATE_NAMES[record.state] as BreakerState, healthy: record.healthy, failures: Math.max(record.failures, record.probeFailures), lastProbeAt: record.lastProbeAt });
    }
    return out;
  }
}

/** One probe: null when healthy, else what went wrong. Never rejects. */
export function probe(endpoint: Endpoint, httpPath: string | undefined, timeoutMs: number, exchange?: ExchangeProbe): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = endpoint.type === 'unix' ? net.connect({ path: endpoint.path }) : net.connect({ host: endpoint.host, port: endpoint.port });
    let settled = false;
    const finish = (problem: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(problem);
    };
    const timer = setTimeout(() => finish(`no answer within ${timeoutMs} ms`), timeoutMs);
    socket.on('error', (err) => finish(err.message));
    socket.on('connect', () => {
      if (exchange !== undefined) {
        socket.write(exchange.hello);
        let reply = Buffer.alloc(0);
        socket.on('data', (chunk: Buffer) => {
          reply = Buffer.concat([reply, chunk]);
          const verdict = exchange.judge(reply);
          if (verdict !== undefined) finish(verdict);
          else if (reply.length > 64 * 1024) finish(`${exchange.name}: no verdict in 64 KiB`);
        });
        socket.on('end', () => finish(`${exchange.name}: closed without an answer`));
        return;
      }
      if (httpPath === undefined) {
        finish(null);
        return;
      }
      const host = endpoint.type === 'unix' ? 'localhost' : endpoint.label;
      socket.write(`GET ${httpPath} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: polyproxy-health\r\nConnection: close\r\n\r\n`);
      let head = '';
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => {
        head += chunk;
        const match = /^HTTP\/1\.[01] (\d{3})/.exec(head);
        if (match !== null) {
          const status = Number(match[1]);
          finish(status < 400 ? null : `GET ${httpPath} answered ${status}`);
        } else if (head.length > 64 || head.includes('\n')) finish('not an HTTP response');
      });
      socket.on('end', () => finish('closed without a response'));
    });
  });
}

function noop(): void {}
