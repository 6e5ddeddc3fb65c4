/** A FastCGI server address (`host:port`, `[v6]:port` or `unix:/path`) and its per-server timeouts. */
import { parseEndpoint } from '../core/endpoint.ts';
import type { Endpoint } from '../core/endpoint.ts';
import { FastCgiError } from './errors.ts';

export interface ServerOptions {
  /** Overrides the client's connectTimeoutMs for this server. */
  readonly connectTimeoutMs?: number;
  /** Overrides the client's readWriteTimeoutMs for this server. */
  readonly readWriteTimeoutMs?: number;
}

export class FastCgiServer {
  readonly endpoint: Endpoint;
  readonly options: ServerOptions;

  constructor(address: string, options: ServerOptions = {}) {
    try {
      this.endpoint = parseEndpoint(address);
    } catch (err) {
      throw new FastCgiError('FCGI_ERR_INVALID_ARGUMENT', (err as Error).message, { cause: err });
    }
    this.options = options;
  }

  /** `host:port` or `unix:/path`. */
  get label(): string {
    return this.endpoint.label;
  }

  static tcp(host: string, port: number, options: ServerOptions = {}): FastCgiServer {
    return new FastCgiServer(host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`, options);
  }

  static unix(path: string, options: ServerOptions = {}): FastCgiServer {
    return new FastCgiServer(`unix:${path}`, options);
  }

  static from(server: string | FastCgiServer): FastCgiServer {
    return typeof server === 'string' ? new FastCgiServer(server) : server;
  }
}

export type ServerLike = string | FastCgiServer;
