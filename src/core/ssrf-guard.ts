/**
 * SSRF guard: stops a resolver (which may be fed tenant-controlled data) from
 * sending the proxy to internal addresses (loopback, RFC 1918, link-local,
 * cloud metadata, unique-local IPv6...).
 *
 * Every address is handled as a 128-bit integer: IPv4 a.b.c.d becomes the
 * IPv4-mapped ::ffff:a.b.c.d, and IPv4 CIDRs /n become ::ffff:0:0/(96+n).
 * That makes allowlist matching uniform (an IPv4 CIDR also matches the mapped
 * IPv6 spelling of its addresses) and lets IPv4-mapped, NAT64 and 6to4
 * addresses be classified by the IPv4 address they embed.
 *
 * `check()` resolves a hostname exactly once and hands back an endpoint whose
 * host is the IP literal that was checked, so a DNS answer that changes
 * between check and connect (rebinding) cannot slip an internal address past.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { posix } from 'node:path';
import type { Endpoint } from './endpoint.ts';
import { ResolveError } from './errors.ts';

export interface GuardOptions {
  /** true: everything allowed (no lookups, no checks). */
  allowPrivateBackends: boolean;
  /**
   * Allowlist: CIDRs ("127.0.0.0/8", "fd00::/8"), single IPs ("10.0.0.5",
   * "::1"), or "unix:/some/dir" for unix socket paths: the normalized path
   * itself or anything under it, matched by whole path components
   * ("unix:/run/pg" admits /run/pg/.s.PGSQL.5432, not /run/pgbouncer.sock).
   */
  allowBackends: readonly string[];
}

export interface LookupAddress {
  address: string;
  family: 4 | 6;
}

export type HostLookup = (hostname: string) => Promise<LookupAddress[]>;

/** dns.promises.lookup(host, { all: true, verbatim: true }). */
export const defaultLookup: HostLookup = async (hostname) => {
  const results = await dnsLookup(hostname, { all: true, verbatim: true });
  return results.map((r) => ({ address: r.address, family: r.family === 6 ? 6 : 4 }));
};

// ---------------------------------------------------------------------------
// Parsing

const ALL_ONES_128 = (1n << 128n) - 1n;
const MAPPED_PREFIX = 0xffffn << 32n; // ::ffff:0:0/96

interface ParsedIp {
  /** 128-bit value; IPv4 is stored IPv4-mapped. */
  readonly value: bigint;
  /** The spelling: 4 for dotted quad, 6 for any IPv6 text (incl. ::ffff:a.b.c.d). */
  readonly version: 4 | 6;
}

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const HEX_GROUP_RE = /^[0-9a-fA-F]{1,4}$/;
/** Same character set node's net.isIPv6 accepts for a zone id. */
const ZONE_RE = /^[0-9a-zA-Z.:-]+$/;

/** Strict dotted quad (no leading zeros, no shorthand like 127.1): 32-bit value or null. */
function parseIpv4(text: string): number | null {
  const m = IPV4_RE.exec(text);
  if (m === null) return null;
  return ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
}

