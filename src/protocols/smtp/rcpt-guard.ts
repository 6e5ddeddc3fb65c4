/**
 * The relay's client filter for `routeBy: rcpt` sessions: the session
 * stays on the backend its first recipient routed to, so a later RCPT TO
 * whose domain routes elsewhere is answered `451 4.3.0` by the proxy (the
 * sender retries it in a separate transaction) instead of reaching this
 * backend. Nothing is misdelivered and nothing is lost.
 *
 * It follows the command/DATA state so message content is never read as
 * commands: after a forwarded DATA it holds the client's bytes until the
 * backend's reply says whether content follows (354); content passes
 * untouched until the `CRLF.CRLF` that ends it (RFC 5321 4.1.1.4).
 *
 * With `routeBy: ehlo` the same guard checks a later EHLO/HELO instead:
 * a greeting that names a domain routed elsewhere (or refused) is answered
 * by the proxy and never reaches the backend (issue 15), so a backend that
 * takes the client's identity from its greeting never sees another tenant.
 *
 * Local replies keep pipelining's order (RFC 2920 3.1: replies in command
 * order): the guard counts commands the backend has not answered yet (it
 * is also the backend tap that sees the replies) and writes its own reply
 * only once those are answered.
 */
import type { Endpoint } from '../../core/endpoint.ts';
import { toPolyproxyError } from '../../core/errors.ts';
import type { RouteLookup } from '../../core/protocol.ts';
import type { ClientFilter, Relay, StreamTap } from '../../core/relay.ts';
import { SMTP_ERRORS, SmtpReplyError } from './errors.ts';
import { heloDomain, parsePath } from './parse.ts';

const COMMAND = 0;
/** DATA was forwarded; its reply decides whether content follows. */
const DATA_WAIT = 1;
const CONTENT = 2;

/** Command lines longer than this are a protocol violation (the backend would refuse them too). */
const MAX_COMMAND_LINE = 64 * 1024;

/** What a forwarded command's reply means. */
const KIND_COMMAND = 0;
const KIND_DATA = 1;

const END_OF_DATA = Buffer.from('\r\n.\r\n');

export class RcptGuard implements ClientFilter, StreamTap {
  #endpoint: Endpoint | null = null;
  #lookup: RouteLookup | null = null;
  /** Domains known to route to this session's backend. */
  readonly #allowed = new Set<string>();
  #relay: Relay | null = null;
  #mode = COMMAND;
  /** Bytes of `CRLF.CRLF` matched so far inside content. */
  #eod = 0;
  /** Client bytes not processed yet (the first may start with a partial line). */
  #queue: Buffer[] = [];
  /** A command line that straddles chunks. */
  #partial: Buffer | null = null;
  /** Kinds of forwarded commands the backend has not answered yet, oldest first. */
  readonly #awaiting: number[] = [];
  /** A reply of the proxy's own, written once the backend has answered everything before it. */
  #local: string | null = null;
  /** A route lookup is in flight. */
  #busy = false;
  /** The client was paused by the guard (not by backpressure). */
  #paused = false;
  /** Backend reply parsing: the first 4 bytes of the current line, and how many were seen. */
  readonly #head = Buffer.alloc(4);
  #headFill = 0;

  /** What routes the session, so what is checked: recipients, or greetings. */
  readonly #routeBy: 'rcpt' | 'ehlo';

  constructor(firstDomain: string, routeBy: 'rcpt' | 'ehlo' = 'rcpt') {
    this.#allowed.add(firstDomain);
    this.#routeBy = routeBy;
  }

  /** The replay sent the backend a command of the client's whose reply the relay will carry. */
  expectReply(): void {
    this.#awaiting.push(KIND_COMMAND);
  }

  connected(endpoint: Endpoint, lookup: RouteLookup): void {
    this.#endpoint = endpoint;
    this.#lookup = lookup;
  }

  /** The replay answered MAIL and the first RCPT: the relay starts in command mode with nothing outstanding. */
  afterFirstRcpt(): void {
    this.#mode = COMMAND;
  }

