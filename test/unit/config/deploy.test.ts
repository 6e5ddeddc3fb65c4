/**
 * The shipped Kubernetes example carries a config that must stay valid as the
 * schema moves. Tests deploy/, not one src file: it keeps its own name.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { parseConfig } from '../../../src/config/load.ts';

interface Manifest {
  kind: string;
  data?: Record<string, string>;
  spec?: {
    template?: {
      spec: {
        terminationGracePeriodSeconds: number;
        containers: Array<{ ports: Array<{ containerPort: number }>; readinessProbe: { httpGet: { path: string } } }>;
      };
    };
  };
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

it('deploy/kubernetes/polyproxy.yaml: its ConfigMap holds a valid config whose ports the pod exposes', () => {
  const docs = parseAllDocuments(readFileSync(path.join(ROOT, 'deploy/kubernetes/polyproxy.yaml'), 'utf8')).map((d) => d.toJS() as Manifest);
  assert.deepEqual(docs.map((d) => d.kind), ['ConfigMap', 'Deployment', 'Service']);
  const config = parseConfig(parse(docs[0]?.data?.['polyproxy.yaml'] as string), '/etc/polyproxy', 'configmap');
  const pod = docs[1]?.spec?.template?.spec;
  const container = pod?.containers[0];
  assert.ok(pod !== undefined && container !== undefined);
  const exposed = new Set(container.ports.map((p) => p.containerPort));
  for (const listener of config.listeners) assert.ok(exposed.has(listener.port), `listener ${listener.name} port ${listener.port} is exposed`);
  assert.ok(config.admin !== undefined && exposed.has(config.admin.port), 'the admin port (probes, metrics) is exposed');
  assert.equal(container.readinessProbe.httpGet.path, '/readyz');
  assert.ok(pod.terminationGracePeriodSeconds > config.shutdownTimeoutSeconds, 'pods outlive the drain deadline');
});

it('deploy/kubernetes/polyproxy-fleet.yaml: N replicas with Redis; the config is valid, joins the fleet and reads routes from the same Redis', () => {
  const docs = parseAllDocuments(readFileSync(path.join(ROOT, 'deploy/kubernetes/polyproxy-fleet.yaml'), 'utf8')).map((d) => d.toJS() as Manifest & { metadata: { name: string }; spec?: { replicas?: number; ports?: Array<{ port: number }> } });
  assert.deepEqual(docs.map((d) => `${d.kind}/${d.metadata.name}`), ['ConfigMap/polyproxy', 'Deployment/polyproxy', 'Service/polyproxy', 'Deployment/redis', 'Service/redis']);
  const config = parseConfig(parse(docs[0]?.data?.['polyproxy.yaml'] as string), '/etc/polyproxy', 'configmap');
  assert.ok(config.cluster !== undefined && config.resolver.redis !== undefined);
  // The URL's host is the redis Service, on the port it serves.
  const url = new URL(config.cluster.redis.url ?? '');
  assert.equal(url.hostname, docs[4]?.metadata.name);
  assert.equal(Number(url.port), docs[4]?.spec?.ports?.[0]?.port);
  assert.equal(config.resolver.redis.url, config.cluster.redis.url);
  assert.ok((docs[1]?.spec?.replicas ?? 0) > 1, 'several replicas');
  const pod = docs[1]?.spec?.template?.spec;
  const container = pod?.containers[0];
  assert.ok(pod !== undefined && container !== undefined);
  const exposed = new Set(container.ports.map((p) => p.containerPort));
  for (const listener of config.listeners) assert.ok(exposed.has(listener.port), `listener ${listener.name} port ${listener.port} is exposed`);
  assert.ok(pod.terminationGracePeriodSeconds > config.shutdownTimeoutSeconds);
});

it('deploy/grafana/polyproxy-dashboard.json: valid JSON whose queries use only metrics polyproxy exports', async () => {
  const { registry } = await import('../../../src/core/metrics.ts');
  const dashboard = JSON.parse(readFileSync(path.join(ROOT, 'deploy/grafana/polyproxy-dashboard.json'), 'utf8')) as { panels: Array<{ id: number; title: string; targets: Array<{ expr: string }> }> };
  assert.ok(dashboard.panels.length >= 10);
  assert.equal(new Set(dashboard.panels.map((p) => p.id)).size, dashboard.panels.length, 'panel ids are unique');
  const used = new Set(dashboard.panels.flatMap((p) => p.targets.flatMap((t) => t.expr.match(/polyproxy_[a-z_]+/g) ?? [])));
  for (const name of used) {
    const base = name.replace(/_(bucket|sum|count)$/, '');
    assert.ok(registry.getSingleMetric(base) !== undefined, `${name} (panel query) is not a polyproxy metric`);
  }
  for (const wanted of ['polyproxy_connections_open', 'polyproxy_bytes_in_total', 'polyproxy_errors_total', 'polyproxy_resolve_duration_seconds_bucket', 'polyproxy_resource_bytes_total']) {
    assert.ok(used.has(wanted), `the dashboard charts ${wanted}`);
  }
});
