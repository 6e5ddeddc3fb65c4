/**
 * The admin dashboard: one self-contained page (no external assets — the
 * admin port is often reachable only on loopback, and a CDN would leak that
 * an operator opened it). Vanilla JS polls `api/stats` every second and
 * renders listeners, endpoints, top resources, cache and cold starts, plus a
 * sparkline of open connections over the last minute.
 *
 * It lives in a TS module rather than an .html file so `tsc` ships it in
 * dist/ and the same import works from src/ (tests) and dist/ (the bin).
 * The script and style are kept apart so the server can allow exactly them
 * in its Content-Security-Policy by hash (`dashboardCsp`).
 *
 * Stable hooks for tests and scripts: every figure has a `data-testid`, and
 * numeric cells carry the raw number in `data-value` (the text is in human
 * units). Rows carry their key: `data-name` (listener), `data-endpoint`,
 * `data-resource`.
 *
 * The embedded script is written without backticks and `${` (it sits in a
 * template literal) and builds the DOM with textContent only: resource ids
 * and endpoints come from clients and resolvers, never as markup.
 */
import { createHash } from 'node:crypto';
import { HISTORY_SCRIPT, HISTORY_SECTION, HISTORY_STYLE } from './dashboard-history.ts';

const STYLE = String.raw`
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --card: #ffffff; --fg: #1f2328; --muted: #656d76; --line: #d8dee4;
  --accent: #0969da; --accent-fill: rgba(9, 105, 218, 0.14); --zebra: #f6f8fa;
  --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --unknown: #6e7781;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --card: #161b22; --fg: #e6edf3; --muted: #8d96a0; --line: #30363d;
    --accent: #4493f8; --accent-fill: rgba(68, 147, 248, 0.18); --zebra: #1c2129;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
header {
  display: flex; flex-wrap: wrap; align-items: center; justify-content: space-between; gap: 12px;
  padding: 14px 24px; border-bottom: 1px solid var(--line); background: var(--card);
}
h1 { font-size: 18px; margin: 0; font-weight: 650; }
h1 .muted { font-weight: 400; font-size: 14px; margin-left: 6px; }
h2 { font-size: 13px; margin: 0 0 8px; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.muted { color: var(--muted); }
.meta { display: flex; flex-wrap: wrap; align-items: center; gap: 16px; color: var(--muted); }
.meta b { color: var(--fg); font-weight: 600; }
main { padding: 20px 24px 40px; max-width: 1400px; margin: 0 auto; display: grid; gap: 20px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap: 16px; }
.card, section.panel { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; }
.big { font-size: 28px; font-weight: 650; font-variant-numeric: tabular-nums; line-height: 1.2; }
.sub { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
.sub b { color: var(--fg); font-weight: 600; }
.flows { display: flex; flex-wrap: wrap; gap: 4px 20px; }
.flow { display: flex; flex-direction: column; }
.flow .big { font-size: 24px; white-space: nowrap; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 20px; }
svg.spark { display: block; width: 100%; height: 40px; margin-top: 6px; }
svg.spark polyline { fill: none; stroke: var(--accent); stroke-width: 1.5; vector-effect: non-scaling-stroke; }
svg.spark polygon { fill: var(--accent-fill); stroke: none; }
.table-wrap { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; text-align: right; white-space: nowrap; border-bottom: 1px solid var(--line); }
th { font-size: 12px; font-weight: 600; color: var(--muted); }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
tbody tr:nth-child(even) { background: var(--zebra); }
td.empty { text-align: center; color: var(--muted); padding: 14px; }
td.key { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
.badge {
  display: inline-block; min-width: 64px; padding: 2px 8px; border-radius: 10px; text-align: center;
  font-size: 12px; font-weight: 600; color: #fff; background: var(--unknown);
}
.badge.ok { background: var(--ok); } .badge.bad { background: var(--bad); }
.badge.warn { background: var(--warn); } .badge.unknown { background: var(--unknown); }
.status::before { content: ""; display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 6px; background: var(--unknown); }
.status[data-state="live"]::before { background: var(--ok); }
.status[data-state="error"]::before { background: var(--bad); }
ul.chips { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: 6px; }
ul.chips li { border: 1px solid var(--line); border-radius: 12px; padding: 1px 10px; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
form { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
input, button { font: inherit; padding: 6px 10px; border-radius: 6px; border: 1px solid var(--line); background: var(--bg); color: var(--fg); }
input { min-width: 260px; }
button { background: var(--accent); border-color: var(--accent); color: #fff; font-weight: 600; cursor: pointer; }
button:disabled { opacity: .6; cursor: default; }
output[data-state="error"] { color: var(--bad); }
`;

