#!/usr/bin/env python3
"""Validates rendered manifests: schemas, the pod security the issue asks for, references.

  validate.py [--kubernetes-version 1.33] [--crd-schemas DIR] [--binary SYNCSETS]
              [--external-secret NAME=KIND/OWNER]... FILE...

Each FILE is one rendered overlay (all its objects); every object is checked:

1. Schema, strictly (unknown fields are errors): built-in kinds against the Kubernetes
   schemas kubernetes-validate ships for that version (it must ship it: no fallback to an
   older one); ServiceMonitor, PrometheusRule, RabbitmqCluster and Route against their
   CRDs' schemas vendored in DIR (crd-schemas/update.py says from where), metadata against
   Kubernetes' ObjectMeta. An object of any other kind is an error. (CEL rules in CRDs,
   x-kubernetes-validations, are not evaluated.)
2. Every pod template (Deployment, StatefulSet, DaemonSet, Job, CronJob): Pod Security
   Standards' restricted profile (runAsNonRoot, allowPrivilegeEscalation false, capabilities
   drop ALL, seccomp RuntimeDefault, no host namespaces, ports or paths, no privileged),
   plus readOnlyRootFilesystem, requests and limits of cpu and memory, liveness and
   readiness probes, an image with a tag (not latest), no ServiceAccount token mounted;
   terminationGracePeriodSeconds above SYNCSETS_SHUTDOWN_GRACE_PERIOD plus any preStop sleep.
3. References resolve within the overlay: Secrets (or the --external-secret ones, made
   by an operator for an object of the overlay), ConfigMaps, PVCs, ServiceAccounts, the
   Services, PDBs, NetworkPolicies and ServiceMonitors select pods or Services that exist,
   named ports exist, a Route's Service and port exist.
4. With --binary: each syncsets container's SYNCSETS_*/POSTGRES_PARAMS variables and --flags
   are read by `syncsets <command>` (its --help names them): a variable the binary does not
   know would be ignored without a word.

Prints one line per problem and a summary; exits 1 if there is any problem.
"""

import argparse
import copy
import json
import os
import re
import subprocess
import sys

import jsonschema
import kubernetes_validate
import referencing
import yaml
from kubernetes_validate import utils as kv

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}
problems = []


def problem(where, msg):
    problems.append(f"{where}: {msg}")


def name_of(obj):
    md = obj.get("metadata") or {}
    ns = md.get("namespace")
    return f"{obj.get('kind')}/{(ns + '/') if ns else ''}{md.get('name')}"


# ---- 1. schemas ----------------------------------------------------------------------------

def strictify(node):
    """Unknown fields are errors where the schema lists the known ones (as the API server's
    strict field validation), except under x-kubernetes-preserve-unknown-fields."""
    if isinstance(node, dict):
        node = {k: strictify(v) for k, v in node.items()}
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strictify(v) for v in node]
    return node


class Schemas:
    def __init__(self, version, crd_dir):
        self.version = version
        versions = {kv.major_minor(v) for v in kv.all_versions()}
        if version not in versions:
            sys.exit(f"validate.py: kubernetes-validate {kubernetes_validate.__version__} "
                     f"ships no schemas for Kubernetes {version} (it has {sorted(versions)})")
        self.crds = {}
        defs = kv.schema_contents(
            f"kubernetes-json-schema/v{self.exact()}-local-strict/_definitions.json", version)
        self.registry = referencing.Resource.from_contents(defs) @ referencing.Registry()
        for f in sorted(os.listdir(crd_dir or ".")) if crd_dir else []:
            if not f.endswith(".json"):
                continue
            crd = json.load(open(os.path.join(crd_dir, f), encoding="utf-8"))
            schema = strictify(copy.deepcopy(crd["schema"]))
            schema.setdefault("properties", {})
            schema["properties"]["metadata"] = {
                "$ref": "https://kubernetes.io/api/_definitions.json#/$defs/"
                        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
            schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
            schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
            self.crds[(crd["apiVersion"], crd["kind"])] = (schema, crd["source"])

    def exact(self):
        return [v for v in kv.all_versions() if kv.major_minor(v) == self.version][-1]

    def validate(self, obj):
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in self.crds:
            schema, _ = self.crds[key]
            validator = jsonschema.Draft202012Validator(schema, registry=self.registry)
            errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
            for e in errors:
                problem(name_of(obj), f"{'.'.join(str(p) for p in e.path)}: {e.message} "
                                      f"(CRD schema)")
            return "crd"
        try:
            got = kv.validate(obj, self.exact(), strict=True)
        except kv.SchemaNotFoundError:
            problem(name_of(obj), f"no schema for {key[0]} {key[1]} (neither Kubernetes "
                                  f"{self.version} nor a vendored CRD)")
            return None
        except kv.ValidationError as e:
            problem(name_of(obj), f"{'.'.join(str(p) for p in e.path)}: {e.message}")
            return "builtin"
        if got != self.version:
            problem(name_of(obj), f"validated against {got}, not {self.version}")
        return "builtin"


# ---- 2. pods ---------------------------------------------------------------------------------

def pod_template(obj):
    spec = obj.get("spec") or {}
    if obj["kind"] == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return spec.get("template") or {}


def duration_seconds(text):
    total, found = 0.0, False
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text or ""):
        found = True
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total if found else None