  push(relay: Relay, chunk: Buffer): boolean {
    this.#relay = relay;
    this.#queue.push(chunk);
    const ok = this.#drain();
    if (!ok || this.#queue.length > 0 || this.#busy || this.#local !== null) {
      if (this.#queue.length > 0 || this.#busy || this.#local !== null) this.#paused = true;
      return false;
    }
    return true;
  }

  /** Backend bytes: counts final reply lines (`ddd ` then LF). */
  inspect(chunk: Buffer): boolean {
    let answered = false;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i] as number;
      if (b === 0x0a) {
        const final = this.#headFill >= 3 && (this.#headFill === 3 || this.#head[3] === 0x20 || this.#head[3] === 0x0d);
        if (final) {
          const code = (this.#head[0] as number) * 100 + (this.#head[1] as number) * 10 + (this.#head[2] as number) - 111 * 48;
          this.#answered(code);
          answered = true;
        }
        this.#headFill = 0;
      } else if (this.#headFill < 4) {
        this.#head[this.#headFill++] = b;
      }
    }
    // Resume after the relay wrote this chunk to the client, so a local reply follows the backend's.
    if (answered) queueMicrotask(() => this.#resume());
    return false;
  }

  #answered(code: number): void {
    const kind = this.#awaiting.shift();
    if (kind === KIND_DATA && this.#mode === DATA_WAIT) {
      this.#mode = code === 354 ? CONTENT : COMMAND;
      this.#eod = 2; // the DATA line's CRLF counts: a lone ".\r\n" ends an empty message
    }
  }