const SCRIPT = String.raw`
(function () {
  'use strict';
  var POLL_MS = 1000;
  var HISTORY = 60;
  var history = [];
  var prev = null;
  var nf = new Intl.NumberFormat('en-US');

  function byId(id) { return document.querySelector('[data-testid="' + id + '"]'); }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) for (var k in attrs) if (attrs[k] !== undefined && attrs[k] !== null) node.setAttribute(k, String(attrs[k]));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function fmtInt(n) { return nf.format(n); }
  function fmtBytes(n) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    if (i === 0) return fmtInt(Math.round(n)) + ' B';
    return n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0) + ' ' + units[i];
  }
  function fmtPerSec(n, bytes) {
    if (n === null) return '\u2014';
    if (bytes) return fmtBytes(n) + '/s';
    return (n < 10 && n !== 0 ? n.toFixed(1) : fmtInt(Math.round(n))) + '/s';
  }
  function fmtDuration(s) {
    s = Math.max(0, Math.floor(s));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), sec = s % 60;
    if (d > 0) return d + 'd ' + h + 'h ' + m + 'm';
    if (h > 0) return h + 'h ' + m + 'm';
    if (m > 0) return m + 'm ' + sec + 's';
    return sec + 's';
  }
  function fmtAgo(ms) {
    if (ms === null) return 'never';
    return fmtDuration((Date.now() - ms) / 1000) + ' ago';
  }
  function set(id, text, value) {
    var node = byId(id);
    node.textContent = text;
    if (value !== undefined) node.setAttribute('data-value', value === null ? '' : String(value));
  }
  function cell(tr, testid, text, value, cls) {
    var td = el('td', { 'data-testid': testid, 'data-value': value, 'class': cls }, text);
    tr.appendChild(td);
    return td;
  }
  function badge(testid, text, kind) {
    return el('span', { 'data-testid': testid, 'data-value': text, 'class': 'badge ' + kind }, text);
  }
  function fill(tbodyId, rows, columns, emptyText) {
    var tbody = byId(tbodyId);
    if (rows.length === 0) {
      var tr = el('tr');
      tr.appendChild(el('td', { colspan: columns, 'class': 'empty' }, emptyText));
      tbody.replaceChildren(tr);
    } else {
      tbody.replaceChildren.apply(tbody, rows);
    }
  }
  function rate(cur, old, seconds) {
    if (old === undefined || old === null || seconds <= 0 || cur < old) return null;
    return (cur - old) / seconds;
  }
  function round(n) { return n === null ? null : Math.round(n * 100) / 100; }

  function renderSparkline() {
    var W = 120, H = 40, PAD = 3;
    var max = Math.max(1, Math.max.apply(null, history));
    var step = W / (HISTORY - 1);
    // A single sample is drawn as a short flat segment, so it shows.
    var series = history.length === 1 ? [history[0], history[0]] : history;
    var x0 = W - (series.length - 1) * step;
    var pts = series.map(function (v, i) {
      return (x0 + i * step).toFixed(2) + ',' + (H - PAD - (v / max) * (H - 2 * PAD)).toFixed(2);
    });
    var line = byId('sparkline-line');
    var area = byId('sparkline-area');
    line.setAttribute('points', pts.join(' '));
    area.setAttribute('points', series.length > 1 ? x0.toFixed(2) + ',' + H + ' ' + pts.join(' ') + ' ' + W + ',' + H : '');
    var svg = byId('sparkline');
    svg.setAttribute('data-points', String(history.length));
    svg.setAttribute('data-last', String(history[history.length - 1]));
    set('sparkline-max', fmtInt(Math.max.apply(null, history)), Math.max.apply(null, history));
  }

  function render(s, now) {
    var seconds = prev ? (now - prev.at) / 1000 : 0;
    document.title = 'polyproxy ' + s.version + (s.ready ? '' : ' (not ready)');
    set('version', 'v' + s.version, s.version);
    set('uptime', fmtDuration(s.uptimeSeconds), s.uptimeSeconds);
    set('workers', fmtInt(s.workers), s.workers);
    var ready = byId('ready');
    ready.textContent = s.ready ? 'ready' : 'not ready';
    ready.className = 'badge ' + (s.ready ? 'ok' : 'warn');
    ready.setAttribute('data-value', String(s.ready));

    var open = 0, bytesIn = 0, bytesOut = 0, total = 0;
    var seen = {};
    var rows = s.listeners.map(function (l) {
      open += l.open; bytesIn += l.bytesIn; bytesOut += l.bytesOut; total += l.total;
      var old = prev && prev.listeners[l.name];
      seen[l.name] = { total: l.total, bytesIn: l.bytesIn, bytesOut: l.bytesOut };
      var connRate = rate(l.total, old && old.total, seconds);
      var inRate = rate(l.bytesIn, old && old.bytesIn, seconds);
      var outRate = rate(l.bytesOut, old && old.bytesOut, seconds);
      var tr = el('tr', { 'data-testid': 'listener-row', 'data-name': l.name });
      cell(tr, 'listener-name', l.name, l.name, 'key');
      cell(tr, 'listener-protocol', l.protocol, l.protocol, 'text');
      cell(tr, 'listener-address', (l.host.indexOf(':') >= 0 ? '[' + l.host + ']' : l.host) + ':' + l.port, l.port, 'text key');
      cell(tr, 'listener-open', fmtInt(l.open), l.open);
      cell(tr, 'listener-total', fmtInt(l.total), l.total);
      cell(tr, 'listener-conn-rate', fmtPerSec(connRate, false), round(connRate));
      cell(tr, 'listener-refused', fmtInt(l.refused), l.refused);
      cell(tr, 'listener-failed', fmtInt(l.failed), l.failed);
      cell(tr, 'listener-bytes-in', fmtBytes(l.bytesIn), l.bytesIn);
      cell(tr, 'listener-in-rate', fmtPerSec(inRate, true), round(inRate));
      cell(tr, 'listener-bytes-out', fmtBytes(l.bytesOut), l.bytesOut);
      cell(tr, 'listener-out-rate', fmtPerSec(outRate, true), round(outRate));
      return tr;
    });
    fill('listeners-body', rows, 12, 'no listeners');

    var inRateAll = prev ? rate(bytesIn, prev.bytesIn, seconds) : null;
    var outRateAll = prev ? rate(bytesOut, prev.bytesOut, seconds) : null;
    set('total-open', fmtInt(open), open);
    set('total-connections', fmtInt(total), total);
    set('total-bytes-in', fmtBytes(bytesIn), bytesIn);
    set('total-bytes-out', fmtBytes(bytesOut), bytesOut);
    set('total-in-rate', fmtPerSec(inRateAll, true), round(inRateAll));
    set('total-out-rate', fmtPerSec(outRateAll, true), round(outRateAll));
    history.push(open);
    if (history.length > HISTORY) history.shift();
    renderSparkline();

    fill('endpoints-body', s.endpoints.map(function (e) {
      var tr = el('tr', { 'data-testid': 'endpoint-row', 'data-endpoint': e.endpoint });
      cell(tr, 'endpoint-name', e.endpoint, e.endpoint, 'key');
      var state = cell(tr, 'endpoint-state-cell', '', e.state, 'text');
      state.appendChild(badge('endpoint-state', e.state, e.state === 'closed' ? 'ok' : e.state === 'open' ? 'bad' : 'warn'));
      var healthText = e.healthy === null ? 'unknown' : e.healthy ? 'healthy' : 'unhealthy';
      var health = cell(tr, 'endpoint-health-cell', '', healthText, 'text');
      health.appendChild(badge('endpoint-health', healthText, e.healthy === null ? 'unknown' : e.healthy ? 'ok' : 'bad'));
      cell(tr, 'endpoint-failures', fmtInt(e.failures), e.failures);
      cell(tr, 'endpoint-last-probe', fmtAgo(e.lastProbeAt), e.lastProbeAt, 'text muted');
      return tr;
    }), 5, 'no balanced or probed endpoints');

    fill('resources-body', s.resources.map(function (r) {
      var tr = el('tr', { 'data-testid': 'resource-row', 'data-resource': r.resourceId });
      cell(tr, 'resource-id', r.resourceId, r.resourceId, 'key');
      cell(tr, 'resource-open', fmtInt(r.open), r.open);
      cell(tr, 'resource-total', fmtInt(r.total), r.total);
      cell(tr, 'resource-bytes-in', fmtBytes(r.bytesIn), r.bytesIn);
      cell(tr, 'resource-bytes-out', fmtBytes(r.bytesOut), r.bytesOut);
      cell(tr, 'resource-limited', fmtInt(r.limited || 0), r.limited || 0);
      return tr;
    }), 6, 'no traffic yet');

    fill('pools-body', (s.pools || []).map(function (p) {
      var tr = el('tr', { 'data-testid': 'pool-row', 'data-pool': p.listener + ' ' + p.pool });
      cell(tr, 'pool-name', p.pool, p.pool, 'key');
      cell(tr, 'pool-mode', p.mode, p.mode, 'text');
      cell(tr, 'pool-clients-active', fmtInt(p.clientsActive), p.clientsActive);
      cell(tr, 'pool-clients-waiting', fmtInt(p.clientsWaiting), p.clientsWaiting);
      cell(tr, 'pool-servers-active', fmtInt(p.serversActive), p.serversActive);
      cell(tr, 'pool-servers-idle', fmtInt(p.serversIdle), p.serversIdle);
      cell(tr, 'pool-servers-opened', fmtInt(p.serversOpened), p.serversOpened);
      cell(tr, 'pool-transactions', fmtInt(p.transactions), p.transactions);
      cell(tr, 'pool-queue-timeouts', fmtInt(p.queueTimeouts), p.queueTimeouts);
      return tr;
    }), 9, 'no PostgreSQL pools');

    var split = s.readWriteSplit || [];
    fill('rw-body', split.map(function (l) {
      var replica = 0, primary = 0;
      l.statements.forEach(function (x) { if (x.target === 'replica') replica += x.count; else primary += x.count; });
      var tr = el('tr', { 'data-testid': 'rw-row', 'data-listener': l.listener });
      cell(tr, 'rw-listener', l.listener, l.listener, 'key');
      cell(tr, 'rw-replica', fmtInt(replica), replica);
      cell(tr, 'rw-primary', fmtInt(primary), primary);
      var share = replica + primary === 0 ? null : replica / (replica + primary);
      cell(tr, 'rw-share', share === null ? '\u2014' : (share * 100).toFixed(1) + '%', share === null ? '' : Math.round(share * 10000) / 10000);
      cell(tr, 'rw-pinned', fmtInt(l.pinnedSessions), l.pinnedSessions);
      return tr;
    }), 5, 'no read/write split');
    var replicas = [];
    split.forEach(function (l) {
      l.routes.forEach(function (r) {
        r.replicas.forEach(function (x) {
          var tr = el('tr', { 'data-testid': 'rw-replica-row', 'data-replica': l.listener + ' ' + r.route + ' ' + x.endpoint });
          cell(tr, 'rw-replica-name', r.route + ' \u2192 ' + x.endpoint, x.endpoint, 'key');
          var state = cell(tr, 'rw-replica-state-cell', '', x.up ? 'up' : 'down', 'text');
          state.appendChild(badge('rw-replica-state', x.up ? 'up' : 'down', x.up ? 'ok' : 'bad'));
          cell(tr, 'rw-replica-lag', x.lagMs === null ? '\u2014' : fmtInt(Math.round(x.lagMs)) + ' ms', x.lagMs === null ? '' : x.lagMs);
          cell(tr, 'rw-replica-sessions', fmtInt(x.sessions), x.sessions);
          replicas.push(tr);
        });
      });
    });
    fill('rw-replicas-body', replicas, 4, 'no replicas probed yet');

    var lookups = s.cache.hits + s.cache.misses;
    var ratio = lookups === 0 ? null : s.cache.hits / lookups;
    set('cache-hit-ratio', ratio === null ? '\u2014' : (ratio * 100).toFixed(1) + '%', ratio === null ? null : Math.round(ratio * 10000) / 10000);
    set('cache-entries', fmtInt(s.cache.entries), s.cache.entries);
    set('cache-hits', fmtInt(s.cache.hits), s.cache.hits);
    set('cache-misses', fmtInt(s.cache.misses), s.cache.misses);

    set('cold-waiting', fmtInt(s.coldStarts.waiting), s.coldStarts.waiting);
    set('cold-wakes', fmtInt(s.coldStarts.wakes), s.coldStarts.wakes);
    set('cold-timeouts', fmtInt(s.coldStarts.timeouts), s.coldStarts.timeouts);

    var fleet = s.fleet || null;
    var fleetState = byId('fleet-redis');
    fleetState.textContent = fleet === null ? 'off' : fleet.redisUp ? 'redis up' : 'redis down';
    fleetState.className = 'badge ' + (fleet === null ? 'unknown' : fleet.redisUp ? 'ok' : 'bad');
    fleetState.setAttribute('data-value', fleet === null ? 'off' : String(fleet.redisUp));
    fill('fleet-body', (fleet === null ? [] : fleet.instances).map(function (i) {
      var tr = el('tr', { 'data-testid': 'fleet-row', 'data-instance': i.id, 'data-stale': String(i.stale) });
      cell(tr, 'fleet-id', i.id + (i.self ? ' (this)' : ''), i.id, 'key');
      cell(tr, 'fleet-address', i.address, i.address, 'text');
      cell(tr, 'fleet-version', i.version, i.version, 'text');
      cell(tr, 'fleet-connections', fmtInt(i.connections), i.connections);
      cell(tr, 'fleet-started', fmtAgo(i.startedAt), i.startedAt, 'text muted');
      var state = cell(tr, 'fleet-state-cell', '', i.stale ? 'stale' : 'live', 'text');
      state.appendChild(badge('fleet-state', i.stale ? 'stale (' + fmtAgo(i.seenAt) + ')' : 'live', i.stale ? 'bad' : 'ok'));
      return tr;
    }), 6, fleet === null ? 'not in a fleet (no cluster.redis)' : 'no heartbeat read yet');
    var resolverRows = [];
    var sources = s.resolvers || {};
    Object.keys(sources).forEach(function (name) {
      var tr = el('tr', { 'data-testid': 'resolver-row', 'data-source': name });
      cell(tr, 'resolver-name', name, name, 'key');
      var text = Object.keys(sources[name]).map(function (k) { return k + ' ' + String(sources[name][k]); }).join(' \u00b7 ');
      cell(tr, 'resolver-stats', text, text, 'text');
      resolverRows.push(tr);
    });
    fill('resolvers-body', resolverRows, 2, 'no resolver reports stats');

    var routes = byId('routes');
    routes.replaceChildren.apply(routes, s.routes.length === 0
      ? [el('li', { 'class': 'muted' }, 'none (dynamic resolvers only)')]
      : s.routes.map(function (r) { return el('li', { 'data-testid': 'route' }, r); }));
    set('routes-count', fmtInt(s.routes.length), s.routes.length);

    prev = { at: now, listeners: seen, bytesIn: bytesIn, bytesOut: bytesOut };
  }

  function status(state, text) {
    var node = byId('connection-status');
    node.setAttribute('data-state', state);
    node.textContent = text;
  }

  var polls = 0;
  function poll() {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, 5000);
    fetch('api/stats', { cache: 'no-store', headers: { accept: 'application/json' }, signal: controller.signal })
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.json();
      })
      .then(function (stats) {
        render(stats, performance.now());
        polls++;
        document.body.setAttribute('data-polls', String(polls));
        status('live', 'live \u00b7 ' + new Date().toLocaleTimeString());
      })
      .catch(function (err) {
        status('error', 'disconnected (' + (err && err.message ? err.message : err) + ')');
      })
      .finally(function () {
        clearTimeout(timer);
        setTimeout(poll, POLL_MS);
      });
  }

  var form = byId('purge-form');
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    var input = byId('purge-input');
    var out = byId('purge-result');
    var button = byId('purge-submit');
    var id = input.value.trim();
    if (id === '') return;
    button.disabled = true;
    out.removeAttribute('data-state');
    out.textContent = 'purging\u2026';
    // application/json is what the server requires of a purge: a cross-site
    // page cannot send it without a CORS preflight, which the server refuses.
    fetch('api/purge/' + encodeURIComponent(id), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
      .then(function (res) {
        return res.json().then(function (body) {
          if (!res.ok) throw new Error(body && body.error ? body.error : 'HTTP ' + res.status);
          out.setAttribute('data-value', String(body.purged));
          out.setAttribute('data-resource', id);
          out.setAttribute('data-state', 'ok');
          out.textContent = 'purged ' + body.purged + (body.purged === 1 ? ' cache entry' : ' cache entries') + ' for ' + id;
        });
      })
      .catch(function (err) {
        out.setAttribute('data-state', 'error');
        out.textContent = 'purge failed: ' + (err && err.message ? err.message : err);
      })
      .finally(function () { button.disabled = false; });
  });

  poll();
})();
`;