def check_pod(obj):
    where = name_of(obj)
    template = pod_template(obj)
    spec = template.get("spec") or {}
    psc = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        if spec.get(field) is True:
            problem(where, f"{field} is true")
    if spec.get("automountServiceAccountToken") is not False:
        problem(where, "automountServiceAccountToken is not false")
    for v in spec.get("volumes") or []:
        if "hostPath" in v:
            problem(where, f"volume {v['name']} is a hostPath")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if psc.get("runAsUser") == 0:
        problem(where, "runAsUser 0")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    containers = spec.get("containers") or []
    for kind, list_ in (("container", containers), ("init container", spec.get("initContainers") or [])):
        for c in list_:
            cw = f"{where} {kind} {c.get('name')}"
            sc = c.get("securityContext") or {}
            if not (sc.get("runAsNonRoot") is True or (psc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is not False)):
                problem(cw, "runAsNonRoot is not true")
            if sc.get("runAsUser") == 0:
                problem(cw, "runAsUser 0")
            if sc.get("allowPrivilegeEscalation") is not False:
                problem(cw, "allowPrivilegeEscalation is not false")
            if sc.get("privileged") is True:
                problem(cw, "privileged")
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                problem(cw, "capabilities do not drop ALL")
            if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
                problem(cw, f"adds capabilities {caps.get('add')}")
            seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
            if seccomp not in ("RuntimeDefault", "Localhost"):
                problem(cw, "seccompProfile is not RuntimeDefault")
            if sc.get("readOnlyRootFilesystem") is not True:
                problem(cw, "readOnlyRootFilesystem is not true")
            for p in c.get("ports") or []:
                if p.get("hostPort"):
                    problem(cw, f"hostPort {p['hostPort']}")
            res = c.get("resources") or {}
            for section in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(section) or {}):
                        problem(cw, f"no {section}.{r}")
            image = c.get("image") or ""
            tag = image.split("@")[0].rsplit("/", 1)[-1]
            if "@" not in image and (":" not in tag or tag.endswith(":latest")):
                problem(cw, f"image {image!r} has no fixed tag")
            if kind == "container":
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe not in c:
                        problem(cw, f"no {probe}")
            env = {e["name"]: e.get("value") for e in c.get("env") or []}
            shutdown = duration_seconds(env.get("SYNCSETS_SHUTDOWN_GRACE_PERIOD"))
            if shutdown is not None:
                pause = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
                if grace <= shutdown + pause:
                    problem(cw, f"terminationGracePeriodSeconds {grace} is not above the "
                                f"shutdown grace period {shutdown:g}s + preStop {pause}s")


# ---- 3. references ---------------------------------------------------------------------------

def matches(selector, labels):
    if not selector:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        val, op, values = labels.get(e["key"]), e["operator"], e.get("values") or []
        if (op == "In" and val not in values) or (op == "NotIn" and val in values) \
                or (op == "Exists" and val is None) or (op == "DoesNotExist" and val is not None):
            return False
    return True


