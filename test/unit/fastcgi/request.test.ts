/** src/fastcgi/request.ts: the CGI parameters a request carries (RFC 3875 4.1) as a web server would set them, bodies by kind, overrides and callbacks. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { JsonData } from '../../../src/fastcgi/content.ts';
import { DeleteRequest, FastCgiRequest, GetRequest, PatchRequest, PostRequest, PutRequest } from '../../../src/fastcgi/request.ts';

describe('FastCgiRequest', () => {
  it('a GET derives SCRIPT_NAME, QUERY_STRING and REQUEST_URI from the script path and query', () => {
    const get = new GetRequest('/var/www/app/index.php', { query: { page: 2, tags: ['a', 'b'] } });
    assert.equal(get.method, 'GET');
    assert.equal(get.getParam('SCRIPT_FILENAME'), '/var/www/app/index.php');
    assert.equal(get.getParam('SCRIPT_NAME'), '/index.php');
    assert.equal(get.getParam('QUERY_STRING'), 'page=2&tags%5B%5D=a&tags%5B%5D=b');
    assert.equal(get.getParam('REQUEST_URI'), '/index.php?page=2&tags%5B%5D=a&tags%5B%5D=b');
    assert.equal(get.getParam('DOCUMENT_URI'), '/index.php');
    assert.equal(get.getParam('GATEWAY_INTERFACE'), 'FastCGI/1.0');
    assert.equal(get.getParam('CONTENT_LENGTH'), '0');
    assert.equal(get.getParam('CONTENT_TYPE'), '');
    assert.equal(get.content, null);
  });

  it('a string query loses its leading ?; no query means REQUEST_URI is the script name', () => {
    assert.equal(new GetRequest('/s.php', { query: '?a=1' }).getParam('QUERY_STRING'), 'a=1');
    assert.equal(new GetRequest('/x/s.php').getParam('REQUEST_URI'), '/s.php');
    const custom = new GetRequest('/x/s.php', { scriptName: '/app/s.php', requestUri: '/pretty/url' });
    assert.equal(custom.getParam('SCRIPT_NAME'), '/app/s.php');
    assert.equal(custom.getParam('REQUEST_URI'), '/pretty/url');
  });

  it('bodies: an object is a url-encoded form, a string is raw form bytes, content objects are kept', () => {
    const form = new PostRequest('/p.php', { a: '1', b: 'x y' });
    assert.equal(form.getParam('CONTENT_TYPE'), 'application/x-www-form-urlencoded');
    assert.equal(form.getParam('CONTENT_LENGTH'), String('a=1&b=x+y'.length));
    const raw = new PutRequest('/p.php', 'k=v');
    assert.equal(raw.method, 'PUT');
    assert.equal(raw.getParam('CONTENT_LENGTH'), '3');
    const json = new JsonData({ ok: true });
    const patch = new PatchRequest('/p.php', json);
    assert.equal(patch.content, json);
    assert.equal(patch.getParam('CONTENT_TYPE'), 'application/json');
    assert.equal(new DeleteRequest('/p.php').getParam('REQUEST_METHOD'), 'DELETE');
    assert.equal(new FastCgiRequest('options', '/p.php').method, 'OPTIONS', 'methods are uppercased');
  });

  it('params override the defaults; setParam sets any parameter', () => {
    const req = new GetRequest('/p.php', { params: { SERVER_NAME: 'shop.test', HTTP_X_ID: 7 } });
    assert.equal(req.getParam('SERVER_NAME'), 'shop.test');
    assert.equal(req.getParam('HTTP_X_ID'), '7');
    assert.equal(req.setParam('REMOTE_ADDR', '10.0.0.9'), req, 'chainable');
    assert.equal(req.params.get('REMOTE_ADDR'), '10.0.0.9');
    assert.equal(req.getParam('NOPE'), undefined);
  });

  it('collects response, failure and pass-through callbacks in order', () => {
    const req = new GetRequest('/p.php');
    const a = (): void => {};
    const b = (): void => {};
    req.addResponseCallbacks(a, b).addFailureCallbacks(b).addPassThroughCallbacks(a);
    assert.deepEqual(req.responseCallbacks, [a, b]);
    assert.deepEqual(req.failureCallbacks, [b]);
    assert.deepEqual(req.passThroughCallbacks, [a]);
  });
});