const BODY = String.raw`
<header>
  <h1>polyproxy<span class="muted" data-testid="version"></span></h1>
  <div class="meta">
    <span class="badge unknown" data-testid="ready">…</span>
    <span>uptime <b data-testid="uptime">—</b></span>
    <span>workers <b data-testid="workers">—</b></span>
    <span class="status" data-testid="connection-status" data-state="connecting">connecting…</span>
  </div>
</header>
<main>
  <div class="cards">
    <div class="card">
      <h2>Open connections</h2>
      <div class="big" data-testid="total-open">—</div>
      <svg class="spark" data-testid="sparkline" data-points="0" viewBox="0 0 120 40" preserveAspectRatio="none" role="img" aria-label="open connections over the last minute">
        <polygon data-testid="sparkline-area" points=""></polygon>
        <polyline data-testid="sparkline-line" points=""></polyline>
      </svg>
      <div class="sub">last minute · peak <b data-testid="sparkline-max">—</b> · <b data-testid="total-connections">—</b> total</div>
    </div>
    <div class="card">
      <h2>Traffic</h2>
      <div class="flows">
      <div class="flow" title="client → backend"><span class="big" data-testid="total-bytes-in">—</span><span class="sub">in · <b data-testid="total-in-rate">—</b></span></div>
      <div class="flow" title="backend → client"><span class="big" data-testid="total-bytes-out">—</span><span class="sub">out · <b data-testid="total-out-rate">—</b></span></div>
      </div>
    </div>
    <div class="card">
      <h2>Route cache</h2>
      <div class="big" data-testid="cache-hit-ratio">—</div>
      <div class="sub">hit ratio · <b data-testid="cache-entries">—</b> entries · <b data-testid="cache-hits">—</b> hits · <b data-testid="cache-misses">—</b> misses</div>
    </div>
    <div class="card">
      <h2>Cold starts</h2>
      <div class="big" data-testid="cold-waiting">—</div>
      <div class="sub">waiting · <b data-testid="cold-wakes">—</b> wakes · <b data-testid="cold-timeouts">—</b> timeouts</div>
    </div>
  </div>

  <section class="panel">
    <h2>Listeners</h2>
    <div class="table-wrap"><table data-testid="listeners">
      <thead><tr>
        <th>Name</th><th class="text">Protocol</th><th class="text">Address</th><th>Open</th><th>Total</th><th>Conn/s</th>
        <th>Refused</th><th>Failed</th><th>Bytes in</th><th>In/s</th><th>Bytes out</th><th>Out/s</th>
      </tr></thead>
      <tbody data-testid="listeners-body"></tbody>
    </table></div>
  </section>

  <div class="grid2">
    <section class="panel">
      <h2>Endpoints</h2>
      <div class="table-wrap"><table data-testid="endpoints">
        <thead><tr><th>Endpoint</th><th class="text">Breaker</th><th class="text">Health</th><th>Failures</th><th class="text">Last probe</th></tr></thead>
        <tbody data-testid="endpoints-body"></tbody>
      </table></div>
    </section>
    <section class="panel">
      <h2>Top resources</h2>
      <div class="table-wrap"><table data-testid="resources">
        <thead><tr><th>Resource</th><th>Open</th><th>Total</th><th>Bytes in</th><th>Bytes out</th><th title="sessions and requests refused by tenant limits">Limited</th></tr></thead>
        <tbody data-testid="resources-body"></tbody>
      </table></div>
    </section>
  </div>

  <div class="grid2">
    <section class="panel">
      <h2>Fleet <span class="badge unknown" data-testid="fleet-redis">—</span></h2>
      <div class="table-wrap"><table data-testid="fleet">
        <thead><tr><th>Instance</th><th class="text">Address</th><th class="text">Version</th><th>Connections</th><th class="text">Started</th><th class="text">Heartbeat</th></tr></thead>
        <tbody data-testid="fleet-body"></tbody>
      </table></div>
    </section>
    <section class="panel">
      <h2>Resolvers</h2>
      <div class="table-wrap"><table data-testid="resolvers">
        <thead><tr><th>Source</th><th class="text">stats()</th></tr></thead>
        <tbody data-testid="resolvers-body"></tbody>
      </table></div>
    </section>
  </div>

  <div class="grid2">
    <section class="panel">
      <h2>Static routes (<span data-testid="routes-count">—</span>)</h2>
      <ul class="chips" data-testid="routes"></ul>
    </section>
    <section class="panel">
      <h2>Purge a cached route</h2>
      <form data-testid="purge-form" autocomplete="off">
        <input data-testid="purge-input" name="resourceId" required placeholder="resource id, e.g. shop or www.example.com" aria-label="resource id">
        <button type="submit" data-testid="purge-submit">Purge</button>
        <output data-testid="purge-result" aria-live="polite"></output>
      </form>
    </section>
  </div>
  <section class="panel">
    <h2>PostgreSQL pools</h2>
    <div class="table-wrap"><table data-testid="pools">
      <thead><tr><th>Pool</th><th class="text">Mode</th><th>Clients active</th><th>Waiting</th><th>Servers active</th><th>Idle</th><th>Opened</th><th>Transactions</th><th>Queue timeouts</th></tr></thead>
      <tbody data-testid="pools-body"></tbody>
    </table></div>
  </section>
  <section class="panel">
    <h2>Read/write split</h2>
    <div class="table-wrap"><table data-testid="rw">
      <thead><tr><th>Listener</th><th>To replicas</th><th>To primary</th><th>On replicas</th><th>Pinned sessions</th></tr></thead>
      <tbody data-testid="rw-body"></tbody>
    </table></div>
    <div class="table-wrap"><table data-testid="rw-replicas">
      <thead><tr><th>Replica</th><th class="text">State</th><th>Lag</th><th>Reading sessions</th></tr></thead>
      <tbody data-testid="rw-replicas-body"></tbody>
    </table></div>
  </section>
${HISTORY_SECTION}</main>
`;

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>polyproxy</title>
<link rel="icon" href="data:,">
<style>${STYLE}${HISTORY_STYLE}</style>
</head>
<body>${BODY}<script>${SCRIPT}</script><script>${HISTORY_SCRIPT}</script>
</body>
</html>
`;

function sha256(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

/**
 * Content-Security-Policy for the page: only its own inline script and style
 * (by hash), fetches to its own origin, no framing (the purge form must not
 * be clickjacked), no form posts anywhere.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)} ${sha256(HISTORY_SCRIPT)}`,
  `style-src ${sha256(STYLE + HISTORY_STYLE)}`,
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