def check_references(objs, external):
    by = {}
    for o in objs:
        by.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    pods = [(o, pod_template(o)) for o in objs if o["kind"] in WORKLOADS]
    made = set(by.get("Secret", {}))
    for secret, owner in external.items():
        kind, _, name = owner.partition("/")
        if name in by.get(kind, {}):
            made.add(secret)
    for o, t in pods:
        where = name_of(o)
        spec = t.get("spec") or {}
        labels = (t.get("metadata") or {}).get("labels") or {}
        if not matches((o.get("spec") or {}).get("selector"), labels) and o["kind"] != "CronJob":
            problem(where, "its selector does not select its own pods")
        sa = spec.get("serviceAccountName")
        if sa and sa not in by.get("ServiceAccount", {}):
            problem(where, f"ServiceAccount {sa} is not in the overlay")
        for v in spec.get("volumes") or []:
            if "secret" in v and v["secret"]["secretName"] not in made:
                problem(where, f"volume {v['name']}: Secret {v['secret']['secretName']} is made by nobody")
            if "configMap" in v and v["configMap"]["name"] not in by.get("ConfigMap", {}):
                problem(where, f"volume {v['name']}: ConfigMap {v['configMap']['name']} is missing")
            pvc = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if pvc and pvc not in by.get("PersistentVolumeClaim", {}):
                problem(where, f"volume {v['name']}: PVC {pvc} is missing")
        claims = {c["metadata"]["name"] for c in (o.get("spec") or {}).get("volumeClaimTemplates") or []}
        volumes = {v["name"] for v in spec.get("volumes") or []} | claims
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            for m in c.get("volumeMounts") or []:
                if m["name"] not in volumes:
                    problem(where, f"container {c['name']} mounts unknown volume {m['name']}")
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref["name"] not in made:
                    problem(where, f"env {e['name']}: Secret {ref['name']} is made by nobody")
                for var in re.findall(r"\$\((\w+)\)", e.get("value") or ""):
                    before = [x["name"] for x in c["env"][: c["env"].index(e)]]
                    if var not in before:
                        problem(where, f"env {e['name']} uses $({var}), not defined before it")

    def pod_ports(selector):
        ports, selected = set(), False
        for o, t in pods:
            if matches(selector, (t.get("metadata") or {}).get("labels") or {}):
                selected = True
                for c in (t.get("spec") or {}).get("containers") or []:
                    for p in c.get("ports") or []:
                        ports |= {p.get("name"), p.get("containerPort")}
        return selected, ports

    for s in by.get("Service", {}).values():
        selected, ports = pod_ports({"matchLabels": (s.get("spec") or {}).get("selector")})
        if not selected:
            problem(name_of(s), "selects no pods")
        for p in (s.get("spec") or {}).get("ports") or []:
            if p.get("targetPort", p.get("port")) not in ports:
                problem(name_of(s), f"targetPort {p.get('targetPort')} is no container port")
    for pdb in by.get("PodDisruptionBudget", {}).values():
        sel = pdb["spec"]["selector"]
        operator_made = any(matches(sel, {"app.kubernetes.io/name": n}) for n in by.get("RabbitmqCluster", {}))
        if not pod_ports(sel)[0] and not operator_made:
            problem(name_of(pdb), "selects no pods")
    for np in by.get("NetworkPolicy", {}).values():
        sel = np["spec"]["podSelector"]
        operator_made = any(matches(sel, {"app.kubernetes.io/name": n}) for n in by.get("RabbitmqCluster", {}))
        if sel and not pod_ports(sel)[0] and not operator_made:
            problem(name_of(np), "selects no pods")
    for sm in by.get("ServiceMonitor", {}).values():
        services = [s for s in by.get("Service", {}).values()
                    if matches(sm["spec"]["selector"], s["metadata"].get("labels") or {})]
        if not services:
            problem(name_of(sm), "selects no Service")
        for ep in sm["spec"].get("endpoints") or []:
            if not any(ep.get("port") in [p.get("name") for p in s["spec"].get("ports") or []] for s in services):
                problem(name_of(sm), f"port {ep.get('port')} is on no selected Service")
            refs = [((ep.get("authorization") or {}).get("credentials") or {}),
                    (((ep.get("tlsConfig") or {}).get("ca") or {}).get("secret") or {})]
            for ref in refs:
                if ref and ref["name"] not in made:
                    problem(name_of(sm), f"Secret {ref['name']} is made by nobody")
    for r in by.get("Route", {}).values():
        svc = by.get("Service", {}).get(r["spec"]["to"]["name"])
        if not svc:
            problem(name_of(r), f"Service {r['spec']['to']['name']} is missing")
        elif r["spec"].get("port") and r["spec"]["port"]["targetPort"] not in \
                [p.get("name") for p in svc["spec"]["ports"]] + [p.get("port") for p in svc["spec"]["ports"]]:
            problem(name_of(r), f"port {r['spec']['port']['targetPort']} is not on Service {svc['metadata']['name']}")


