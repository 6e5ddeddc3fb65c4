/** src/fastcgi/content.ts: each request body's Content-Type, exact length and bytes (url-encoded, JSON, multipart per RFC 7578, raw, streamed). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { JsonData, MultipartFormData, RawContent, StreamContent, UrlEncodedFormData, encodeForm } from '../../../src/fastcgi/content.ts';
import { FastCgiError } from '../../../src/fastcgi/errors.ts';

const text = (bytes: Uint8Array | AsyncIterable<Uint8Array>): string => Buffer.from(bytes as Uint8Array).toString('latin1');

describe('fastcgi request bodies', () => {
  it('url-encodes fields, arrays as name[] (once)', () => {
    assert.equal(encodeForm({ a: 'x y', n: 1, b: true, list: ['1', 2], 'tags[]': ['p', 'q'], amp: 'a&b=c' }), 'a=x+y&n=1&b=true&list%5B%5D=1&list%5B%5D=2&tags%5B%5D=p&tags%5B%5D=q&amp=a%26b%3Dc');
    const form = new UrlEncodedFormData({ q: 'é' });
    assert.equal(form.contentType, 'application/x-www-form-urlencoded');
    assert.equal(text(form.body()), 'q=%C3%A9');
    assert.equal(form.length, 8);
  });

  it('JSON counts bytes, not characters, and refuses what JSON cannot carry', () => {
    const json = new JsonData({ name: 'zoë' });
    assert.equal(json.contentType, 'application/json');
    assert.equal(Buffer.from(json.body() as Uint8Array).toString('utf8'), '{"name":"zoë"}');
    assert.equal(json.length, 15);
    assert.equal(new JsonData([1], 'application/vnd.api+json').contentType, 'application/vnd.api+json');
    assert.throws(() => new JsonData(undefined), (err: FastCgiError) => err instanceof FastCgiError && err.code === 'FCGI_ERR_INVALID_ARGUMENT');
  });

  it('multipart: fields, arrays, files with their type, quoted names, the closing boundary', () => {
    const form = new MultipartFormData({ title: 'hi', tags: ['a', 'b'] }, { upload: { filename: 'a "b".txt', content: 'DATA', contentType: 'text/plain' }, raw: { filename: 'r.bin', content: new Uint8Array([0, 255]) } }, 'XYZ');
    assert.equal(form.contentType, 'multipart/form-data; boundary=XYZ');
    const expected =
      '--XYZ\r\nContent-Disposition: form-data; name="title"\r\n\r\nhi\r\n' +
      '--XYZ\r\nContent-Disposition: form-data; name="tags[]"\r\n\r\na\r\n' +
      '--XYZ\r\nContent-Disposition: form-data; name="tags[]"\r\n\r\nb\r\n' +
      '--XYZ\r\nContent-Disposition: form-data; name="upload"; filename="a %22b%22.txt"\r\nContent-Type: text/plain\r\n\r\nDATA\r\n' +
      '--XYZ\r\nContent-Disposition: form-data; name="raw"; filename="r.bin"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\xff\r\n' +
      '--XYZ--\r\n';
    assert.equal(text(form.body()), expected);
    assert.equal(form.length, Buffer.byteLength(expected, 'latin1'));
    assert.match(new MultipartFormData().boundary, /^----polyproxy[0-9a-f]{24}$/);
    assert.throws(() => new MultipartFormData({}, {}, 'bad boundary\r\n'), (err: FastCgiError) => err.code === 'FCGI_ERR_INVALID_ARGUMENT');
  });

  it('raw content keeps its bytes and type', () => {
    const raw = new RawContent('abc', 'text/csv');
    assert.equal(raw.contentType, 'text/csv');
    assert.equal(raw.length, 3);
    assert.equal(new RawContent(new Uint8Array([1, 2])).contentType, 'application/octet-stream');
  });

  it('a stream gives its source back and needs an exact byte count', async () => {
    async function* source(): AsyncIterable<Uint8Array> {
      yield Buffer.from('ab');
      yield Buffer.from('c');
    }
    const stream = new StreamContent(source(), 3, 'text/plain');
    const chunks: string[] = [];
    for await (const chunk of stream.body()) chunks.push(Buffer.from(chunk).toString());
    assert.deepEqual(chunks, ['ab', 'c']);
    assert.equal(stream.length, 3);
    for (const bad of [-1, 1.5, Number.NaN]) assert.throws(() => new StreamContent(source(), bad), (err: FastCgiError) => err.code === 'FCGI_ERR_INVALID_ARGUMENT');
  });
});
