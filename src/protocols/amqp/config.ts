/**
 * The amqp listener's fields: the limits the proxy's Connection.Tune
 * offers (they must not exceed what the brokers allow) and the broker's
 * handshake deadline.
 */
import { z } from 'zod';
import { listenerFields, positiveMs } from '../../config/listener-fields.ts';

const frameMax = z
  .number()
  .int()
  .min(0)
  .max(0xffffffff)
  .refine((value) => value === 0 || value >= 4096, 'frameMax must be 0 (no limit) or at least 4096 (frame-min-size)');

export const amqpListenerSchema = z.strictObject({
  ...listenerFields,
  protocol: z.literal('amqp'),
  /** Channels per connection the proxy's Tune offers (RabbitMQ's default 2047; 0 = no limit). A broker allowing fewer refuses the client with 530. */
  channelMax: z.number().int().min(0).max(65535).default(2047),
  /** Largest frame the proxy's Tune offers (RabbitMQ's default 131072; 0 = no limit). A broker allowing less refuses the client with 530. */
  frameMax: frameMax.default(131072),
  /** Heartbeat interval in seconds the proxy's Tune proposes (RabbitMQ's default 60; 0 = none); the client's choice goes to the broker. */
  heartbeat: z.number().int().min(0).max(65535).default(60),
  /** The broker must send each step of the replayed handshake (Start, Tune, Open-Ok) within this long; past it the client gets 541. */
  firstResponseTimeoutMs: positiveMs.default(15000),
});

export type AmqpListenerConfig = z.output<typeof amqpListenerSchema>;