# ---- 4. flags --------------------------------------------------------------------------------

def check_flags(objs, binary):
    helps = {}
    for o in objs:
        if o["kind"] not in WORKLOADS:
            continue
        for c in (pod_template(o).get("spec") or {}).get("containers") or []:
            args = (c.get("command") or [])[1:] + (c.get("args") or [])
            if not re.search(r"(^|/)syncsets(:|@|$)", c.get("image", "")) or not args:
                continue
            command = args[0]
            if command not in helps:
                run = subprocess.run([binary, command, "--help"], capture_output=True, text=True, timeout=60)
                if run.returncode != 0:
                    problem(name_of(o), f"`syncsets {command} --help` failed: {run.stderr.strip()}")
                    helps[command] = ""
                else:
                    helps[command] = run.stdout
            text = helps[command]
            known_env = set(re.findall(r"\[env: ([A-Z0-9_]+)", text))
            known_flags = set(re.findall(r"(--[a-z0-9-]+)", text))
            for e in c.get("env") or []:
                if (e["name"].startswith("SYNCSETS_") or e["name"] == "POSTGRES_PARAMS") \
                        and e["name"] not in known_env:
                    problem(f"{name_of(o)} container {c['name']}",
                            f"env {e['name']}: `syncsets {command}` reads no such variable")
            for a in args[1:]:
                flag = a.split("=", 1)[0]
                if flag.startswith("--") and flag not in known_flags:
                    problem(f"{name_of(o)} container {c['name']}",
                            f"`syncsets {command}` has no flag {flag}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kubernetes-version", default="1.33")
    ap.add_argument("--crd-schemas")
    ap.add_argument("--binary")
    ap.add_argument("--external-secret", action="append", default=[],
                    help="NAME=KIND/OWNER: Secret NAME is made by an operator for OWNER")
    ap.add_argument("--secrets", action="append", default=[],
                    help="a file of Secrets made outside the overlays (deploy/secrets.sh --print)")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    schemas = Schemas(args.kubernetes_version, args.crd_schemas)
    external = dict(x.split("=", 1) for x in args.external_secret)
    extra = []
    for f in args.secrets:
        extra += [o for o in yaml.safe_load_all(open(f, encoding="utf-8")) if o]
    counts = {"builtin": 0, "crd": 0}
    for o in extra:
        got = schemas.validate(o)
        if got:
            counts[got] += 1
    for f in args.files:
        objs = [o for o in yaml.safe_load_all(open(f, encoding="utf-8")) if o]
        before = len(problems)
        for o in objs:
            got = schemas.validate(o)
            if got:
                counts[got] += 1
            if o.get("kind") in WORKLOADS:
                check_pod(o)
        check_references(objs + extra, external)
        if args.binary:
            check_flags(objs, args.binary)
        status = "ok" if len(problems) == before else f"{len(problems) - before} problems"
        kinds = sorted({o["kind"] for o in objs})
        print(f"validate: {os.path.basename(f)}: {len(objs)} objects ({', '.join(kinds)}): {status}")
    for p in problems:
        print(f"validate: {p}")
    print(f"validate: {counts['builtin']} objects against Kubernetes {args.kubernetes_version} "
          f"(kubernetes-validate {kubernetes_validate.__version__}, strict), {counts['crd']} against "
          f"vendored CRD schemas ({', '.join(sorted(k for _, k in schemas.crds))}); "
          f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
