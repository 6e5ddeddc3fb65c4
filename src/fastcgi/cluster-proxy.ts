/**
 * `ClusterProxy`: one request to every server of a Cluster, results yielded
 * as each server finishes; `getStatus()` reads php-fpm's status page from
 * every server, parsed.
 */
import { FastCgiClient } from './client.ts';
import type { ClientOptions } from './client.ts';
import type { Cluster } from './collections.ts';
import { FastCgiError } from './errors.ts';
import { parseFpmStatus } from './fpm-status.ts';
import type { FpmStatus } from './fpm-status.ts';
import type { FastCgiRequest } from './request.ts';
import { GetRequest } from './request.ts';
import type { FastCgiResponse } from './response.ts';

/** One server's outcome: a response, or the error that prevented one. */
export type ClusterResult = { readonly server: string; readonly response: FastCgiResponse; readonly error?: undefined } | { readonly server: string; readonly response?: undefined; readonly error: Error };

/** One server's status page, parsed, or why it could not be read. */
export type ClusterStatus = { readonly server: string; readonly status: FpmStatus; readonly error?: undefined } | { readonly server: string; readonly status?: undefined; readonly error: Error };

export class FastCgiClusterProxy {
  readonly cluster: Cluster;
  readonly client: FastCgiClient;

  constructor(cluster: Cluster, client: FastCgiClient | ClientOptions = {}) {
    this.cluster = cluster;
    this.client = client instanceof FastCgiClient ? client : new FastCgiClient(client);
  }

  /**
   * Sends `request` to every server at once and yields each server's result
   * as it finishes (fastest first). Stream bodies cannot be sent to several
   * servers: use a buffered content.
   */
  async *sendRequest(request: FastCgiRequest): AsyncGenerator<ClusterResult, void, undefined> {
    const body = request.content?.body();
    if (body !== undefined && !(body instanceof Uint8Array)) throw new FastCgiError('FCGI_ERR_INVALID_ARGUMENT', 'ClusterProxy cannot send a streamed body to several servers');
    const running = new Map<number, Promise<{ index: number; result: ClusterResult }>>();
    this.cluster.servers.forEach((server, index) => {
      running.set(
        index,
        this.client.sendRequest(server, request).then(
          (response) => ({ index, result: { server: server.label, response } }),
          (error: Error) => ({ index, result: { server: server.label, error } }),
        ),
      );
    });
    while (running.size > 0) {
      const { index, result } = await Promise.race(running.values());
      running.delete(index);
      if (result.response !== undefined) for (const cb of request.responseCallbacks) cb(result.response);
      else for (const cb of request.failureCallbacks) cb(result.error);
      yield result;
    }
  }

  /** Every server's result, in the cluster's order. */
  async sendRequestToAll(request: FastCgiRequest): Promise<ClusterResult[]> {
    const results: ClusterResult[] = [];
    for await (const r of this.sendRequest(request)) results.push(r);
    const order = this.cluster.servers.map((s) => s.label);
    return results.sort((a, b) => order.indexOf(a.server) - order.indexOf(b.server));
  }

  /**
   * Reads php-fpm's status page (`pm.status_path`, e.g. `/status`) with
   * `?full` from every server; results in the cluster's order.
   */
  async getStatus(path = '/status'): Promise<ClusterStatus[]> {
    const results = await this.sendRequestToAll(statusRequest(path));
    return results.map((r): ClusterStatus => {
      if (r.error !== undefined) return { server: r.server, error: r.error };
      const response = r.response;
      if (response.status !== 200) return { server: r.server, error: new FastCgiError('FCGI_ERR_PROTOCOL', `status page ${path} answered ${response.status}${response.body.length > 0 ? `: ${response.text().slice(0, 200).trim()}` : ''}`) };
      try {
        return { server: r.server, status: parseFpmStatus(response.text()) };
      } catch (err) {
        return { server: r.server, error: err as Error };
      }
    });
  }

  close(): void {
    this.client.close();
  }
}

/** The request php-fpm's status page answers: SCRIPT_NAME is the status path, `full` lists every process. */
export function statusRequest(path = '/status'): FastCgiRequest {
  return new GetRequest(path, { query: 'full', scriptName: path, requestUri: `${path}?full` });
}
