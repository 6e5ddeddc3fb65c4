/**
 * The smtp listener's fields: routing command, banner name, line and command limits.
 */
import { z } from 'zod';
import { listenerFields, positiveMs } from '../../config/listener-fields.ts';

export const smtpListenerSchema = z.strictObject({
  ...listenerFields,
  protocol: z.literal('smtp'),
  /** Time a client has to reach the routing command (EHLO, or the first RCPT TO with routeBy: rcpt). */
  handshakeTimeoutMs: positiveMs.default(60000),
  /** `ehlo`: route by the EHLO/HELO domain; `rcpt`: by the first RCPT TO domain. */
  routeBy: z.enum(['ehlo', 'rcpt']).default('ehlo'),
  /** The name in the proxy's 220 banner and EHLO replies (default: the machine's host name). */
  hostname: z.string().min(1).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces').optional(),
  /** Longest MAIL/RCPT line with ESMTP parameters (other commands: 512 octets, RFC 5321 4.5.3.1.4). */
  maxLineLength: z.number().int().min(512).max(65536).default(4096),
  /** RFC 5321 4.5.3.2.7: how long the proxy waits for a client command (also the relayed session's idle limit). */
  commandTimeoutMs: positiveMs.default(300000),
});

export type SmtpListenerConfig = z.output<typeof smtpListenerSchema>;
