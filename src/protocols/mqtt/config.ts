/**
 * The mqtt listener's fields: what names the tenant in a CONNECT.
 */
import { z } from 'zod';
import { listenerFields, positiveMs } from '../../config/listener-fields.ts';
import type { ListenerCheck } from '../../core/protocol-descriptor.ts';

export const mqttListenerSchema = z.strictObject({
  ...listenerFields,
  protocol: z.literal('mqtt'),
  /**
   * `username`: the tenant is the CONNECT user name. `clientIdPrefix`: the
   * tenant is the client identifier up to the first `separator`
   * ("shop/sensor-1" → "shop").
   */
  routeBy: z.enum(['username', 'clientIdPrefix']).default('username'),
  /** With routeBy: clientIdPrefix, what ends the tenant in the client identifier (default "/"). */
  separator: z.string().min(1).max(16).optional(),
  /**
   * The broker must answer the replayed CONNECT (its CONNACK, or an AUTH)
   * within this long; past it the client gets CONNACK "server unavailable"
   * and the endpoint's circuit breaker counts a failure.
   */
  firstResponseTimeoutMs: positiveMs.default(15000),
});

export type MqttListenerConfig = z.output<typeof mqttListenerSchema>;

/** `separator` only means something with routeBy: clientIdPrefix. */
export function checkMqttListener(listener: MqttListenerConfig, at: ListenerCheck): void {
  if (listener.separator !== undefined && listener.routeBy !== 'clientIdPrefix') at.problem('separator', 'separator only applies to routeBy: clientIdPrefix');
}
