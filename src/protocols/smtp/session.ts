/**
 * The SMTP listener (RFC 5321).
 *
 * identify: the proxy sends its own 220 banner (the backend is not known
 * yet) and answers NOOP/RSET/HELP/QUIT until the client greets.
 * - routeBy: ehlo — the EHLO/HELO domain is the resource id. When the
 *   listener terminates TLS and the session is still plaintext, the proxy
 *   answers the first EHLO itself (advertising STARTTLS), upgrades on
 *   STARTTLS, and the EHLO sent inside TLS routes (RFC 3207 4.2: the client
 *   must greet again). A client that goes on without STARTTLS is routed by
 *   the domain it already gave; its command is replayed.
 * - routeBy: rcpt — the proxy answers EHLO and MAIL FROM itself and routes
 *   by the domain of the first RCPT TO.
 * The proxy routes the domain itself (ProtocolSession.router) before it
 * commits: a domain nothing routes, or one the resolver forbids, gets `550`
 * and the dialogue goes on (RFC 5321 4.2.2: a 5yz reply refuses the command,
 * not the session), so the client may greet again, try another recipient,
 * RSET or QUIT. Only failures that mean "try later" (unavailable, resolver
 * timeout, backend down) answer 421 and close (RFC 5321 3.8).
 *
 * replay: reads the backend's 220, sends EHLO with the client's domain
 * (passing the client's address first with XCLIENT when the backend offers
 * it), and answers the client's EHLO with the backend's extensions, minus
 * what the proxy cannot carry (parse.ts rewriteEhloReply). For routeBy:
 * rcpt it replays MAIL FROM and the first RCPT TO and relays the RCPT's
 * reply. After that the session is relayed through rcpt-guard.ts, which
 * checks each later RCPT (routeBy: rcpt) or EHLO/HELO (routeBy: ehlo)
 * against the session's backend; message content passes untouched, so
 * dot-stuffing and line endings arrive as sent.
 *
 * A client that vanishes mid-DATA closes its side of the relay, so the
 * backend sees the connection end without the final `.`: an aborted
 * transaction, never a delivered half message.
 */
import os from 'node:os';
import type { Socket } from 'node:net';
import { BackendReader } from '../../core/backend-reader.ts';
import type { ClientConnection } from '../../core/client-connection.ts';
import { within } from '../../core/deadline.ts';
import { PolyproxyError, toPolyproxyError } from '../../core/errors.ts';
import type { Opening, ProtocolModule, ProtocolSession } from '../../core/protocol.ts';
import type { RouteDecision } from '../../core/router.ts';
import { SmtpReplyError, encodeFailure, failureReply, refusesInSession } from './errors.ts';
import { commandLineParser, extensionParams, heloDomain, localEhloReply, parseCommand, parsePath, replyParser, rewriteEhloReply, startTlsEhloReply } from './parse.ts';
import type { Reply } from './parse.ts';
import { RcptGuard } from './rcpt-guard.ts';

export interface SmtpOptions {
  readonly routeBy: 'ehlo' | 'rcpt';
  /** Name in the banner and EHLO replies. */
  readonly hostname?: string;
  readonly maxLineLength: number;
  /** Time the backend gets for its greeting and each reply during the replay. */
  readonly replayTimeoutMs: number;
}

/** What identify learnt, for replay. */
interface SessionStart {
  readonly verb: 'EHLO' | 'HELO';
  /** The client's greeting argument as sent (the backend gets the same). */
  readonly greetArg: string;
  /** The client already got an EHLO reply from the proxy: the backend's is not relayed. */
  readonly clientGreeted: boolean;
  /** Command lines (with CRLF) the backend must get after the greeting, before the relay. */
  readonly pending: Buffer | null;
  /** routeBy: rcpt — the MAIL FROM and first RCPT TO lines to replay. */
  readonly mail: string | null;
  readonly rcpt: string | null;
  readonly guard: RcptGuard | null;
}

