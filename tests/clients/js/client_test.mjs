// The official Kubernetes JavaScript client (@kubernetes/client-node) against a syncsets hub.
//
// Run by tests/clients.rs: node client_test.mjs KUBECONFIG. Exits non-zero, naming the
// failing step, if the hub answers anything differently from what the client expects of
// kube-apiserver.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';

const kc = new k8s.KubeConfig();
kc.loadFromFile(process.argv[2]);
const core = kc.makeApiClient(k8s.CoreV1Api);
const custom = kc.makeApiClient(k8s.CustomObjectsApi);
const objects = k8s.KubernetesObjectApi.makeApiClient(kc);
const ns = `js-${randomBytes(4).toString('hex')}`;

async function expectStatus(code, call) {
  try {
    await call();
  } catch (e) {
    assert.equal(e.code, code, String(e));
    return typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
  }
  assert.fail(`expected ${code}`);
}

// Typed objects without kind or apiVersion.
const made = await core.createNamespace({ body: { metadata: { name: ns } } });
assert.equal(made.metadata.name, ns);
assert.equal(made.status.phase, 'Active');
const created = await core.createNamespacedConfigMap({
  namespace: ns,
  body: { metadata: { name: 'settings', labels: { tier: 'gold' } }, data: { mode: 'fast' } },
});
assert.equal(created.kind, 'ConfigMap');
const got = await core.readNamespacedConfigMap({ name: 'settings', namespace: ns });
assert.deepEqual(got.data, { mode: 'fast' });

const listed = await core.listNamespacedConfigMap({ namespace: ns, labelSelector: 'tier in (gold,silver)' });
assert.deepEqual(listed.items.map((i) => i.metadata.name), ['settings']);
const none = await core.listNamespacedConfigMap({ namespace: ns, labelSelector: 'tier=bronze' });
assert.equal(none.items.length, 0);

got.data.mode = 'safe';
const replaced = await core.replaceNamespacedConfigMap({ name: 'settings', namespace: ns, body: got });
assert.equal(replaced.data.mode, 'safe');
const patched = await core.patchNamespacedConfigMap(
  { name: 'settings', namespace: ns, body: { data: { extra: '1' } } },
  k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
);
assert.deepEqual(patched.data, { mode: 'safe', extra: '1' });

// A stale write conflicts.
got.data.mode = 'stale';
const conflict = await expectStatus(409, () =>
  core.replaceNamespacedConfigMap({ name: 'settings', namespace: ns, body: got }));
assert.equal(conflict.reason, 'Conflict');

// Server-side apply through the generic object client.
const applied = await objects.patch(
  { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'applied', namespace: ns }, data: { k: 'v' } },
  undefined, undefined, 'js-apply', undefined, k8s.PatchStrategy.ServerSideApply,
);
assert.ok(applied.metadata.managedFields.some((m) => m.manager === 'js-apply' && m.operation === 'Apply'));

// Watch from a list's resourceVersion: what is created after it arrives.
const rv = (await core.listNamespacedConfigMap({ namespace: ns })).metadata.resourceVersion;
await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'watched' } } });
const seen = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('no watch event in 10 s')), 10_000);
  let controller;
  new k8s.Watch(kc)
    .watch(`/api/v1/namespaces/${ns}/configmaps`, { resourceVersion: rv },
      (type, obj) => {
        if (obj.metadata.name === 'watched') {
          clearTimeout(timer);
          controller.abort();
          resolve(type);
        }
      },
      () => {})
    .then((c) => { controller = c; }, reject);
});
assert.equal(seen, 'ADDED');

// Custom objects: Hive's SelectorSyncSet.
const name = `js-${randomBytes(4).toString('hex')}`;
const gvp = { group: 'hive.openshift.io', version: 'v1', plural: 'selectorsyncsets' };
await custom.createClusterCustomObject({
  ...gvp,
  body: {
    apiVersion: 'hive.openshift.io/v1', kind: 'SelectorSyncSet', metadata: { name },
    spec: { clusterDeploymentSelector: { matchLabels: { env: 'js' } } },
  },
});
const sss = await custom.getClusterCustomObject({ ...gvp, name });
assert.deepEqual(sss.spec.clusterDeploymentSelector.matchLabels, { env: 'js' });
const all = await custom.listClusterCustomObject(gvp);
assert.ok(all.items.some((i) => i.metadata.name === name));
await custom.deleteClusterCustomObject({ ...gvp, name });

// Errors are Status objects with the reason the client reads.
const missing = await expectStatus(404, () => core.readNamespacedConfigMap({ name: 'missing', namespace: ns }));
assert.equal(missing.reason, 'NotFound');

await core.deleteNamespacedConfigMap({ name: 'settings', namespace: ns });
await core.deleteNamespace({ name: ns });
console.log('ok');