  #resume(): void {
    const relay = this.#relay;
    if (relay === null || relay.done) return;
    const ok = this.#drain();
    if (ok && this.#paused && this.#queue.length === 0 && !this.#busy && this.#local === null) {
      this.#paused = false;
      relay.client.resume();
    }
  }

  /** Processes queued bytes until done or blocked. Returns false when the backend did not take everything. */
  #drain(): boolean {
    const relay = this.#relay as Relay;
    let ok = true;
    while (true) {
      if (this.#busy) return ok;
      if (this.#local !== null) {
        if (this.#awaiting.length > 0) return ok;
        const reply = this.#local;
        this.#local = null;
        relay.bytesOut += reply.length;
        relay.client.write(reply);
      }
      if (this.#mode === DATA_WAIT) return ok;
      const chunk = this.#queue.shift();
      if (chunk === undefined) return ok;
      ok = this.#process(relay, chunk) && ok;
      if (relay.done || relay.backend.destroyed) return false;
    }
  }

  /** Processes one chunk; puts back what it could not process yet. */
  #process(relay: Relay, chunk: Buffer): boolean {
    let ok = true;
    let at = 0;
    while (at < chunk.length) {
      if (this.#mode === CONTENT) {
        let i = at;
        let eod = this.#eod;
        for (; i < chunk.length && eod < END_OF_DATA.length; i++) {
          const b = chunk[i] as number;
          eod = b === END_OF_DATA[eod] ? eod + 1 : b === 0x0d ? 1 : 0;
        }
        ok = relay.writeToBackend(at === 0 && i === chunk.length ? chunk : chunk.subarray(at, i)) && ok;
        at = i;
        if (eod === END_OF_DATA.length) {
          this.#mode = COMMAND;
          this.#awaiting.push(KIND_COMMAND); // the reply to the message
          this.#eod = 0;
        } else {
          this.#eod = eod;
        }
        continue;
      }
      if (this.#mode === DATA_WAIT || this.#busy || this.#local !== null) {
        this.#queue.unshift(chunk.subarray(at));
        return ok;
      }
      const lf = chunk.indexOf(0x0a, at);
      if (lf < 0) {
        const rest = chunk.subarray(at);
        this.#partial = this.#partial === null ? Buffer.from(rest) : Buffer.concat([this.#partial, rest]);
        if (this.#partial.length > MAX_COMMAND_LINE) this.#refuse(relay, '500 5.5.2 Line too long\r\n');
        return ok;
      }
      let line = chunk.subarray(at, lf + 1);
      at = lf + 1;
      if (this.#partial !== null) {
        line = Buffer.concat([this.#partial, line]);
        this.#partial = null;
      }
      ok = this.#command(relay, line) && ok;
    }
    return ok;
  }

  /** One complete command line (with its line ending). */
  #command(relay: Relay, line: Buffer): boolean {
    // Lenient servers (Postfix) skip leading whitespace and take any whitespace after the verb.
    let start = 0;
    while (start < line.length && (line[start] === 0x20 || line[start] === 0x09)) start++;
    const verb = line.toString('latin1', start, Math.min(line.length, start + 8)).toUpperCase();
    const greeting = verb.startsWith('EHLO') || verb.startsWith('HELO');
    if (greeting && this.#routeBy === 'ehlo' && (verb.length === 4 || !/[A-Z0-9]/.test(verb.charAt(4)))) {
      let domain: string;
      try {
        domain = heloDomain(line.toString('utf8', start + 4).replace(/\r?\n$/, '').trim());
      } catch (err) {
        this.#local = err instanceof SmtpReplyError ? String(err.reply) : '501 5.5.4 Syntax error\r\n';
        return true;
      }
      if (!this.#allowed.has(domain)) {
        this.#check(relay, line, domain);
        return true;
      }
    } else if (this.#routeBy === 'rcpt' && verb.startsWith('RCPT') && (verb.length === 4 || !/[A-Z0-9]/.test(verb.charAt(4)))) {
      // A recipient the guard cannot read is refused here, never forwarded: a more lenient
      // backend could read a domain in it that was not checked (issue 15).
      let path: ReturnType<typeof parsePath>;
      try {
        const text = line.toString('utf8', start + 4).replace(/\r?\n$/, '');
        path = parsePath(text.trim(), 'TO');
      } catch (err) {
        this.#local = err instanceof SmtpReplyError ? String(err.reply) : '501 5.5.4 Syntax error\r\n';
        return true;
      }
      const domain = path.domain;
      if (domain === '' && /[@%!"\\]/.test(path.address)) {
        this.#local = '501 5.1.3 Recipient address cannot be routed\r\n';
        return true;
      }
      if (domain !== '' && !this.#allowed.has(domain)) {
        this.#check(relay, line, domain);
        return true;
      }
    } else if (verb.startsWith('DATA')) {
      this.#mode = DATA_WAIT;
      this.#awaiting.push(KIND_DATA);
      return relay.writeToBackend(line);
    } else if (verb.startsWith('STARTTLS') || verb.startsWith('BDAT ')) {
      // The guard must see commands in the clear, and content only as DATA.
      this.#local = verb.startsWith('BDAT') ? '502 5.5.1 BDAT not supported\r\n' : '454 4.7.0 TLS not available now\r\n';
      return true;
    }
    this.#awaiting.push(KIND_COMMAND);
    return relay.writeToBackend(line);
  }

  /** Asks the router where `domain` goes; the RCPT passes only when it is this session's backend. */
  #check(relay: Relay, line: Buffer, domain: string): void {
    this.#busy = true;
    const endpoint = this.#endpoint;
    const lookup = this.#lookup;
    const decided = (reply: string | null): void => {
      this.#busy = false;
      if (relay.done || relay.backend.destroyed) return;
      if (reply === null) {
        this.#allowed.add(domain);
        this.#awaiting.push(KIND_COMMAND);
        relay.writeToBackend(line);
      } else {
        this.#local = reply;
      }
      this.#resume();
    };
    if (endpoint === null || lookup === null) {
      decided('451 4.3.0 Recipient cannot be routed now, try again later\r\n');
      return;
    }
    lookup(domain).then(
      (endpoints) => {
        if (endpoints.some((e) => e.label === endpoint.label)) decided(null);
        else if (this.#routeBy === 'ehlo') decided(`550 5.7.1 ${domain} is served by another server: reconnect and greet with it\r\n`);
        else decided(`451 4.3.0 <${domain}> is served by another server: send it in a separate transaction\r\n`);
      },
      (err: unknown) => {
        const error = toPolyproxyError(err);
        const { code, status } = SMTP_ERRORS[error.kind];
        if (this.#routeBy === 'ehlo') decided(code >= 500 ? `${code} ${status} ${domain} is not served here\r\n` : `451 4.3.0 ${domain} cannot be routed now, try again later\r\n`);
        else decided(code >= 500 ? `${code} ${status} Mail for ${domain} is not accepted here\r\n` : `451 4.3.0 Mail for ${domain} cannot be routed now, try again later\r\n`);
      },
    );
  }

  #refuse(relay: Relay, reply: string): void {
    if (relay.reason === null) relay.reason = 'refused-command';
    relay.bytesOut += reply.length;
    relay.backend.destroy();
    relay.client.end(reply);
  }
}
