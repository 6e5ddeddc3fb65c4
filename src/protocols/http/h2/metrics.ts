/**
 * The http listener's figures by HTTP version: plain integer counters per
 * listener, bumped once per connection, request or cut-off (never per
 * chunk), read by prom-client when a scrape collects them.
 */
import { Counter, Gauge } from 'prom-client';
import { registry } from '../../../core/metrics.ts';

/** Why the proxy closed a client's HTTP/2 connection with a GOAWAY carrying an error. */
export type H2Abuse = 'rapid_reset' | 'flood' | 'protocol';

export interface HttpVersionCounters {
  /** Client connections by version (h2: ALPN h2 or the h2c preface). */
  connectionsH1: number;
  connectionsH2: number;
  /** Routed requests (h2: streams). */
  requestsH1: number;
  requestsH2: number;
  /** HTTP/2 streams open now. */
  streamsOpen: number;
  /** h2 streams sent to HTTP/2 backends (h2 routes, gRPC). */
  backendStreamsH2: number;
  goaway: Record<H2Abuse | 'drain', number>;
}

const byListener = new Map<string, HttpVersionCounters>();

/** The listener's counters (one object per listener name, kept across reloads). */
export function httpCounters(listener: string): HttpVersionCounters {
  let c = byListener.get(listener);
  if (c === undefined) {
    c = { connectionsH1: 0, connectionsH2: 0, requestsH1: 0, requestsH2: 0, streamsOpen: 0, backendStreamsH2: 0, goaway: { rapid_reset: 0, flood: 0, protocol: 0, drain: 0 } };
    byListener.set(listener, c);
  }
  return c;
}

new Counter({
  name: 'polyproxy_http_connections_total',
  help: 'Client connections of http listeners by HTTP version (h1, h2).',
  labelNames: ['listener', 'version'] as const,
  registers: [registry],
  collect(this: Counter<'listener' | 'version'>) {
    this.reset();
    for (const [listener, c] of byListener) {
      this.inc({ listener, version: 'h1' }, c.connectionsH1);
      this.inc({ listener, version: 'h2' }, c.connectionsH2);
    }
  },
});

new Counter({
  name: 'polyproxy_http_requests_total',
  help: 'Routed requests of http listeners by the client side HTTP version (h1, h2: one per stream).',
  labelNames: ['listener', 'version'] as const,
  registers: [registry],
  collect(this: Counter<'listener' | 'version'>) {
    this.reset();
    for (const [listener, c] of byListener) {
      this.inc({ listener, version: 'h1' }, c.requestsH1);
      this.inc({ listener, version: 'h2' }, c.requestsH2);
    }
  },
});

new Gauge({
  name: 'polyproxy_http2_streams_open',
  help: 'HTTP/2 client streams open now.',
  labelNames: ['listener'] as const,
  registers: [registry],
  collect(this: Gauge<'listener'>) {
    this.reset();
    for (const [listener, c] of byListener) this.set({ listener }, c.streamsOpen);
  },
});

new Counter({
  name: 'polyproxy_http2_backend_streams_total',
  help: 'Requests sent to HTTP/2 backends (routes with protocol h2, and every gRPC request).',
  labelNames: ['listener'] as const,
  registers: [registry],
  collect(this: Counter<'listener'>) {
    this.reset();
    for (const [listener, c] of byListener) this.inc({ listener }, c.backendStreamsH2);
  },
});

new Counter({
  name: 'polyproxy_http2_goaway_total',
  help: 'HTTP/2 client connections the proxy sent GOAWAY to, by reason: drain (shutdown), rapid_reset (too many streams reset), flood (SETTINGS/PING/CONTINUATION floods), protocol (other protocol errors, HPACK errors such as an oversized table update included).',
  labelNames: ['listener', 'reason'] as const,
  registers: [registry],
  collect(this: Counter<'listener' | 'reason'>) {
    this.reset();
    for (const [listener, c] of byListener) for (const [reason, n] of Object.entries(c.goaway)) this.inc({ listener, reason }, n);
  },
});