/** RFC 4291 text form, without zone: 128-bit value or null. */
function parseIpv6(text: string): bigint | null {
  if (text.length === 0 || text.length > 45) return null;
  let head = text;
  let tailGroups: number[] = [];
  // An embedded dotted quad may only be the last 32 bits.
  const lastColon = head.lastIndexOf(':');
  if (lastColon < 0) return null;
  if (head.includes('.', lastColon)) {
    const v4 = parseIpv4(head.slice(lastColon + 1));
    if (v4 === null) return null;
    tailGroups = [v4 >>> 16, v4 & 0xffff];
    // Keep the colon so "::1.2.3.4" leaves "::" and "1:2::3.4.5.6" leaves "1:2::".
    head = head.slice(0, lastColon + 1);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
    if (head.length === 0) return null;
  }
  const parts = head.split('::');
  if (parts.length > 2) return null;
  const toGroups = (s: string): number[] | null => {
    if (s.length === 0) return [];
    const out: number[] = [];
    for (const g of s.split(':')) {
      if (!HEX_GROUP_RE.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const left = toGroups(parts[0] ?? '');
  if (left === null) return null;
  let groups: number[];
  if (parts.length === 2) {
    const right = toGroups(parts[1] ?? '');
    if (right === null) return null;
    const explicit = left.length + right.length + tailGroups.length;
    if (explicit > 7) return null; // "::" must stand for at least one zero group
    groups = [...left, ...new Array<number>(8 - explicit).fill(0), ...right, ...tailGroups];
  } else {
    groups = [...left, ...tailGroups];
  }
  if (groups.length !== 8) return null;
  let value = 0n;
  for (const g of groups) value = (value << 16n) | BigInt(g);
  return value;
}

/**
 * Parses an IP literal (IPv4 dotted quad, or IPv6 with optional %zone).
 * Also requires node's own net.isIP to agree, so that whatever we accept here
 * is connected to literally by net.connect (never silently looked up).
 */
function parseIp(input: unknown): ParsedIp | null {
  if (typeof input !== 'string' || input.length > 300) return null;
  const kind = isIP(input);
  if (kind === 4) {
    const v4 = parseIpv4(input);
    return v4 === null ? null : { value: MAPPED_PREFIX | BigInt(v4), version: 4 };
  }
  if (kind === 6) {
    const percent = input.indexOf('%');
    let addr = input;
    if (percent >= 0) {
      if (!ZONE_RE.test(input.slice(percent + 1))) return null;
      addr = input.slice(0, percent);
    }
    const value = parseIpv6(addr);
    return value === null ? null : { value, version: 6 };
  }
  return null;
}

function formatIpv4(v4: number): string {
  return `${v4 >>> 24}.${(v4 >>> 16) & 0xff}.${(v4 >>> 8) & 0xff}.${v4 & 0xff}`;
}

// ---------------------------------------------------------------------------
// Ranges

interface Cidr {
  readonly value: bigint; // network address, 128-bit (IPv4 stored mapped)
  readonly bits: number; //  prefix length in 128-bit space
}

function maskOf(bits: number): bigint {
  return bits === 0 ? 0n : (ALL_ONES_128 << BigInt(128 - bits)) & ALL_ONES_128;
}

function contains(cidr: Cidr, value: bigint): boolean {
  return (value & maskOf(cidr.bits)) === cidr.value;
}

/** Parses "a.b.c.d/n", "v6/n" or a single IP; throws TypeError with the reason. */
function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  if (addrText.includes('%')) throw new TypeError('zone ids are not allowed');
  const ip = parseIp(addrText);
  if (ip === null) throw new TypeError(`"${addrText}" is not an IP address`);
  const max = ip.version === 4 ? 32 : 128;
  let len = max;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(lenText) || Number(lenText) > max) {
      throw new TypeError(`prefix length "/${lenText}" must be 0..${max}`);
    }
    len = Number(lenText);
  }
  const bits = ip.version === 4 ? 96 + len : len;
  const network = ip.value & maskOf(bits);
  if (network !== ip.value) {
    throw new TypeError(`host bits are set (did you mean ${formatCidr({ value: network, bits }, ip.version)}?)`);
  }
  return { value: network, bits };
}

function formatCidr(cidr: Cidr, version: 4 | 6): string {
  if (version === 4) return `${formatIpv4(Number(cidr.value & 0xffffffffn))}/${cidr.bits - 96}`;
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((cidr.value >> BigInt(i * 16)) & 0xffffn).toString(16));
  // Compress the longest run of zero groups (good enough for messages).
  const joined = `:${groups.join(':')}:`;
  let best = '';
  for (const m of joined.matchAll(/(?::0)+:/g)) if (m[0].length > best.length) best = m[0];
  const text = best.length > 3 ? joined.replace(best, '::') : joined;
  return `${text.replace(/^:(?!:)/, '').replace(/(?<!:):$/, '')}/${cidr.bits}`;
}

