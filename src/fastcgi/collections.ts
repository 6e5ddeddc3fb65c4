/**
 * Sets of servers a proxy sends to: RoundRobin and Random pick one server
 * per request; Cluster is every server (ClusterProxy sends to all).
 */
import { FastCgiError } from './errors.ts';
import { FastCgiServer } from './server.ts';
import type { ServerLike } from './server.ts';

export interface ServerCollection {
  readonly servers: readonly FastCgiServer[];
  /** The server for the next request. */
  next(): FastCgiServer;
}

function toServers(servers: readonly ServerLike[], kind: string): FastCgiServer[] {
  if (servers.length === 0) throw new FastCgiError('FCGI_ERR_NO_SERVER', `${kind} needs at least one server`);
  return servers.map((s) => FastCgiServer.from(s));
}

/** Each request goes to the next server in turn. */
export class RoundRobin implements ServerCollection {
  readonly servers: readonly FastCgiServer[];
  #next = 0;

  constructor(servers: readonly ServerLike[]) {
    this.servers = toServers(servers, 'RoundRobin');
  }

  static of(...servers: ServerLike[]): RoundRobin {
    return new RoundRobin(servers);
  }

  next(): FastCgiServer {
    const server = this.servers[this.#next] as FastCgiServer;
    this.#next = (this.#next + 1) % this.servers.length;
    return server;
  }
}

/** Each request goes to a server chosen uniformly at random. */
export class Random implements ServerCollection {
  readonly servers: readonly FastCgiServer[];
  readonly #random: () => number;

  /** `random` returns [0, 1) (Math.random by default; tests pass a seeded one). */
  constructor(servers: readonly ServerLike[], random: () => number = Math.random) {
    this.servers = toServers(servers, 'Random');
    this.#random = random;
  }

  static of(...servers: ServerLike[]): Random {
    return new Random(servers);
  }

  next(): FastCgiServer {
    return this.servers[Math.min(this.servers.length - 1, Math.floor(this.#random() * this.servers.length))] as FastCgiServer;
  }
}

/** Every server: the target of ClusterProxy. */
export class Cluster {
  readonly servers: readonly FastCgiServer[];

  constructor(servers: readonly ServerLike[]) {
    this.servers = toServers(servers, 'Cluster');
  }

  static of(...servers: ServerLike[]): Cluster {
    return new Cluster(servers);
  }
}
