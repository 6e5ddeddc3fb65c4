/**
 * Pure SMTP parsing (no sockets): client command lines, the parts of a
 * command the proxy routes by, and the backend's multi-line replies.
 *
 * RFC 5321 4.5.3.1.4: a command line is at most 512 octets with its CRLF.
 * MAIL and RCPT may be longer when they carry ESMTP parameters or UTF-8
 * addresses (RFC 1869, RFC 6531), up to the listener's maxLineLength.
 * Anything longer is answered `500 5.5.2` and the session ends.
 */
import { PolyproxyError } from '../../core/errors.ts';
import type { OpeningParser } from '../../core/client-connection.ts';
import { SmtpReplyError } from './errors.ts';

/** RFC 5321 4.5.3.1.4, CRLF included. */
export const COMMAND_LINE_LIMIT = 512;
/** Default ceiling for MAIL/RCPT lines with parameters. */
export const DEFAULT_MAX_LINE_LENGTH = 4096;
/** Largest backend reply (an EHLO reply with many extensions fits easily). */
export const MAX_REPLY_BYTES = 64 * 1024;

const LF = 0x0a;

function lineTooLong(limit: number): SmtpReplyError {
  return new SmtpReplyError('PROTOCOL', `command line longer than ${limit} octets`, '500 5.5.2 Line too long\r\n', { source: 'client' });
}

/** MAIL FROM / RCPT TO: the only commands allowed past 512 octets. */
function mayBeLong(buffered: Buffer): boolean {
  if (buffered.length < 5) return true;
  const verb = buffered.toString('latin1', 0, 5).toUpperCase();
  return verb === 'MAIL ' || verb === 'RCPT ';
}

/**
 * Reads one command line (CRLF, or a bare LF as lenient servers accept)
 * and returns it without its line ending.
 */
export function commandLineParser(maxLineLength: number = DEFAULT_MAX_LINE_LENGTH): OpeningParser<string> {
  const max = Math.max(maxLineLength, COMMAND_LINE_LIMIT);
  return (buffered) => {
    const scan = Math.min(buffered.length, max);
    const lf = buffered.subarray(0, scan).indexOf(LF);
    if (lf < 0) {
      if (buffered.length >= max || (buffered.length > COMMAND_LINE_LIMIT && !mayBeLong(buffered))) {
        throw lineTooLong(buffered.length >= max ? max : COMMAND_LINE_LIMIT);
      }
      return undefined;
    }
    const length = lf + 1;
    if (length > COMMAND_LINE_LIMIT && !mayBeLong(buffered)) throw lineTooLong(COMMAND_LINE_LIMIT);
    const end = lf > 0 && buffered[lf - 1] === 0x0d ? lf - 1 : lf;
    return { value: buffered.toString('utf8', 0, end), consumed: length };
  };
}

export interface Command {
  /** Upper-case verb: EHLO, MAIL, RCPT... */
  readonly verb: string;
  /** The rest of the line after the verb and one or more spaces. */
  readonly arg: string;
}

export function parseCommand(line: string): Command {
  const space = line.indexOf(' ');
  if (space < 0) return { verb: line.toUpperCase(), arg: '' };
  return { verb: line.slice(0, space).toUpperCase(), arg: line.slice(space + 1).trim() };
}

function syntaxError(message: string): SmtpReplyError {
  return new SmtpReplyError('PROTOCOL', message, `501 5.5.4 ${message}\r\n`, { source: 'client' });
}

/** Letters, digits, '.', '-', '_' (hostnames as seen in the wild) and UTF-8 labels (RFC 6531). */
const DOMAIN = /^[\p{L}\p{N}_-]+(?:\.[\p{L}\p{N}_-]+)*\.?$/u;
const ADDRESS_LITERAL = /^\[[\x21-\x5a\x5e-\x7e]+\]$/;

/**
 * The routing key of EHLO/HELO: the domain lowercased (a trailing dot
 * dropped), or an address literal `[1.2.3.4]` as is. Throws a 501 reply
 * error for a missing or malformed argument.
 */
