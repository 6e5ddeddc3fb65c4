/**
 * The dashboard's "Last 15 minutes" section: charts drawn as plain SVG from
 * GET api/history (admin/history.ts). Per listener: open connections,
 * bytes/s (in + out), errors/s (failed + refused); for the top tenants:
 * open connections and bytes/s, one line each; and the resolver's mean
 * latency per interval. Kept apart from dashboard.ts (its own style, script
 * and section) so the two evolve separately; the page's CSP allows this
 * script by its hash too.
 *
 * Test hooks: each chart is `[data-testid="history-chart"]` with
 * `data-chart` (`listener:<name>:connections|bytes|errors`,
 * `tenants:connections|bytes`, `resolve:latency`), `data-points` (samples
 * drawn) and `data-last` / `data-max` (of its first series, raw numbers).
 * Like the main script: no backticks or `${` inside, textContent only.
 */

export const HISTORY_STYLE = String.raw`
.history-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 14px; }
.history-group h3 { font-size: 13px; margin: 4px 0 6px; font-weight: 600; }
.chart { border: 1px solid var(--line); border-radius: 6px; padding: 6px 8px; }
.chart .title { font-size: 12px; color: var(--muted); display: flex; justify-content: space-between; gap: 8px; }
.chart .title b { color: var(--fg); font-variant-numeric: tabular-nums; }
.chart svg { display: block; width: 100%; height: 70px; }
.chart svg .axis { stroke: var(--line); stroke-width: 1; vector-effect: non-scaling-stroke; }
.chart svg polyline { fill: none; stroke-width: 1.5; vector-effect: non-scaling-stroke; }
.chart .legend { display: flex; flex-wrap: wrap; gap: 2px 10px; font-size: 11px; color: var(--muted); }
.chart .legend i { display: inline-block; width: 10px; height: 3px; margin-right: 4px; vertical-align: middle; }
.legend .c0 { background: #0969da; } .legend .c1 { background: #bf3989; } .legend .c2 { background: #1a7f37; }
.legend .c3 { background: #9a6700; } .legend .c4 { background: #8250df; }
`;

