/**
 * Every protocol the proxy speaks: one descriptor per line
 * (core/protocol-descriptor.ts). The config's listener schema is composed
 * from this table, and its "protocol must be one of" lists the names in
 * this order.
 */
import type { ProbeKind } from '../core/health.ts';
import type { ProtocolDescriptor } from '../core/protocol-descriptor.ts';
import { amqpProtocol } from './amqp/index.ts';
import { fastcgiProtocol } from './fastcgi/index.ts';
import { httpProtocol } from './http/index.ts';
import { mongodbProtocol } from './mongodb/index.ts';
import { mqttProtocol } from './mqtt/index.ts';
import { mysqlProtocol } from './mysql/index.ts';
import { natsProtocol } from './nats/index.ts';
import { postgresProtocol } from './postgres/index.ts';
import { redisProtocol } from './redis/index.ts';
import { smtpProtocol } from './smtp/index.ts';
import { tcpProtocol } from './tcp/index.ts';
import { wsBridgeProtocol } from './ws-bridge/index.ts';

export const PROTOCOLS = [
  postgresProtocol,
  tcpProtocol,
  mongodbProtocol,
  mysqlProtocol,
  smtpProtocol,
  httpProtocol,
  wsBridgeProtocol,
  fastcgiProtocol,
  redisProtocol,
  natsProtocol,
  mqttProtocol,
  amqpProtocol,
] as const satisfies readonly ProtocolDescriptor[];

const byName: ReadonlyMap<string, ProtocolDescriptor> = new Map(PROTOCOLS.map((p) => [p.name, p]));

/** The descriptor of a validated listener's `protocol`. */
export function protocolOf(listener: { readonly protocol: string }): ProtocolDescriptor {
  const descriptor = byName.get(listener.protocol);
  if (descriptor === undefined) throw new Error(`unknown protocol "${listener.protocol}"`);
  return descriptor;
}

/** How each protocol's routed endpoints are health-probed (Router's probeKinds). */
export const HEALTH_PROBES: ReadonlyMap<string, ProbeKind> = new Map(PROTOCOLS.map((p) => [p.name, p.healthProbe ?? 'tcp']));