interface Range {
  readonly cidr: Cidr;
  readonly text: string;
  readonly name: string;
}

function range(text: string, name: string): Range {
  return { cidr: parseCidr(text), text, name };
}

/** IPv4 ranges, most specific first (first match wins). */
const IPV4_RANGES: readonly Range[] = [
  range('255.255.255.255/32', 'broadcast'),
  range('0.0.0.0/8', 'unspecified'),
  range('10.0.0.0/8', 'private'),
  range('100.64.0.0/10', 'carrier-grade-nat'),
  range('127.0.0.0/8', 'loopback'),
  range('169.254.0.0/16', 'link-local'),
  range('172.16.0.0/12', 'private'),
  range('192.0.0.0/24', 'ietf-protocol'),
  range('192.0.2.0/24', 'documentation'),
  range('192.88.99.0/24', '6to4-relay'),
  range('192.168.0.0/16', 'private'),
  range('198.18.0.0/15', 'benchmarking'),
  range('198.51.100.0/24', 'documentation'),
  range('203.0.113.0/24', 'documentation'),
  range('224.0.0.0/4', 'multicast'),
  range('240.0.0.0/4', 'reserved'),
];

/** Native IPv6 ranges, most specific first. The embedded-IPv4 prefixes are handled in classify(). */
const IPV6_RANGES: readonly Range[] = [
  range('::/128', 'unspecified'),
  range('::1/128', 'loopback'),
  range('::/96', 'reserved'), // IPv4-compatible (deprecated, RFC 4291)
  range('100::/64', 'discard'),
  range('2001::/32', 'teredo'),
  range('2001:2::/48', 'benchmarking'),
  range('2001::/23', 'ietf-protocol'),
  range('2001:db8::/32', 'documentation'),
  range('3fff::/20', 'documentation'), // RFC 9637
  range('fc00::/7', 'unique-local'),
  range('fe80::/10', 'link-local'),
  range('fec0::/10', 'site-local'),
  range('ff00::/8', 'multicast'),
];

const MAPPED = range('::ffff:0:0/96', 'ipv4-mapped');
const NAT64_WELL_KNOWN = range('64:ff9b::/96', 'nat64');
const NAT64_LOCAL = range('64:ff9b:1::/48', 'nat64');
const SIX_TO_FOUR = range('2002::/16', '6to4');
/** Global unicast; everything outside it that no rule above names is IETF-reserved. */
const GLOBAL_UNICAST = range('2000::/3', 'global-unicast');

interface Classification {
  readonly name: string;
  readonly range: string;
  /** Set when the verdict comes from an IPv4 address embedded in an IPv6 one. */
  readonly embedded?: { readonly ipv4: string; readonly via: string };
}

function classifyIpv4(v4: number): Range | null {
  const value = MAPPED_PREFIX | BigInt(v4);
  return IPV4_RANGES.find((r) => contains(r.cidr, value)) ?? null;
}

function classifyEmbedded(v4: number, via: string | null): Classification | null {
  const r = classifyIpv4(v4);
  if (r === null) return null;
  return via === null ? { name: r.name, range: r.text } : { name: r.name, range: r.text, embedded: { ipv4: formatIpv4(v4), via } };
}

function classify(ip: ParsedIp): Classification | null {
  const { value } = ip;
  const low32 = Number(value & 0xffffffffn);
  if (contains(MAPPED.cidr, value)) return classifyEmbedded(low32, ip.version === 4 ? null : 'IPv4-mapped');
  if (contains(NAT64_WELL_KNOWN.cidr, value)) return classifyEmbedded(low32, 'NAT64');
  if (contains(NAT64_LOCAL.cidr, value)) {
    // RFC 8215 local-use prefix: not globally reachable, and the IPv4 position
    // depends on the local translator's prefix length. Name the embedded
    // (/96 layout) IPv4 range when it is internal; refuse it in any case.
    return classifyEmbedded(low32, 'local-use NAT64') ?? { name: 'nat64', range: NAT64_LOCAL.text };
  }
  if (contains(SIX_TO_FOUR.cidr, value)) return classifyEmbedded(Number((value >> 80n) & 0xffffffffn), '6to4');
  const r = IPV6_RANGES.find((x) => contains(x.cidr, value));
  if (r !== undefined) return { name: r.name, range: r.text };
  if (!contains(GLOBAL_UNICAST.cidr, value)) return { name: 'reserved', range: 'outside 2000::/3' };
  return null;
}

