/** The mqtt health probe's verdicts, and core's probe() running it against a socket that answers like a broker. */
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { parseEndpoint } from '../../../../src/core/endpoint.ts';
import { probe } from '../../../../src/core/health.ts';
import { mqttHealthProbe } from '../../../../src/protocols/mqtt/health.ts';
import { parseConnect } from '../../../../src/protocols/mqtt/parse.ts';

/** A server that reads one CONNECT and answers `answer`. */
async function broker(answer: Buffer): Promise<net.Server> {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', (chunk: Buffer) => {
      assert.ok(parseConnect(chunk) !== undefined, 'the probe sends a valid CONNECT');
      socket.write(answer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

describe('mqttHealthProbe', () => {
  it('its CONNECT is a valid 3.1.1 CONNECT without credentials', () => {
    const parsed = parseConnect(mqttHealthProbe.hello);
    assert.deepEqual([parsed?.value.level, parsed?.value.clientId, parsed?.value.username, parsed?.value.cleanStart], [4, '', undefined, true]);
  });

  it('any CONNACK but server unavailable is healthy; other bytes are not a broker', () => {
    assert.equal(mqttHealthProbe.judge(Buffer.from([0x20, 2, 0, 0])), null);
    assert.equal(mqttHealthProbe.judge(Buffer.from([0x20, 2, 0, 5])), null);
    assert.match(mqttHealthProbe.judge(Buffer.from([0x20, 2, 0, 3])) ?? '', /server unavailable/);
    assert.equal(mqttHealthProbe.judge(Buffer.from([0x20, 2])), undefined);
    assert.match(mqttHealthProbe.judge(Buffer.from('HTTP/1.1')) ?? '', /not an MQTT broker/);
  });

  it('core probe() sends it and reads the verdict', async () => {
    for (const [answer, healthy] of [[Buffer.from([0x20, 2, 0, 5]), true], [Buffer.from([0x20, 2, 0, 3]), false]] as const) {
      const server = await broker(answer);
      const endpoint = parseEndpoint(`127.0.0.1:${(server.address() as AddressInfo).port}`);
      const problem = await probe(endpoint, undefined, 2000, mqttHealthProbe);
      assert.equal(problem === null, healthy, String(problem));
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