export function heloDomain(arg: string): string {
  const first = arg.split(' ', 1)[0] ?? '';
  if (first === '') throw syntaxError('EHLO/HELO needs a domain or address literal');
  if (first.length > 255) throw syntaxError('domain too long');
  if (ADDRESS_LITERAL.test(first)) return first;
  if (!DOMAIN.test(first)) throw syntaxError('invalid domain in EHLO/HELO');
  const lower = first.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

export interface MailPath {
  /** The address between the angle brackets (source route removed); '' for the null path. */
  readonly address: string;
  /** The address's domain, lowercased; '' when there is none (`<>`, `<postmaster>`). */
  readonly domain: string;
  /** ESMTP parameters after the path, as sent. */
  readonly params: string;
}

/**
 * Parses the argument of `MAIL FROM:` (`keyword` FROM) or `RCPT TO:` (TO).
 * Accepts the common lenient forms (space after the colon, no brackets).
 */
export function parsePath(arg: string, keyword: 'FROM' | 'TO'): MailPath {
  const colon = arg.indexOf(':');
  if (colon < 0 || arg.slice(0, colon).trim().toUpperCase() !== keyword) throw syntaxError(`expected ${keyword}:<address>`);
  const rest = arg.slice(colon + 1).trimStart();
  let path: string;
  let params: string;
  if (rest.startsWith('<')) {
    const close = pathEnd(rest);
    if (close < 0) throw syntaxError('unterminated <address>');
    path = rest.slice(1, close);
    params = rest.slice(close + 1).trim();
  } else {
    const space = rest.indexOf(' ');
    path = space < 0 ? rest : rest.slice(0, space);
    params = space < 0 ? '' : rest.slice(space + 1).trim();
  }
  // RFC 5321 4.1.2: a source route (`@a,@b:user@c`) must be accepted and ignored.
  if (path.startsWith('@')) {
    const routeEnd = path.indexOf(':');
    path = routeEnd < 0 ? '' : path.slice(routeEnd + 1);
  }
  if (path === '' && keyword === 'TO') throw syntaxError('empty recipient');
  const at = path.lastIndexOf('@');
  let domain = at < 0 ? '' : path.slice(at + 1).toLowerCase();
  if (domain.endsWith('.')) domain = domain.slice(0, -1);
  if (at >= 0 && domain === '') throw syntaxError('address without a domain after @');
  return { address: path, domain, params };
}

/**
 * Index of the `>` that closes `<path>`, skipping quoted local parts
 * (`<"a>b"@example.org>`, RFC 5321 4.1.2 Quoted-string with `\` escapes), or -1.
 */
function pathEnd(text: string): number {
  let quoted = false;
  for (let i = 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (quoted) {
      if (c === 0x5c) i++;
      else if (c === 0x22) quoted = false;
    } else if (c === 0x22) quoted = true;
    else if (c === 0x3e) return i;
  }
  return -1;
}

export interface Reply {
  readonly code: number;
  /** Each line's text after the code and separator. */
  readonly lines: readonly string[];
  /** The reply's bytes exactly as received. */
  readonly raw: Buffer;
}

function badReply(message: string): PolyproxyError {
  return new PolyproxyError('PROTOCOL', `backend sent a malformed reply: ${message}`, { source: 'backend' });
}

/**
 * Reads one complete reply (RFC 5321 4.2.1: `ddd-text` lines continue,
 * a `ddd text` or bare `ddd` line ends it; every line carries the same code).
 */
export function replyParser(maxBytes: number = MAX_REPLY_BYTES): OpeningParser<Reply> {
  return (buffered) => {
    const lines: string[] = [];
    let code = -1;
    let at = 0;
    while (true) {
      const lf = buffered.indexOf(LF, at);
      if (lf < 0) {
        if (buffered.length > maxBytes) throw badReply(`longer than ${maxBytes} bytes`);
        return undefined;
      }
      if (lf + 1 > maxBytes) throw badReply(`longer than ${maxBytes} bytes`);
      const end = lf > at && buffered[lf - 1] === 0x0d ? lf - 1 : lf;
      const line = buffered.toString('utf8', at, end);
      at = lf + 1;
      if (line.length < 3 || !/^[2-5][0-9][0-9]$/.test(line.slice(0, 3))) throw badReply(JSON.stringify(line.slice(0, 40)));
      const lineCode = Number(line.slice(0, 3));
      if (code >= 0 && lineCode !== code) throw badReply('reply code changed inside a multi-line reply');
      code = lineCode;
      const sep = line.length > 3 ? line[3] : ' ';
      if (sep !== ' ' && sep !== '-') throw badReply(JSON.stringify(line.slice(0, 40)));
      lines.push(line.slice(4));
      if (sep === ' ') return { value: { code, lines, raw: buffered.subarray(0, at) }, consumed: at };
    }
  };
}

/** Formats a reply: `250-first`, ..., `250 last`. */
export function formatReply(code: number, lines: readonly string[]): string {
  let out = '';
  for (let i = 0; i < lines.length; i++) out += `${code}${i === lines.length - 1 ? ' ' : '-'}${lines[i] as string}\r\n`;
  return out;
}

/** Extensions the proxy cannot carry, or decides itself (RFC 3207 STARTTLS is the proxy's own TLS). */
const DROPPED = new Set(['STARTTLS', 'CHUNKING', 'BINARYMIME', 'XCLIENT', 'XFORWARD', 'PROXY']);

/** The extension keywords of an EHLO reply (its first line is the greeting), upper-cased. */
export function extensionKeywords(reply: Reply): Set<string> {
  const out = new Set<string>();
  for (let i = 1; i < reply.lines.length; i++) out.add(((reply.lines[i] as string).split(' ', 1)[0] ?? '').toUpperCase());
  return out;
}

/** The parameters of one extension (e.g. XCLIENT's attribute names), or null when not advertised. */
export function extensionParams(reply: Reply, keyword: string): string[] | null {
  for (let i = 1; i < reply.lines.length; i++) {
    const parts = (reply.lines[i] as string).trim().split(/\s+/);
    if ((parts[0] ?? '').toUpperCase() === keyword) return parts.slice(1);
  }
  return null;
}

/**
 * The EHLO reply the client gets: the proxy's greeting line, then the
 * backend's extensions minus those the proxy cannot carry, plus STARTTLS
 * when the listener terminates TLS and the session is not encrypted yet.
 */
export function rewriteEhloReply(backend: Reply, greeting: string, offerStartTls: boolean): string {
  const lines = [greeting];
  for (let i = 1; i < backend.lines.length; i++) {
    const line = backend.lines[i] as string;
    const keyword = (line.split(' ', 1)[0] ?? '').toUpperCase();
    if (DROPPED.has(keyword)) continue;
    lines.push(line);
  }
  if (offerStartTls) lines.push('STARTTLS');
  return formatReply(250, lines);
}

/** The EHLO reply the proxy gives before it knows the backend (STARTTLS first, routeBy: rcpt). */
export function localEhloReply(greeting: string, offerStartTls: boolean): string {
  const lines = [greeting, 'PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'SIZE'];
  if (offerStartTls) lines.push('STARTTLS');
  return formatReply(250, lines);
}
