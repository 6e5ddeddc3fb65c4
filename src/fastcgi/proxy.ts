/**
 * `Proxy` over a RoundRobin or Random collection (hollodotme/fast-cgi-proxy):
 * each request goes to the collection's next server; asynchronous requests
 * are read back by id, with callbacks, or as an async iterator.
 */
import { FastCgiClient } from './client.ts';
import type { ClientOptions } from './client.ts';
import type { ServerCollection } from './collections.ts';
import type { FastCgiRequest } from './request.ts';
import type { FastCgiResponse } from './response.ts';

export class FastCgiProxy {
  readonly collection: ServerCollection;
  readonly client: FastCgiClient;

  constructor(collection: ServerCollection, client: FastCgiClient | ClientOptions = {}) {
    this.collection = collection;
    this.client = client instanceof FastCgiClient ? client : new FastCgiClient(client);
  }

  /** Sends to the next server and resolves with the response. */
  sendRequest(request: FastCgiRequest): Promise<FastCgiResponse> {
    return this.client.sendRequest(this.collection.next(), request);
  }

  /** Sends to the next server; returns the request id at once. */
  sendAsyncRequest(request: FastCgiRequest): number {
    return this.client.sendAsyncRequest(this.collection.next(), request);
  }

  readResponse(id: number, timeoutMs = 0): Promise<FastCgiResponse> {
    return this.client.readResponse(id, timeoutMs);
  }

  waitForResponse(id: number): Promise<void> {
    return this.client.waitForResponse(id);
  }

  waitForResponses(): Promise<void> {
    return this.client.waitForResponses();
  }

  /** Responses of outstanding asynchronous requests as they finish. */
  responses(ids?: readonly number[]): AsyncGenerator<FastCgiResponse, void, undefined> {
    return this.client.responses(ids);
  }

  hasResponse(id: number): boolean {
    return this.client.hasResponse(id);
  }

  hasUnhandledResponses(): boolean {
    return this.client.hasUnhandledResponses();
  }

  getRequestIdsHavingResponse(): number[] {
    return this.client.getRequestIdsHavingResponse();
  }

  handleReadyResponses(): number {
    return this.client.handleReadyResponses();
  }

  close(): void {
    this.client.close();
  }
}
