/**
 * Endpoint strings: `host:port`, `[v6addr]:port` or `unix:/path`.
 * Parsed once when a route is resolved, never per connection.
 */
import { isIP } from 'node:net';

export type Endpoint =
  | { readonly type: 'tcp'; readonly host: string; readonly port: number; readonly label: string }
  | { readonly type: 'unix'; readonly path: string; readonly label: string };

export function parseEndpoint(input: string): Endpoint {
  const text = input.trim();
  if (text.startsWith('unix:')) {
    const path = text.slice(5);
    if (path.length === 0 || !path.startsWith('/')) throw new TypeError(`invalid endpoint "${input}": unix endpoints need an absolute path (unix:/path)`);
    return { type: 'unix', path, label: text };
  }
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') throw new TypeError(`invalid endpoint "${input}": expected [v6addr]:port`);
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (isIP(host) !== 6) throw new TypeError(`invalid endpoint "${input}": "${host}" is not an IPv6 address`);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon <= 0) throw new TypeError(`invalid endpoint "${input}": expected host:port, [v6addr]:port or unix:/path`);
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) throw new TypeError(`invalid endpoint "${input}": write IPv6 addresses as [addr]:port`);
    if (!/^[A-Za-z0-9.-]+$/.test(host)) throw new TypeError(`invalid endpoint "${input}": bad host "${host}"`);
  }
  if (!/^\d{1,5}$/.test(portText)) throw new TypeError(`invalid endpoint "${input}": bad port "${portText}"`);
  const port = Number(portText);
  if (port < 1 || port > 65535) throw new TypeError(`invalid endpoint "${input}": port ${port} out of range`);
  // Hostnames and IPv6 hex are case-insensitive; an IPv6 zone id (an interface name) is not.
  const zone = host.indexOf('%');
  const normalized = zone < 0 ? host.toLowerCase() : host.slice(0, zone).toLowerCase() + host.slice(zone);
  return { type: 'tcp', host: normalized, port, label: text };
}

export function formatHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
