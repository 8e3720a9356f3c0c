"""The official Kubernetes Python client (PyPI `kubernetes`) against a syncsets hub.

Run by tests/clients.rs: python3 client_test.py KUBECONFIG [HTTP/1.1|HTTP/2]. Exits
non-zero, with the failing step, if the hub answers anything differently from what the
client expects of kube-apiserver. Over HTTP/2 the client runs on urllib3's own HTTP/2
support (package `h2`), which reads a response whole: the watch below is read once its
timeout ends it.
"""

import sys
import uuid

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def main(kubeconfig: str, protocol: str) -> None:
    if protocol == "HTTP/2":
        import urllib3.http2

        urllib3.http2.inject_into_urllib3()
    elif protocol != "HTTP/1.1":
        raise SystemExit(f"unknown protocol {protocol!r}")
    config.load_kube_config(config_file=kubeconfig)
    api = client.ApiClient()
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    ns = "py-" + uuid.uuid4().hex[:8]

    # Typed objects without kind or apiVersion, as the client's own examples write them.
    made = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    assert made.metadata.name == ns and made.status.phase == "Active", made
    cm = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings", labels={"tier": "gold"}),
        data={"mode": "fast"},
    )
    created = core.create_namespaced_config_map(ns, cm)
    assert created.kind == "ConfigMap" and created.metadata.uid, created
    got = core.read_namespaced_config_map("settings", ns)
    assert got.data == {"mode": "fast"}, got

    listed = core.list_namespaced_config_map(ns, label_selector="tier in (gold,silver)")
    assert [i.metadata.name for i in listed.items] == ["settings"], listed
    assert not core.list_namespaced_config_map(ns, label_selector="tier=bronze").items

    got.data["mode"] = "safe"
    replaced = core.replace_namespaced_config_map("settings", ns, got)
    assert replaced.data["mode"] == "safe", replaced
    patched = core.patch_namespaced_config_map("settings", ns, {"data": {"extra": "1"}})
    assert patched.data == {"mode": "safe", "extra": "1"}, patched

    # Server-side apply, and its field manager recorded.
    applied = core.patch_namespaced_config_map(
        "applied",
        ns,
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "applied", "namespace": ns}, "data": {"k": "v"}},
        field_manager="py-apply",
        _content_type="application/apply-patch+yaml",
    )
    managers = [(m.manager, m.operation) for m in applied.metadata.managed_fields]
    assert ("py-apply", "Apply") in managers, managers

    # A stale write conflicts.
    got.data["mode"] = "stale"
    try:
        core.replace_namespaced_config_map("settings", ns, got)
        raise AssertionError("a stale replace succeeded")
    except ApiException as e:
        assert e.status == 409, e

    # Watch from a list's resourceVersion: what is created after it arrives.
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="watched"))
    )
    w = watch.Watch()
    seen = None
    if protocol == "HTTP/2":
        # urllib3's HTTP/2 cannot stream a response (HTTP2Response.stream raises
        # NotImplementedError): the watch is read whole once its timeout ends it, and each
        # line decoded by the client's own Watch.
        resp = core.list_namespaced_config_map(ns, resource_version=rv, watch=True,
                                               timeout_seconds=2, _preload_content=False)
        for line in resp.data.decode().splitlines():
            event = w.unmarshal_event(line, w.get_return_type(core.list_namespaced_config_map))
            if event and event["object"].metadata.name == "watched":
                seen = event["type"]
    else:
        for event in w.stream(core.list_namespaced_config_map, ns,
                              resource_version=rv, timeout_seconds=10):
            if event["object"].metadata.name == "watched":
                seen = event["type"]
                w.stop()
    assert seen == "ADDED", seen

    # Custom objects: Hive's SelectorSyncSet.
    name = "py-" + uuid.uuid4().hex[:8]
    group, version, plural = "hive.openshift.io", "v1", "selectorsyncsets"
    body = {"apiVersion": "hive.openshift.io/v1", "kind": "SelectorSyncSet",
            "metadata": {"name": name},
            "spec": {"clusterDeploymentSelector": {"matchLabels": {"env": "py"}},
                     "resources": [{"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": "x", "namespace": "default"}}]}}
    custom.create_cluster_custom_object(group, version, plural, body)
    sss = custom.get_cluster_custom_object(group, version, plural, name)
    assert sss["spec"]["clusterDeploymentSelector"]["matchLabels"] == {"env": "py"}, sss
    names = [i["metadata"]["name"] for i in
             custom.list_cluster_custom_object(group, version, plural)["items"]]
    assert name in names, names
    custom.delete_cluster_custom_object(group, version, plural, name)

    # Errors are Status objects with the reason the client reads.
    try:
        core.read_namespaced_config_map("missing", ns)
        raise AssertionError("a missing object was read")
    except ApiException as e:
        assert e.status == 404 and '"reason":"NotFound"' in e.body.replace(" ", ""), e

    core.delete_namespaced_config_map("settings", ns)
    core.delete_namespace(ns)
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "HTTP/1.1")
