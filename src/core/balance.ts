/**
 * Pick phase: the order in which a request tries its endpoints, the first
 * choice first and the rest as ordered fallbacks. Used by the router for
 * every route and by listeners that balance a fixed backend list (the
 * FastCGI gateway).
 */

/** A round-robin position, shared by every caller that rotates the same list. */
export interface Rotation {
  next: number;
}

/** Round-robin: the list rotated to start at the next position (the list itself, no copy, when it starts at 0). */
export function roundRobin<T>(list: readonly T[], rotation: Rotation): readonly T[] {
  if (list.length < 2) return list;
  const start = rotation.next % list.length;
  rotation.next = (start + 1) % list.length;
  if (start === 0) return list;
  return [...list.slice(start), ...list.slice(0, start)];
}

/** Random: a uniformly shuffled copy (Fisher–Yates). */
export function shuffled<T>(list: readonly T[]): readonly T[] {
  if (list.length < 2) return list;
  const out = [...list];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    const t = out[i] as T;
    out[i] = out[j] as T;
    out[j] = t;
  }
  return out;
}