/**
 * null when the address is public; otherwise the name of the range it falls
 * in: 'unspecified', 'loopback', 'private', 'carrier-grade-nat',
 * 'link-local', 'multicast', 'reserved', 'broadcast', 'documentation',
 * 'benchmarking', 'ietf-protocol', '6to4-relay', 'discard', 'teredo',
 * 'unique-local', 'site-local', 'nat64' — or 'invalid' for anything that is
 * not an IP literal. IPv4-mapped, NAT64 (64:ff9b::/96) and 6to4 addresses
 * take the name of the IPv4 address they embed.
 */
export function classifyAddress(ip: string): string | null {
  const parsed = parseIp(ip);
  if (parsed === null) return 'invalid';
  return classify(parsed)?.name ?? null;
}

function describe(ip: string, c: Classification): string {
  const embedded = c.embedded === undefined ? '' : `, embedded IPv4 ${c.embedded.ipv4} via ${c.embedded.via}`;
  return `${ip} is ${c.name} (${c.range}${embedded})`;
}

function quote(text: unknown): string {
  const s = typeof text === 'string' ? text : String(text);
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}...` : s);
}

// ---------------------------------------------------------------------------
// Guard

const UNIX_PREFIX = 'unix:';

/** Normalizes an absolute unix path lexically; null if it is not usable. */
function normalizeUnixPath(path: string): string | null {
  if (!path.startsWith('/') || path.includes('\0')) return null;
  return posix.normalize(path);
}

/** A normalized path as a directory prefix ending in "/", so prefixes match whole components only. */
function unixDir(path: string): string {
  return path.endsWith('/') ? path : `${path}/`;
}

export class SsrfGuard {
  readonly #allowPrivate: boolean;
  readonly #allowCidrs: readonly Cidr[];
  /** Allowed unix paths, each with a trailing "/": a path matches when it is one of them or lies under it. */
  readonly #allowUnix: readonly string[];
  readonly #lookup: HostLookup;

  constructor(options: GuardOptions, lookup: HostLookup = defaultLookup) {
    const cidrs: Cidr[] = [];
    const unix: string[] = [];
    for (const entry of options.allowBackends) {
      SsrfGuard.validateAllowEntry(entry);
      const text = entry.trim();
      if (text.startsWith(UNIX_PREFIX)) unix.push(unixDir(normalizeUnixPath(text.slice(UNIX_PREFIX.length)) as string));
      else cidrs.push(parseCidr(text));
    }
    this.#allowPrivate = options.allowPrivateBackends;
    this.#allowCidrs = cidrs;
    this.#allowUnix = unix;
    this.#lookup = lookup;
  }

  /** Throws TypeError naming the bad entry if an allowBackends entry is not a valid CIDR/IP/unix prefix. */
  static validateAllowEntry(entry: string): void {
    if (typeof entry !== 'string' || entry.trim().length === 0) {
      throw new TypeError(`invalid security.allowBackends entry ${quote(entry)}: expected a CIDR, an IP or unix:/path-prefix`);
    }
    const text = entry.trim();
    if (text.startsWith(UNIX_PREFIX)) {
      if (normalizeUnixPath(text.slice(UNIX_PREFIX.length)) === null) {
        throw new TypeError(`invalid security.allowBackends entry ${quote(entry)}: unix prefixes need an absolute path (unix:/path)`);
      }
      return;
    }
    try {
      parseCidr(text);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new TypeError(`invalid security.allowBackends entry ${quote(entry)}: ${why}; expected a CIDR ("10.0.0.0/8", "fd00::/8"), an IP or unix:/path-prefix`, {
        cause: err,
      });
    }
  }

  /** Checks one IP literal; returns null if allowed, else the reason string (e.g. "127.0.0.1 is loopback (127.0.0.0/8)"). */
  checkAddress(ip: string): string | null {
    const parsed = parseIp(ip);
    if (parsed === null) return `${quote(ip)} is not a valid IP address`;
    if (this.#allowPrivate) return null;
    if (this.#allowCidrs.some((c) => contains(c, parsed.value))) return null;
    const c = classify(parsed);
    return c === null ? null : describe(ip, c);
  }

  /**
   * Resolves a tcp endpoint's hostname once (IP literals are not looked up),
   * checks every address, and returns an endpoint whose host is the checked
   * IP literal (the first one). Any forbidden address forbids the endpoint.
   * With allowPrivateBackends the endpoint is returned unchanged.
   */
  async check(endpoint: Endpoint): Promise<Endpoint> {
    if (this.#allowPrivate) return endpoint;
    if (endpoint.type === 'unix') return this.#checkUnix(endpoint);

    const { host } = endpoint;
    if (parseIp(host) !== null) {
      const reason = this.checkAddress(host);
      if (reason !== null) throw forbidden(endpoint.label, reason, host);
      return endpoint;
    }
    if (isIP(host) !== 0) {
      // node would connect to it literally but we cannot vouch for it.
      throw forbidden(endpoint.label, `${quote(host)} is not an IP address this guard understands`, host);
    }

    let addresses: LookupAddress[];
    try {
      addresses = await this.#lookup(host);
    } catch (err) {
      const code = err !== null && typeof err === 'object' && 'code' in err ? ` (${String((err as { code: unknown }).code)})` : '';
      const why = err instanceof Error ? err.message : String(err);
      throw new ResolveError('UNAVAILABLE', `backend ${endpoint.label}: cannot resolve ${host}${code}: ${why}`, { cause: err });
    }
    if (!Array.isArray(addresses) || addresses.length === 0) {
      throw new ResolveError('UNAVAILABLE', `backend ${endpoint.label}: ${host} resolved to no addresses`);
    }
    for (const a of addresses) {
      const address: unknown = a?.address;
      const reason = typeof address === 'string' ? this.checkAddress(address) : `${quote(address)} is not a valid IP address`;
      if (reason !== null) throw forbidden(endpoint.label, `${host} resolves to ${reason}`, typeof address === 'string' ? address : null);
    }
    const first = addresses[0] as LookupAddress;
    return { type: 'tcp', host: first.address, port: endpoint.port, label: endpoint.label };
  }

  #checkUnix(endpoint: Extract<Endpoint, { type: 'unix' }>): Endpoint {
    const path = normalizeUnixPath(endpoint.path);
    if (path !== null && this.#allowUnix.some((dir) => path.startsWith(dir) || (path.length === dir.length - 1 && dir.startsWith(path)))) {
      return path === endpoint.path ? endpoint : { type: 'unix', path, label: endpoint.label };
    }
    throw new ResolveError(
      'FORBIDDEN',
      `backend ${endpoint.label} is forbidden: unix socket ${quote(endpoint.path)} is not under an allowed prefix; ` +
        `add "unix:<prefix>" to security.allowBackends (or set security.allowPrivateBackends) to allow it`,
    );
  }
}

function forbidden(label: string, reason: string, address: string | null): ResolveError {
  const suggestion = address === null || parseIp(address) === null ? '' : ` (e.g. "${address.replace(/%.*$/, '')}")`;
  return new ResolveError(
    'FORBIDDEN',
    `backend ${label} is forbidden: ${reason}; internal addresses are refused unless listed in security.allowBackends${suggestion} ` +
      `or security.allowPrivateBackends is true`,
  );
}