/** Consecutive bad commands before the proxy gives up on a client (as Postfix's smtpd_hard_error_limit). */
const MAX_ERRORS = 10;

const readReply = replyParser();

export function createSmtpProtocol(options: SmtpOptions): ProtocolModule {
  const hostname = options.hostname ?? os.hostname();
  const readLine = commandLineParser(options.maxLineLength);
  const starts = new WeakMap<Opening, SessionStart>();
  const greeting = (domain: string): string => `${hostname} greets ${domain}`;

  async function identify(conn: ClientConnection, session?: ProtocolSession): Promise<Opening | null> {
    conn.write(`220 ${hostname} ESMTP polyproxy\r\n`);
    /** Set once the client greeted (and was answered by the proxy). */
    let greeted: { verb: 'EHLO' | 'HELO'; arg: string; domain: string } | null = null;
    let mail: string | null = null;
    let errors = 0;
    const reply = (text: string): void => conn.write(`${text}\r\n`);
    const fail = (text: string): void => {
      if (++errors >= MAX_ERRORS) throw new SmtpReplyError('PROTOCOL', 'too many bad commands', '421 4.7.0 Too many errors, closing connection\r\n', { source: 'client' });
      reply(text);
    };
    /**
     * Routes `domain` before the session commits to it. A refusal the session
     * survives (not routed, forbidden: 550) comes back as the reply to give;
     * anything else (unavailable, resolver timeout...) is thrown, and core
     * answers 421 and closes. Without a ProtocolSession core routes, and
     * every refusal closes.
     */
    const routeWith = async (domain: string, start: Omit<SessionStart, 'guard'>, guard: RcptGuard | null): Promise<Opening | string> => {
      let decision: RouteDecision | undefined;
      if (session !== undefined) {
        try {
          const ctx = session.resolveContext();
          decision = session.router.cached(domain, ctx) ?? (await session.router.route(domain, ctx));
        } catch (err) {
          const error = toPolyproxyError(err);
          if (refusesInSession(error)) return failureReply(error, domain);
          throw error.resourceId === undefined ? new PolyproxyError(error.kind, error.message, { source: error.source, resourceId: domain, cause: error }) : error;
        }
      }
      const opening: Opening =
        guard === null
          ? { resourceId: domain, replay: null, decision }
          : { resourceId: domain, replay: null, decision, clientFilter: guard, backendTap: guard, onConnected: (endpoint, lookup) => guard.connected(endpoint, lookup) };
      starts.set(opening, { ...start, guard });
      return opening;
    };

    while (true) {
      const line = await conn.read(readLine);
      const { verb, arg } = parseCommand(line);
      switch (verb) {
        case 'EHLO':
        case 'HELO': {
          let domain: string;
          try {
            domain = heloDomain(arg);
          } catch (err) {
            if (!(err instanceof SmtpReplyError)) throw err;
            fail(String(err.reply).trimEnd());
            continue;
          }
          const offerTls = conn.tlsAvailable && conn.tls === undefined;
          if (options.routeBy === 'ehlo' && !(offerTls && verb === 'EHLO')) {
            const routed = await routeWith(domain, { verb, greetArg: arg, clientGreeted: false, pending: null, mail: null, rcpt: null }, new RcptGuard(domain, 'ehlo'));
            if (typeof routed !== 'string') return routed;
            // Refused greeting: the client is not greeted and may try another domain (or QUIT).
            greeted = null;
            mail = null;
            fail(routed.trimEnd());
            continue;
          }
          greeted = { verb, arg, domain };
          mail = null;
          const ehloReply = options.routeBy === 'ehlo' ? startTlsEhloReply(greeting(domain)) : localEhloReply(greeting(domain), offerTls);
          reply(verb === 'EHLO' ? ehloReply.trimEnd() : `250 ${hostname}`);
          continue;
        }
        case 'STARTTLS':
          if (!conn.tlsAvailable) fail('502 5.5.1 STARTTLS not available');
          else if (conn.tls !== undefined) fail('503 5.5.1 TLS already active');
          else if (arg !== '') fail('501 5.5.4 STARTTLS takes no parameters');
          else {
            // upgradeToTls refuses plaintext pipelined after STARTTLS (RFC 3207 5: it could be injected).
            if (conn.hasBuffered) throw new SmtpReplyError('PROTOCOL', 'command pipelined after STARTTLS', '554 5.5.1 Command pipelined after STARTTLS\r\n', { source: 'client' });
            reply('220 2.0.0 Ready to start TLS');
            await conn.upgradeToTls();
            // RFC 3207 4.2: forget everything learnt before TLS; the client greets again.
            greeted = null;
            mail = null;
          }
          continue;
        case 'NOOP':
          reply('250 2.0.0 OK');
          continue;
        case 'RSET':
          mail = null;
          reply('250 2.0.0 OK');
          continue;
        case 'HELP':
          reply('214 2.0.0 See RFC 5321');
          continue;
        case 'QUIT':
          reply(`221 2.0.0 ${hostname} closing connection`);
          return null;
        default:
          break;
      }
      if (greeted === null) {
        fail(verb === 'MAIL' || verb === 'RCPT' || verb === 'DATA' ? '503 5.5.1 Send EHLO/HELO first' : '500 5.5.2 Command unrecognized');
        continue;
      }
      if (options.routeBy === 'ehlo') {
        // The proxy answered this EHLO (to offer STARTTLS) and the client went on in plaintext:
        // route by the domain it gave, and replay this command after the backend's greeting.
        const routed = await routeWith(greeted.domain, { verb: greeted.verb, greetArg: greeted.arg, clientGreeted: true, pending: Buffer.from(`${line}\r\n`), mail: null, rcpt: null }, new RcptGuard(greeted.domain, 'ehlo'));
        if (typeof routed !== 'string') return routed;
        // The domain it greeted with is not served here: this command is refused and the client must greet again.
        greeted = null;
        fail(routed.trimEnd());
        continue;
      }
      // routeBy: rcpt
      switch (verb) {
        case 'MAIL':
          if (mail !== null) {
            fail('503 5.5.1 Nested MAIL command');
            continue;
          }
          try {
            parsePath(arg, 'FROM');
          } catch (err) {
            if (!(err instanceof SmtpReplyError)) throw err;
            fail(String(err.reply).trimEnd());
            continue;
          }
          mail = line;
          reply('250 2.1.0 OK');
          continue;
        case 'RCPT': {
          if (mail === null) {
            fail('503 5.5.1 Need MAIL command');
            continue;
          }
          let domain: string;
          try {
            domain = parsePath(arg, 'TO').domain;
          } catch (err) {
            if (!(err instanceof SmtpReplyError)) throw err;
            fail(String(err.reply).trimEnd());
            continue;
          }
          if (domain === '') {
            fail('550 5.1.3 Recipient without a domain cannot be routed');
            continue;
          }
          const routed = await routeWith(domain, { verb: greeted.verb, greetArg: greeted.arg, clientGreeted: true, pending: null, mail, rcpt: line }, new RcptGuard(domain));
          if (typeof routed !== 'string') return routed;
          // This recipient only: the transaction goes on, the next RCPT may route.
          fail(routed.trimEnd());
          continue;
        }
        case 'DATA':
          fail(mail === null ? '503 5.5.1 Need MAIL command' : '503 5.5.1 Need RCPT command');
          continue;
        default:
          fail('502 5.5.1 Command not implemented before the first recipient');
          continue;
      }
    }
  }

  async function replay(conn: ClientConnection, backend: Socket, opening: Opening): Promise<void> {
    const start = starts.get(opening);
    if (start === undefined) throw new PolyproxyError('INTERNAL', 'SMTP session state missing');
    const reader = new BackendReader(backend, 'the SMTP greeting');
    const resourceId = opening.resourceId;
    const read = (what: string): Promise<Reply> =>
      within(reader.read(readReply), options.replayTimeoutMs, () => new PolyproxyError('BACKEND_UNREACHABLE', `the backend did not answer ${what} within ${options.replayTimeoutMs} ms`, { source: 'backend', resourceId }));
    const refused = (what: string, r: Reply): SmtpReplyError => {
      // The backend's own refusal; anything but a 5xx becomes "try again later".
      const text = r.code >= 500 && r.code < 600 ? r.raw : `421 4.3.0 Service for ${resourceId} temporarily unavailable, closing connection\r\n`;
      return new SmtpReplyError(r.code >= 500 ? 'FORBIDDEN' : 'UNAVAILABLE', `backend refused ${what}: ${r.code} ${r.lines[0] ?? ''}`, text, { source: 'backend', resourceId });
    };
    try {
      const banner = await read('with its greeting');
      if (banner.code !== 220) {
        // e.g. 554 "no SMTP service here", 421 "too busy": try again later (RFC 5321 3.1).
        throw new SmtpReplyError('UNAVAILABLE', `backend greeted with ${banner.code}`, `421 4.3.0 Service for ${resourceId} temporarily unavailable, closing connection\r\n`, { source: 'backend', resourceId });
      }
      const greet = `${start.verb} ${start.greetArg}\r\n`;
      backend.write(greet);
      let ehlo = await read(start.verb);
      if (ehlo.code !== 250) throw refused(start.verb, ehlo);
      const xclient = start.verb === 'EHLO' ? extensionParams(ehlo, 'XCLIENT') : null;
      if (xclient !== null && conn.remoteAddress !== '') {
        // Postfix XCLIENT (www.postfix.org/XCLIENT_README.html): the backend sees the real client; it
        // answers with a new 220 greeting and forgets the EHLO, so greet again.
        const attrs = new Set(xclient.map((a) => a.toUpperCase()));
        const parts: string[] = [];
        if (attrs.has('ADDR')) parts.push(`ADDR=${xtextAddress(conn.remoteAddress)}`);
        if (attrs.has('PORT') && conn.remotePort > 0) parts.push(`PORT=${conn.remotePort}`);
        if (attrs.has('PROTO')) parts.push('PROTO=ESMTP');
        if (parts.length > 0) {
          backend.write(`XCLIENT ${parts.join(' ')}\r\n`);
          const answer = await read('XCLIENT');
          if (answer.code === 220 || answer.code === 250) {
            backend.write(greet);
            ehlo = await read(`${start.verb} after XCLIENT`);
            if (ehlo.code !== 250) throw refused(start.verb, ehlo);
          }
        }
      }
      if (!start.clientGreeted) {
        if (start.verb === 'EHLO') conn.write(rewriteEhloReply(ehlo, greeting(resourceId), conn.tlsAvailable && conn.tls === undefined));
        else conn.write(ehlo.raw);
      }
      if (start.mail !== null && start.rcpt !== null) {
        backend.write(`${start.mail}\r\n`);
        const mailReply = await read('MAIL FROM');
        if (mailReply.code !== 250) throw refused('MAIL FROM', mailReply);
        backend.write(`${start.rcpt}\r\n`);
        const rcptReply = await read('RCPT TO');
        conn.write(rcptReply.raw);
        start.guard?.afterFirstRcpt();
      }
      const extra = reader.leftover();
      if (extra !== null) conn.write(extra);
      if (start.pending !== null) {
        start.guard?.expectReply();
        backend.write(start.pending);
      }
    } finally {
      reader.dispose();
    }
  }

  function encodeError(err: PolyproxyError, resourceId: string | undefined): Buffer | null {
    return encodeFailure(err, resourceId);
  }

  // Message content waits for the backend's 354: a client that half-closed first has nothing left to deliver.
  return { name: 'smtp', identify, encodeError, replay, finEndsOpening: true };
}

/** XCLIENT values are xtext (RFC 1891); IPv6 addresses take the `IPV6:` prefix. */
function xtextAddress(address: string): string {
  const plain = address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
  return plain.includes(':') ? `IPV6:${plain}` : plain;
}
