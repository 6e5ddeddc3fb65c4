/** The gateway's script resolution and CGI params (nginx fastcgi_params + fastcgi_split_path_info + fastcgi_index). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BadRequestPath, buildParams, headerParamName, resolveScript } from '../../../../src/protocols/fastcgi/params.ts';

describe('fastcgi gateway params', () => {
  it('resolves the script: index for directories, split at .php, front controller otherwise', () => {
    assert.deepEqual(resolveScript('/', 'index.php'), { scriptName: '/index.php', pathInfo: '' });
    assert.deepEqual(resolveScript('/blog/', 'index.php'), { scriptName: '/blog/index.php', pathInfo: '' });
    assert.deepEqual(resolveScript('/app.php/users/7', 'index.php'), { scriptName: '/app.php', pathInfo: '/users/7' });
    assert.deepEqual(resolveScript('/a%20b.php', 'index.php'), { scriptName: '/a b.php', pathInfo: '' });
    assert.deepEqual(resolveScript('/users/7', 'app.php'), { scriptName: '/app.php', pathInfo: '/users/7' });
    assert.deepEqual(resolveScript('//x.php', 'index.php'), { scriptName: '/x.php', pathInfo: '' });
  });

  it('refuses traversal, NUL and undecodable paths', () => {
    for (const bad of ['/../etc/passwd.php', '/a/%2e%2e/b.php', '/a/./b.php', '/x%00.php', '/%E0%A4%A', 'x.php']) {
      assert.throws(() => resolveScript(bad, 'index.php'), BadRequestPath, bad);
    }
  });

  it('builds the CGI params and HTTP_* headers', () => {
    const params = buildParams(
      {
        method: 'POST',
        url: '/app.php/users/7?sort=name',
        httpVersion: '1.1',
        rawHeaders: ['Host', 'shop.example:8080', 'Content-Type', 'application/json', 'Content-Length', '2', 'X-Trace', 'a', 'x-trace', 'b', 'Cookie', 'a=1', 'Cookie', 'b=2', 'Proxy', 'http://evil', 'X_Spoof', '1'],
        remoteAddress: '10.0.0.9',
        remotePort: 5555,
        localAddress: '127.0.0.1',
        localPort: 8081,
        contentLength: '2',
      },
      { scriptName: '/app.php', pathInfo: '/users/7' },
      { documentRoot: '/srv/www', index: 'index.php', serverSoftware: 'polyproxy/test', extra: { APP_ENV: 'prod' } },
    );
    const expected: Record<string, string> = {
      SCRIPT_FILENAME: '/srv/www/app.php',
      SCRIPT_NAME: '/app.php',
      PATH_INFO: '/users/7',
      PATH_TRANSLATED: '/srv/www/users/7',
      REQUEST_URI: '/app.php/users/7?sort=name',
      DOCUMENT_URI: '/app.php/users/7',
      DOCUMENT_ROOT: '/srv/www',
      QUERY_STRING: 'sort=name',
      REQUEST_METHOD: 'POST',
      CONTENT_TYPE: 'application/json',
      CONTENT_LENGTH: '2',
      SERVER_NAME: 'shop.example',
      SERVER_PORT: '8081',
      REMOTE_ADDR: '10.0.0.9',
      REMOTE_PORT: '5555',
      SERVER_PROTOCOL: 'HTTP/1.1',
      GATEWAY_INTERFACE: 'CGI/1.1',
      HTTP_HOST: 'shop.example:8080',
      HTTP_X_TRACE: 'a, b',
      HTTP_COOKIE: 'a=1; b=2',
      APP_ENV: 'prod',
    };
    for (const [k, v] of Object.entries(expected)) assert.equal(params.get(k), v, k);
    // httpoxy (CVE-2016-5385) and underscore names never reach the application.
    assert.equal(params.has('HTTP_PROXY'), false);
    assert.equal(params.has('HTTP_X_SPOOF'), false);
    assert.equal(params.has('HTTP_CONTENT_LENGTH'), false);
    assert.equal(headerParamName('x_spoof'), null);
  });

  it('leaves PATH_INFO out when the path has none', () => {
    const params = buildParams(
      { method: 'GET', url: '/', httpVersion: '1.0', rawHeaders: [], remoteAddress: '::1', remotePort: 1, localAddress: '::1', localPort: 2, contentLength: '' },
      resolveScript('/', 'index.php'),
      { documentRoot: '/srv', index: 'index.php', serverSoftware: 's', extra: {} },
    );
    assert.equal(params.has('PATH_INFO'), false);
    assert.equal(params.get('SERVER_NAME'), '::1');
    assert.equal(params.get('SERVER_PROTOCOL'), 'HTTP/1.0');
  });
});
