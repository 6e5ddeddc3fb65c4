/**
 * Structured JSON logs on stdout (pino). One root logger per process; the
 * level comes from the config or --log-level. Never called per chunk.
 */
import { pino } from 'pino';
import type { Logger } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const log: Logger = pino({
  level: process.env.POLYPROXY_LOG_LEVEL ?? 'info',
  base: { pid: process.pid },
  timestamp: pino.stdTimeFunctions.isoTime,
  formatters: { level: (label) => ({ level: label }) },
});

export function setLogLevel(level: LogLevel): void {
  log.level = level;
}

/**
 * Milestones an operator or a supervising script waits for ("polyproxy
 * ready"): printed even when the level hides info, unless logs are silent.
 */
export function announce(fields: Record<string, unknown>, msg: string): void {
  if (log.isLevelEnabled('info')) log.info(fields, msg);
  else if (log.level !== 'silent') process.stdout.write(`${JSON.stringify({ level: 'info', time: new Date().toISOString(), pid: process.pid, ...fields, msg })}\n`);
}