export const HISTORY_SCRIPT = String.raw`
(function () {
  'use strict';
  var SVG = 'http://www.w3.org/2000/svg';
  var COLORS = ['#0969da', '#bf3989', '#1a7f37', '#9a6700', '#8250df'];
  var W = 300, H = 70, PAD = 4;
  var nf = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

  function byId(id) { return document.querySelector('[data-testid="' + id + '"]'); }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) for (var k in attrs) node.setAttribute(k, String(attrs[k]));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    for (var k in attrs) node.setAttribute(k, String(attrs[k]));
    return node;
  }
  function fmtBytes(n) {
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? Math.round(n) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + units[i];
  }
  var FORMATS = {
    count: function (v) { return nf.format(v); },
    rate: function (v) { return nf.format(v) + '/s'; },
    bytes: function (v) { return fmtBytes(v) + '/s'; },
    ms: function (v) { return nf.format(v) + ' ms'; }
  };

  // Series from consecutive samples: a gauge, or the rate of a counter (a counter that went down, a restart, is a gap).
  function gauge(samples, pick) {
    return samples.map(function (s) { var v = pick(s); return v === undefined ? null : v; });
  }
  function perSecond(samples, pick) {
    return samples.map(function (s, i) {
      if (i === 0) return null;
      var a = pick(samples[i - 1]), b = pick(s), dt = (s.at - samples[i - 1].at) / 1000;
      if (a === undefined || b === undefined || b < a || dt <= 0) return null;
      return (b - a) / dt;
    });
  }
  function resolveLatency(samples) {
    return samples.map(function (s, i) {
      if (i === 0) return null;
      var dc = s.resolve.count - samples[i - 1].resolve.count;
      if (dc <= 0) return null;
      return (s.resolve.sumSeconds - samples[i - 1].resolve.sumSeconds) / dc * 1000;
    });
  }

  function chart(key, title, series, format, samples, windowMs) {
    var box = el('div', { 'class': 'chart', 'data-testid': 'history-chart', 'data-chart': key });
    var first = series.length > 0 ? series[0].values : [];
    var present = first.filter(function (v) { return v !== null; });
    var last = present.length > 0 ? present[present.length - 1] : null;
    var max = 0;
    series.forEach(function (s) { s.values.forEach(function (v) { if (v !== null && v > max) max = v; }); });
    box.setAttribute('data-points', String(present.length));
    box.setAttribute('data-last', last === null ? '' : String(last));
    box.setAttribute('data-max', String(present.length > 0 ? Math.max.apply(null, present) : 0));
    var head = el('div', { 'class': 'title' });
    head.appendChild(el('span', null, title));
    head.appendChild(el('b', null, last === null ? '\u2014' : FORMATS[format](last)));
    box.appendChild(head);
    var svg = svgEl('svg', { viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', role: 'img', 'aria-label': title + ' over the last 15 minutes' });
    svg.appendChild(svgEl('line', { 'class': 'axis', x1: 0, y1: H - PAD, x2: W, y2: H - PAD }));
    var end = samples.length > 0 ? samples[samples.length - 1].at : 0;
    var top = max > 0 ? max : 1;
    series.forEach(function (s, n) {
      var pts = [];
      var segments = [];
      s.values.forEach(function (v, i) {
        if (v === null) { if (pts.length > 0) segments.push(pts); pts = []; return; }
        var x = W - (end - samples[i].at) / windowMs * W;
        pts.push(x.toFixed(1) + ',' + (H - PAD - v / top * (H - 2 * PAD)).toFixed(1));
      });
      if (pts.length > 0) segments.push(pts);
      segments.forEach(function (seg) {
        if (seg.length === 1) seg = [seg[0], seg[0].replace(/^[^,]+/, function (x) { return String(Number(x) + 1); })];
        svg.appendChild(svgEl('polyline', { points: seg.join(' '), stroke: COLORS[n % COLORS.length], 'data-series': s.name }));
      });
    });
    box.appendChild(svg);
    if (series.length > 1) {
      var legend = el('div', { 'class': 'legend' });
      series.forEach(function (s, n) {
        var item = el('span', { 'data-testid': 'history-legend' }, s.name);
        item.insertBefore(el('i', { 'class': 'c' + (n % COLORS.length) }), item.firstChild);
        legend.appendChild(item);
      });
      box.appendChild(legend);
    }
    return box;
  }

  function render(h) {
    var samples = h.samples;
    var root = byId('history-charts');
    var groups = [];
    var names = {};
    samples.forEach(function (s) { for (var k in s.listeners) names[k] = true; });
    Object.keys(names).sort().forEach(function (name) {
      var group = el('div', { 'class': 'history-group', 'data-testid': 'history-listener', 'data-name': name });
      group.appendChild(el('h3', null, name));
      var grid = el('div', { 'class': 'history-grid' });
      var pick = function (f) { return function (s) { var l = s.listeners[name]; return l === undefined ? undefined : f(l); }; };
      grid.appendChild(chart('listener:' + name + ':connections', 'open connections', [{ name: name, values: gauge(samples, pick(function (l) { return l.open; })) }], 'count', samples, h.windowMs));
      grid.appendChild(chart('listener:' + name + ':bytes', 'bytes/s (in + out)', [{ name: name, values: perSecond(samples, pick(function (l) { return l.bytesIn + l.bytesOut; })) }], 'bytes', samples, h.windowMs));
      grid.appendChild(chart('listener:' + name + ':errors', 'errors/s (failed + refused)', [{ name: name, values: perSecond(samples, pick(function (l) { return l.errors; })) }], 'rate', samples, h.windowMs));
      group.appendChild(grid);
      groups.push(group);
    });
    // Top tenants: the busiest in the latest sample first (by bytes), at most five.
    var latest = samples.length > 0 ? samples[samples.length - 1].tenants : {};
    var tenants = Object.keys(latest).sort(function (a, b) { return (latest[b].bytesIn + latest[b].bytesOut) - (latest[a].bytesIn + latest[a].bytesOut) || (a < b ? -1 : 1); }).slice(0, 5);
    var common = el('div', { 'class': 'history-group', 'data-testid': 'history-tenants' });
    common.appendChild(el('h3', null, 'top tenants \u00b7 resolver'));
    var grid = el('div', { 'class': 'history-grid' });
    var tenantSeries = function (f, rate) {
      return tenants.map(function (id) {
        var pick = function (s) { var t = s.tenants[id]; return t === undefined ? undefined : f(t); };
        return { name: id, values: rate ? perSecond(samples, pick) : gauge(samples, pick) };
      });
    };
    grid.appendChild(chart('tenants:connections', 'open connections by tenant', tenantSeries(function (t) { return t.open; }, false), 'count', samples, h.windowMs));
    grid.appendChild(chart('tenants:bytes', 'bytes/s by tenant', tenantSeries(function (t) { return t.bytesIn + t.bytesOut; }, true), 'bytes', samples, h.windowMs));
    grid.appendChild(chart('resolve:latency', 'resolve latency (mean per interval)', [{ name: 'resolve', values: resolveLatency(samples) }], 'ms', samples, h.windowMs));
    common.appendChild(grid);
    groups.push(common);
    root.replaceChildren.apply(root, groups);
    byId('history').setAttribute('data-samples', String(samples.length));
  }

  var delay = 5000;
  var drawn = 0;
  function poll() {
    fetch('api/history', { cache: 'no-store', headers: { accept: 'application/json' } })
      .then(function (res) { if (!res.ok) throw new Error('HTTP ' + res.status); return res.json(); })
      .then(function (h) {
        delay = Math.min(5000, Math.max(250, h.intervalMs));
        // Redraw only when a sample arrived: the rest of the page is not re-laid out for nothing.
        var last = h.samples.length > 0 ? h.samples[h.samples.length - 1].at : 0;
        if (h.samples.length > 0 && last !== drawn) { drawn = last; render(h); }
      })
      .catch(function () { /* the stats poll reports the connection state */ })
      .finally(function () { setTimeout(poll, delay); });
  }
  poll();
})();
`;

export const HISTORY_SECTION = String.raw`
  <section class="panel" data-testid="history" data-samples="0">
    <h2>Last 15 minutes</h2>
    <div data-testid="history-charts"><p class="muted">collecting samples…</p></div>
  </section>
`;
