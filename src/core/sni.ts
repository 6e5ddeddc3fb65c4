/**
 * Certificate choice by TLS server name (SNI), shared by every TLS listener.
 * Names are exact (`a.example.com`) or a wildcard for one leftmost label
 * (`*.example.com` matches `a.example.com`, not `a.b.example.com` nor
 * `example.com`); an exact name wins over a wildcard; comparison ignores
 * case and a trailing dot. No match means the listener's default.
 */
import type { SecureContext } from 'node:tls';

/** Why `pattern` cannot be a certificate name, or null when it can. */
export function serverNamePatternProblem(pattern: string): string | null {
  const name = pattern.endsWith('.') ? pattern.slice(0, -1) : pattern;
  const labels = name.split('.');
  const wildcard = labels[0] === '*';
  const rest = wildcard ? labels.slice(1) : labels;
  if (wildcard && rest.length < 2) return `"${pattern}": a wildcard needs at least two labels after "*." (like *.example.com)`;
  if (rest.length === 0 || rest.some((label) => !/^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(label))) {
    return `"${pattern}" is not a host name or "*." followed by one (a "*" may only be the whole leftmost label)`;
  }
  return null;
}

/** Lowercased, without a trailing dot: the form names are compared in. */
export function normalizeServerName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

export interface SniEntry<T> {
  readonly names: readonly string[];
  readonly value: T;
}

/**
 * Picks the value for a server name. Built once per listener; a lookup is
 * at most two Map hits. When two entries claim the same name the first wins.
 */
export class SniMatcher<T> {
  readonly #exact = new Map<string, T>();
  /** Keyed by the part after "*.": `*.example.com` → `example.com`. */
  readonly #wildcard = new Map<string, T>();

  constructor(entries: Iterable<SniEntry<T>>) {
    for (const entry of entries) {
      for (const raw of entry.names) {
        const problem = serverNamePatternProblem(raw);
        if (problem !== null) throw new Error(problem);
        const name = normalizeServerName(raw);
        if (name.startsWith('*.')) {
          const suffix = name.slice(2);
          if (!this.#wildcard.has(suffix)) this.#wildcard.set(suffix, entry.value);
        } else if (!this.#exact.has(name)) {
          this.#exact.set(name, entry.value);
        }
      }
    }
  }

  get size(): number {
    return this.#exact.size + this.#wildcard.size;
  }

  /** The value for `servername`, or undefined (use the default). */
  match(servername: string | undefined | null): T | undefined {
    if (servername === undefined || servername === null || servername === '') return undefined;
    const name = normalizeServerName(servername);
    const exact = this.#exact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf('.');
    // The wildcard covers exactly one non-empty leftmost label.
    if (dot <= 0) return undefined;
    return this.#wildcard.get(name.slice(dot + 1));
  }
}

/** The shape of tls's `SNICallback` option. */
export type SniCallback = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;

/**
 * A TLSSocket `SNICallback` choosing among SecureContexts built once per
 * listener; no match answers without a context, so the socket's default
 * `secureContext` serves the client.
 */
export function sniCallback(matcher: SniMatcher<SecureContext>): SniCallback {
  return (servername, cb) => cb(null, matcher.match(servername));
}
