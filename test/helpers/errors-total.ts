/** Reads `polyproxy_errors_total` from this process's registry (unit tests: the listener runs in-process). */
import { errorsTotal } from '../../src/core/metrics.ts';

/** The count for one listener and kind; 0 when never incremented. */
export async function errorCount(listener: string, kind: string): Promise<number> {
  const metric = await errorsTotal.get();
  return metric.values.find((v) => v.labels.listener === listener && v.labels.kind === kind)?.value ?? 0;
}

/** Every kind counted for one listener, as `{ KIND: n }`. */
export async function errorCounts(listener: string): Promise<Record<string, number>> {
  const metric = await errorsTotal.get();
  const out: Record<string, number> = {};
  for (const v of metric.values) if (v.labels.listener === listener) out[String(v.labels.kind)] = v.value;
  return out;
}
