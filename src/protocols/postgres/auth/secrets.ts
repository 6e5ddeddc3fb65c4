/**
 * Where a user's secret comes from, in order: the tenant's route (a
 * resolver's `credentials`), the listener's `auth.users`, then the auth
 * query against the tenant's backend. The first source that knows the user
 * answers; an unknown user everywhere is null (and gets the same refusal as
 * a wrong password).
 */
import { createHash, randomBytes } from 'node:crypto';
import { DEFAULT_ITERATIONS, isMd5Secret, makeVerifier, parseScramSecret } from './scram.ts';
import type { ScramVerifier, SecretLookup, UserEntry, UserSecret } from './types.ts';

/** A secret as stored: a SCRAM verifier, an md5 secret (`md5` + 32 hex), or else a plain password (pg_shadow, an auth_file, a route). */
export function parseStoredSecret(text: string): UserSecret {
  const verifier = parseScramSecret(text);
  if (verifier !== undefined) return { kind: 'scram', verifier };
  if (isMd5Secret(text)) return { kind: 'md5', hash: text };
  return { kind: 'password', password: text };
}

/** A user as the config or a route gives it: exactly one of password / scramSecret, optionally backendPassword. */
export interface UserConfig {
  readonly password?: string | undefined;
  readonly scramSecret?: string | undefined;
  readonly backendPassword?: string | undefined;
}

/** The entry of a configured user; undefined when it has neither a password nor a valid verifier. */
export function userEntry(user: UserConfig): UserEntry | undefined {
  let secret: UserSecret;
  if (typeof user.password === 'string') secret = { kind: 'password', password: user.password };
  else if (typeof user.scramSecret === 'string') {
    const verifier = parseScramSecret(user.scramSecret);
    if (verifier === undefined) return undefined;
    secret = { kind: 'scram', verifier };
  } else return undefined;
  return typeof user.backendPassword === 'string' ? { secret, backendPassword: user.backendPassword } : { secret };
}

/** Tries each lookup in order; the first that knows the user answers. */
export function chainLookups(lookups: readonly SecretLookup[]): SecretLookup {
  return async (user) => {
    for (const lookup of lookups) {
      const entry = await lookup(user);
      if (entry !== null) return entry;
    }
    return null;
  };
}

/** A lookup over a fixed table (config users, a route's credentials). */
export function tableLookup(table: ReadonlyMap<string, UserEntry>): SecretLookup {
  return (user) => Promise.resolve(table.get(user) ?? null);
}

/**
 * The SCRAM verifier the proxy presents for a plain password: made once
 * per process and password with a random salt (PBKDF2 per login would cost
 * milliseconds of CPU), kept while the password is in use.
 */
const verifiers = new Map<string, ScramVerifier>();
const MAX_VERIFIERS = 10_000;

export function verifierOfPassword(password: string): ScramVerifier {
  let verifier = verifiers.get(password);
  if (verifier === undefined) {
    if (verifiers.size >= MAX_VERIFIERS) verifiers.clear();
    verifier = makeVerifier(password, randomBytes(16), DEFAULT_ITERATIONS);
    verifiers.set(password, verifier);
  }
  return verifier;
}

/**
 * The salt of the fake exchange an unknown user gets: the same for the same
 * user on every connection and worker (a random one would tell unknown
 * users apart, as PostgreSQL's mock_authentication_nonce avoids), derived
 * from a key the listener's config provides.
 */
export function mockSalt(key: string, user: string): Buffer {
  return createHash('sha256').update(key).update('\0').update(user).digest().subarray(0, 16);
}
