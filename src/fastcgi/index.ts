/**
 * The FastCGI client library: records and name-value pairs, connections
 * and pools, request builders, responses, RoundRobin/Random/Cluster
 * collections, Proxy, ClusterProxy and php-fpm's status page.
 */
export { FastCgiError } from './errors.ts';
export type { FastCgiErrorCode } from './errors.ts';
export * from './records.ts';
export { encodeNameValuePairs, decodeNameValuePairs, MAX_NAME_VALUE_LENGTH } from './name-value.ts';
export type { NameValuePairs } from './name-value.ts';
export { CgiHeadParser, parseCgiHead, splitCgiOutput, MAX_CGI_HEAD_BYTES } from './cgi-head.ts';
export type { CgiHead } from './cgi-head.ts';
export { FastCgiConnection, connectSocket } from './connection.ts';
export type { ExchangeHandler, ConnectOptions } from './connection.ts';
export { ConnectionPool } from './pool.ts';
export type { PoolOptions } from './pool.ts';
export { JsonData, MultipartFormData, RawContent, StreamContent, UrlEncodedFormData, encodeForm } from './content.ts';
export type { FormValue, MultipartFile, RequestContent } from './content.ts';
export { DeleteRequest, FastCgiRequest, GetRequest, PatchRequest, PostRequest, PutRequest } from './request.ts';
export type { FailureCallback, PassThroughCallback, Query, RequestOptions, ResponseCallback } from './request.ts';
export { FastCgiResponse } from './response.ts';
export { FastCgiServer } from './server.ts';
export type { ServerLike, ServerOptions } from './server.ts';
export { FastCgiClient, FastCgiClient as Client } from './client.ts';
export type { ClientOptions } from './client.ts';
export { Cluster, Random, RoundRobin } from './collections.ts';
export type { ServerCollection } from './collections.ts';
export { FastCgiProxy, FastCgiProxy as Proxy } from './proxy.ts';
export { FastCgiClusterProxy, FastCgiClusterProxy as ClusterProxy, statusRequest } from './cluster-proxy.ts';
export type { ClusterResult, ClusterStatus } from './cluster-proxy.ts';
export { parseFpmStatus, parseFpmTime } from './fpm-status.ts';
export type { FpmProcessStatus, FpmStatus } from './fpm-status.ts';
