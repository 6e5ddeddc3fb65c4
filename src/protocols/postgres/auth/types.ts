/**
 * The shapes of PostgreSQL authentication as the proxy uses them, on both
 * sides: logging in to a server (backend-login.ts) and authenticating a
 * client (client-auth.ts). Shared with the pooling session, which logs in
 * to servers with the credentials a client's authentication produced.
 */

/** What the proxy logs in to a PostgreSQL server with. */
export type BackendCredentials =
  /** Trust: the server must not ask for a password. */
  | { readonly kind: 'none' }
  /** A password: cleartext, md5 or SCRAM-SHA-256, whichever the server asks for. */
  | { readonly kind: 'password'; readonly password: string }
  /**
   * SCRAM pass-through (PgBouncer's technique): the keys recovered from a
   * client's SCRAM proof against a verifier equal to the server's. Works
   * only with SCRAM-SHA-256 and only while the server's verifier has the
   * same salt and iteration count; md5 and cleartext are impossible.
   */
  | { readonly kind: 'scram-keys'; readonly clientKey: Buffer; readonly serverKey: Buffer }
  /**
   * An md5 secret (`md5` + 32 hex digits, as pg_shadow stores it): enough
   * to answer a server's md5 challenge for the same user, nothing else.
   */
  | { readonly kind: 'md5-hash'; readonly hash: string };

export interface BackendLoginOptions {
  readonly user: string;
  readonly database: string;
  /** More startup parameters (application_name, client_encoding, options...); `user` and `database` here are ignored. */
  readonly params?: ReadonlyMap<string, string>;
  readonly credentials: BackendCredentials;
  /** The whole login (startup to ReadyForQuery) must finish within this long; 0 = no deadline. */
  readonly timeoutMs: number;
}

/** A logged-in server connection, ready for queries. */
export interface BackendLoginResult {
  /** Every ParameterStatus the server sent, in order (server_version, client_encoding, TimeZone...). */
  readonly parameters: Map<string, string>;
  /** BackendKeyData: the server process id and the secret key a CancelRequest must carry. */
  readonly processId: number;
  readonly secretKey: Buffer;
  /** Bytes the server sent after ReadyForQuery (normally none), to be handled before the socket's next data. */
  readonly leftover: Buffer | null;
}

/**
 * What the proxy knows of a user's password, from `auth.users`, a
 * resolver's route, or the auth query.
 */
export type UserSecret =
  | { readonly kind: 'password'; readonly password: string }
  | { readonly kind: 'scram'; readonly verifier: ScramVerifier }
  | { readonly kind: 'md5'; readonly hash: string };

/** A stored SCRAM-SHA-256 verifier: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. */
export interface ScramVerifier {
  readonly iterations: number;
  readonly salt: Buffer;
  readonly storedKey: Buffer;
  readonly serverKey: Buffer;
}

/** A user's entry where secrets are found: the secret, and optionally what to log in to the backend with instead of passing the client's credentials on. */
export interface UserEntry {
  readonly secret: UserSecret;
  /** The backend knows this user by this password rather than by the secret the client proved (a verifier with another salt, say). */
  readonly backendPassword?: string;
}

/** Finds a user's secret for one client (after routing: the tenant's resolver answer and backend are known). Resolves null for an unknown user. */
export type SecretLookup = (user: string) => Promise<UserEntry | null>;

/** How the proxy challenges clients (pg_hba's method column). */
export type AuthMethod = 'scram-sha-256' | 'md5' | 'password';

/** A client the proxy authenticated. */
export interface AuthenticatedClient {
  readonly user: string;
  readonly database: string;
  /** The client's other startup parameters (application_name, options, client_encoding...), to pass to the backend. */
  readonly params: ReadonlyMap<string, string>;
  /** What to log in to the backend with for this client. */
  readonly credentials: BackendCredentials;
}
