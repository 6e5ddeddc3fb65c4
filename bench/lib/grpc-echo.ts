/**
 * gRPC backend for the http2 bench: @grpc/grpc-js serving the test echo
 * service (test/fixtures/grpc/echo.proto), Unary answering at once.
 * Prints `{"type":"ready","port":N}` when listening.
 *
 *   node bench/lib/grpc-echo.ts
 */
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

interface Msg {
  text: string;
  n: number;
}

export const ECHO_PROTO = path.join(path.dirname(path.dirname(path.dirname(new URL(import.meta.url).pathname))), 'test/fixtures/grpc/echo.proto');

export function echoService(): grpc.ServiceClientConstructor {
  const definition = protoLoader.loadSync(ECHO_PROTO, { keepCase: true, defaults: true });
  return (grpc.loadPackageDefinition(definition) as unknown as { polyproxy: { test: { Echo: grpc.ServiceClientConstructor } } }).polyproxy.test.Echo;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const server = new grpc.Server();
  server.addService(echoService().service, {
    Unary(call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      cb(null, { text: call.request.text, n: call.request.n + 1 });
    },
  });
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err !== null) throw err;
    process.stdout.write(`${JSON.stringify({ type: 'ready', port })}\n`);
  });
}
