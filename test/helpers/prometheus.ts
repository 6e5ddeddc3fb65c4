/** Reads a Prometheus text exposition into `name{labels}` → value, labels sorted by name. */
export function parsePrometheus(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels = [...(match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => `${k}="${v}"`).sort();
    out.set(labels.length === 0 ? (match[1] as string) : `${match[1]}{${labels.join(',')}}`, Number(match[3]));
  }
  return out;
}

/** One sample: `metric(samples, 'polyproxy_connections_total', { listener: 'web' })`; 0 when absent. */
export function sample(samples: Map<string, number>, name: string, labels: Record<string, string> = {}): number {
  const keys = Object.keys(labels).sort();
  const key = keys.length === 0 ? name : `${name}{${keys.map((k) => `${k}="${labels[k]}"`).join(',')}}`;
  return samples.get(key) ?? 0;
}
