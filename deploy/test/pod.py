#!/usr/bin/env python3
"""Lays out one container of a rendered manifest as the kubelet would, for image-steps.sh.

  pod.py RENDERED.yaml KIND/NAME CONTAINER SECRETS.yaml DIR [NAME=VALUE...]

Reads the workload KIND/NAME's pod template from RENDERED.yaml (an overlay, rendered) and
its container CONTAINER; makes under DIR what the kubelet would mount — each Secret volume
as files (from SECRETS.yaml: deploy/secrets.sh --print; items, defaultMode; owner root,
group fsGroup), each emptyDir and PersistentVolumeClaim as a new directory (group fsGroup,
setgid, group-writable, as the kubelet prepares volumes for an fsGroup) — and prints shell
assignments for image-steps.sh:

  POD_USER      UID:GID (runAsUser, runAsGroup; empty parts: the image's)
  POD_GROUPS    supplementary groups: fsGroup, supplementalGroups (comma-separated)
  POD_COMMAND   (array) command, if the container sets one (replaces ENTRYPOINT)
  POD_ARGS      (array) args, if the container sets them (replace CMD)
  POD_ENV       (array) NAME=value: value, or a Secret's key (valueFrom.secretKeyRef), with
                $(VAR) expanded as the kubelet does; a NAME=VALUE argument replaces the
                variable's value (a server on this machine instead of the cluster's)
  POD_MOUNTS    (array) SOURCE|MOUNTPATH|ro or rw

Anything it does not know (a ConfigMap, a projected volume, fieldRef…) is an error.
"""

import base64
import os
import re
import shlex
import sys

import yaml


def fail(msg):
    sys.exit(f"pod.py: {msg}")


def main(rendered, workload, container_name, secrets_file, out, *overrides):
    overrides = dict(o.split("=", 1) for o in overrides)
    kind, _, name = workload.partition("/")
    objs = [o for o in yaml.safe_load_all(open(rendered, encoding="utf-8")) if o]
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(found) != 1:
        fail(f"{workload} is not in {rendered}")
    spec = found[0]["spec"]["template"]["spec"]
    containers = [c for c in spec["containers"] if c["name"] == container_name]
    if len(containers) != 1:
        fail(f"{workload} has no container {container_name}")
    c = containers[0]
    secrets = {o["metadata"]["name"]: o for o in yaml.safe_load_all(open(secrets_file, encoding="utf-8")) if o}

    def secret_data(secret, key):
        if secret not in secrets:
            fail(f"Secret {secret} is not in {secrets_file}")
        data = secrets[secret].get("data") or {}
        if key not in data:
            fail(f"Secret {secret} has no key {key}")
        return base64.b64decode(data[key])

    psc = spec.get("securityContext") or {}
    csc = c.get("securityContext") or {}
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    fs_group = psc.get("fsGroup")
    groups = [g for g in [fs_group] + list(psc.get("supplementalGroups") or []) if g is not None]

    env, values = [], {}
    for e in c.get("env") or []:
        if e["name"] in overrides:
            value = overrides.pop(e["name"])
        elif "value" in e:
            value = re.sub(r"\$\((\w+)\)", lambda m: values.get(m.group(1), m.group(0)), e["value"])
        elif "secretKeyRef" in (e.get("valueFrom") or {}):
            ref = e["valueFrom"]["secretKeyRef"]
            value = secret_data(ref["name"], ref["key"]).decode()
        else:
            fail(f"env {e['name']}: only value and secretKeyRef are understood")
        values[e["name"]] = value
        env.append(f"{e['name']}={value}")

    if overrides:
        fail(f"the container sets no {sorted(overrides)}")

    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    mounts = []
    for m in c.get("volumeMounts") or []:
        v = volumes.get(m["name"]) or fail(f"mount {m['name']}: no such volume")
        if m.get("subPath"):
            fail(f"mount {m['name']}: subPath is not understood")
        src = os.path.join(out, m["name"])
        os.makedirs(src)
        if "secret" in v:
            s = v["secret"]
            mode = s.get("defaultMode", 0o644)
            items = s.get("items") or [{"key": k, "path": k} for k in
                                       (secrets.get(s["secretName"], {}).get("data") or {})]
            if not items:
                fail(f"volume {m['name']}: Secret {s['secretName']} is missing or empty")
            for item in items:
                path = os.path.join(src, item["path"])
                with open(path, "wb") as f:
                    f.write(secret_data(s["secretName"], item["key"]))
                os.chown(path, 0, fs_group if fs_group is not None else 0)
                os.chmod(path, item.get("mode", mode))
            os.chmod(src, 0o755)
            mounts.append(f"{src}|{m['mountPath']}|ro")
        elif "emptyDir" in v or "persistentVolumeClaim" in v:
            if fs_group is not None:
                os.chown(src, 0, fs_group)
                os.chmod(src, 0o2777 if "emptyDir" in v else 0o2775)
            else:
                os.chmod(src, 0o777 if "emptyDir" in v else 0o755)
            mounts.append(f"{src}|{m['mountPath']}|{'ro' if m.get('readOnly') else 'rw'}")
        else:
            fail(f"volume {m['name']}: only secret, emptyDir and persistentVolumeClaim are understood")

    q = shlex.quote
    arr = lambda xs: "(" + " ".join(q(str(x)) for x in xs) + ")"
    user = ("" if uid is None else str(uid)) + ":" + ("" if gid is None else str(gid))
    print(f"POD_USER={q(user)}")
    print(f"POD_GROUPS={q(','.join(str(g) for g in groups))}")
    print(f"POD_COMMAND={arr(c.get('command') or [])}")
    print(f"POD_ARGS={arr(c.get('args') or [])}")
    print(f"POD_ENV={arr(env)}")
    print(f"POD_MOUNTS={arr(mounts)}")


if __name__ == "__main__":
    if len(sys.argv) < 6:
        sys.exit("usage: pod.py RENDERED.yaml KIND/NAME CONTAINER SECRETS.yaml DIR [NAME=VALUE...]")
    main(*sys.argv[1:])
