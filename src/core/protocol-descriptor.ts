/**
 * A protocol as the rest of the proxy sees it: one descriptor object per
 * protocol folder (src/protocols/<name>/index.ts), listed once in the table
 * of src/protocols/index.ts. The config composes its listener schemas from
 * the table; the supervisor starts every listener through `create`; the
 * router and the reload ask the descriptor or the listener object, never
 * the protocol's name.
 *
 * Two kinds of listeners come out of `create`:
 * - pipeline protocols (identify → route → connect → replay → relay) build
 *   core's Listener from their ProtocolModule with `pipelineListener`;
 * - server-style protocols (their own HTTP server) return their own
 *   ProxyListener.
 */
import type { z } from 'zod';
import type { TlsServerSettings } from './client-connection.ts';
import type { DescriptorUse } from './fd-limit.ts';
import type { ProbeKind } from './health.ts';
import { Listener } from './listener.ts';
import type { ProxyListener } from './listener.ts';
import type { Logger } from './logger.ts';
import type { ProtocolModule } from './protocol.ts';
import type { Router } from './router.ts';

/** The fields every listener config has (src/config/listener-fields.ts), as core reads them. */
export interface ListenerBasics {
  readonly protocol: string;
  readonly host: string;
  readonly port: number;
  readonly tls?: unknown;
  readonly backend?: unknown;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly maxConnections: number;
  readonly tcpKeepAliveMs: number;
}

/** A protocol's listener schema: a strict object with `protocol: z.literal(<name>)` and the common fields. */
export type ListenerSchema = z.ZodType<ListenerBasics>;

/** What a listener check may read of the whole config besides its own listener. */
export interface ConfigView {
  readonly routes: Readonly<Record<string, unknown>>;
  readonly resolver: { readonly module?: string | undefined };
}

/** Where a listener check reports. */
export interface ListenerCheck {
  /** The config being validated. */
  readonly config: ConfigView;
  /** The listener's place in it: ['listeners', index]. */
  readonly path: readonly (string | number)[];
  /** Reports a problem with one of the listener's fields; the config error names `listeners.<index>.<field>`. */
  problem(field: string, message: string): void;
}

/** What the supervisor lends a listener it starts. */
export interface ListenerContext {
  /** The port to bind: the config's, or the one the supervisor reserved for a port-0 listener shared by workers. */
  readonly port: number;
  /** Share the port with sibling worker processes (SO_REUSEPORT). */
  readonly reusePort: boolean;
  /** Worker processes serving this listener (config `workers` when they share its port; absent: 1): limits meant for the whole proxy are divided by it. */
  readonly workers?: number;
  readonly log: Logger;
  /** The listener's router: its fixed backend's, or the config's shared one. */
  readonly router: Router;
  /** The listener's certificates, already read (null without `tls`). */
  readonly tls: TlsServerSettings | null;
}

export interface ProtocolDescriptor<Schema extends ListenerSchema = ListenerSchema> {
  /** The config's `protocol` value; the schema's literal. */
  readonly name: z.output<Schema>['protocol'];
  /** The listener's fields: `...listenerFields`, the `protocol` literal, its own fields. */
  readonly schema: Schema;
  /** How health probes test the endpoints this protocol's connections were routed to; default a TCP connect. */
  readonly healthProbe?: ProbeKind;
  /**
   * Cross-field rules the schema cannot say (fields that exclude each
   * other, rules that depend on routes). Runs after the schema accepted
   * the listener, once per listener of this protocol.
   */
  check?(listener: z.output<Schema>, at: ListenerCheck): void;
  /** What the listener's sessions hold in file descriptors, to size a maxConnections left at 0; default a proxied session's two. */
  descriptors?(listener: z.output<Schema>): DescriptorUse;
  /** Builds the listener, not yet listening; the supervisor calls listen(). Throws on settings it cannot use. */
  create(listener: z.output<Schema> & { readonly name: string }, ctx: ListenerContext): ProxyListener;
}

/** What a pipeline protocol adds to the common fields to make core's Listener. */
export interface PipelineParts {
  readonly module: ProtocolModule;
  /** Opening bytes a client may send before the protocol has identified it; more are refused. */
  readonly maxOpeningBytes: number;
  /** The relayed sessions' idle limit when the protocol has its own default for the config's 0 (none). */
  readonly idleTimeoutMs?: number;
  /** ALPN protocols the listener's TLS offers. */
  readonly alpnProtocols?: readonly string[];
  /** The backend must answer the replayed opening within this long (ListenerSettings.firstResponseTimeoutMs); default 0, none. */
  readonly firstResponseTimeoutMs?: number;
}

/** Core's Listener for a pipeline protocol: the common fields, the context, and the protocol's parts. */
export function pipelineListener(listener: ListenerBasics & { readonly name: string }, ctx: ListenerContext, parts: PipelineParts): Listener {
  return new Listener(
    {
      name: listener.name,
      protocol: listener.protocol,
      host: listener.host,
      port: ctx.port,
      connectTimeoutMs: listener.connectTimeoutMs,
      idleTimeoutMs: parts.idleTimeoutMs ?? listener.idleTimeoutMs,
      handshakeTimeoutMs: listener.handshakeTimeoutMs,
      firstResponseTimeoutMs: parts.firstResponseTimeoutMs ?? 0,
      tcpKeepAliveMs: listener.tcpKeepAliveMs,
      maxConnections: listener.maxConnections,
      maxOpeningBytes: parts.maxOpeningBytes,
      reusePort: ctx.reusePort,
      ...(parts.alpnProtocols === undefined ? {} : { alpnProtocols: parts.alpnProtocols }),
    },
    parts.module,
    ctx.router,
    ctx.tls,
    ctx.log,
  );
}
