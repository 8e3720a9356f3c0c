#!/usr/bin/env python3
"""Writes crates/machinery/src/protobuf/fields.json: the protobuf layout of the Kubernetes
kinds syncsets decodes from protobuf request bodies, read off the Go types upstream.

    tools/k8s-protobuf-fields.py <k8s.io/api checkout> <k8s.io/apimachinery checkout> > fields.json

Both at the tag of the Kubernetes version served (v0.33.x for 1.33). Each struct field's
tags give its JSON name, `omitempty`, and protobuf number, wire type and cast type; its Go
type says whether it is a pointer (a zero value present on the wire is then meant), a
list, a map, an inline (embedded) struct, or another message.

Output: {"kinds": {"apps/v1/Deployment": "k8s.io/api/apps/v1.Deployment", ...},
         "messages": {"k8s.io/api/apps/v1.Deployment": [[number, json name, type, flags], ...]}}
where type is a scalar (string, bool, int, bytes), a well-known message (time, microtime,
intorstring, quantity, rawextension, fieldsv1, stringlist: a map's list of strings) or
another message's name, and flags holds "list", "pointer", "inline", "omitempty", or
"map:<key type>" (type is then the value's).
"""

import json
import os
import re
import sys

# The groups served (see crates/machinery/src/builtin.rs), and meta/v1.
API_PACKAGES = [
    "core/v1", "apps/v1", "batch/v1", "autoscaling/v1", "autoscaling/v2",
    "networking/v1", "policy/v1", "storage/v1", "scheduling/v1", "coordination/v1",
    "admissionregistration/v1", "discovery/v1", "node/v1", "rbac/v1", "authorization/v1",
]
GROUPS = {"core": "", "rbac": "rbac.authorization.k8s.io", "authorization": "authorization.k8s.io",
          "networking": "networking.k8s.io", "storage": "storage.k8s.io",
          "scheduling": "scheduling.k8s.io", "coordination": "coordination.k8s.io",
          "admissionregistration": "admissionregistration.k8s.io",
          "discovery": "discovery.k8s.io", "node": "node.k8s.io"}
WELL_KNOWN = {
    "k8s.io/apimachinery/pkg/apis/meta/v1.Time": "time",
    "k8s.io/apimachinery/pkg/apis/meta/v1.MicroTime": "microtime",
    "k8s.io/apimachinery/pkg/apis/meta/v1.Duration": "duration",
    "k8s.io/apimachinery/pkg/apis/meta/v1.FieldsV1": "fieldsv1",
    "k8s.io/apimachinery/pkg/util/intstr.IntOrString": "intorstring",
    "k8s.io/apimachinery/pkg/api/resource.Quantity": "quantity",
    "k8s.io/apimachinery/pkg/runtime.RawExtension": "rawextension",
}
SCALARS = {"string": "string", "bool": "bool", "int": "int", "int32": "int", "int64": "int",
           "uint32": "int", "uint64": "int", "float64": "double", "float32": "double",
           "byte": "int"}


def go_files(directory):
    for name in sorted(os.listdir(directory)):
        if name.endswith(".go") and not name.endswith("_test.go") and name.startswith("types"):
            yield os.path.join(directory, name)


def parse_package(directory):
    """(structs, named types, imports) of a Go package's types*.go files."""
    structs, named, imports = {}, {}, {}
    for path in go_files(directory):
        text = open(path).read()
        block = re.search(r"^import \((.*?)^\)", text, re.S | re.M)
        lines = block.group(1).splitlines() if block else re.findall(r"^import (.*)$", text, re.M)
        for line in lines:
            m = re.match(r'\s*(\w+)?\s*"([^"]+)"', line)
            if m:
                alias = m.group(1) or m.group(2).rsplit("/", 1)[-1]
                imports.setdefault(path, {})[alias] = m.group(2)
        for m in re.finditer(r"^type (\w+) struct \{\n(.*?)^\}", text, re.S | re.M):
            structs[m.group(1)] = (path, m.group(2))
        for m in re.finditer(r"^type (\w+) (?:= )?(?!struct)(\S[^\n{]*)$", text, re.M):
            named[m.group(1)] = (m.group(2).strip(), path)
    return structs, named, imports


def main(api_root, machinery_root):
    packages = {}
    for p in API_PACKAGES:
        packages["k8s.io/api/" + p] = os.path.join(api_root, p)
    for p, d in [("k8s.io/apimachinery/pkg/apis/meta/v1", "pkg/apis/meta/v1")]:
        packages[p] = os.path.join(machinery_root, d)
    parsed = {name: parse_package(d) for name, d in packages.items()}
    messages = {}

    def resolve(pkg, go_type, path):
        """(package, bare type) of a Go type name as written in `path` of `pkg`."""
        if "." in go_type:
            alias, bare = go_type.split(".", 1)
            return parsed[pkg][2].get(path, {}).get(alias, alias), bare
        return pkg, go_type

    def field_type(pkg, go_type, cast, path):
        """(type, flags) of a field's Go type."""
        flags = []
        if go_type.startswith("*"):
            flags.append("pointer")
            go_type = go_type[1:]
        if go_type == "[]byte":
            return "bytes", flags
        if go_type.startswith("[]"):
            t, f = field_type(pkg, go_type[2:], cast, path)
            return t, flags + ["list"] + [x for x in f if x != "pointer"]
        m = re.match(r"map\[([\w\.]+)\](.+)$", go_type)
        if m:
            key, _ = field_type(pkg, m.group(1), None, path)
            t, f = field_type(pkg, m.group(2), None, path)
            if "list" in f:
                # A map's list values travel wrapped: message { repeated T items = 1 }.
                if t != "string":
                    raise SystemExit(f"map of lists of {t} in {path}")
                t = "stringlist"
            return t, flags + ["map:" + key]
        if go_type in SCALARS:
            return SCALARS[go_type], flags
        p, bare = resolve(pkg, go_type, path)
        full = f"{p}.{bare}"
        if full in WELL_KNOWN:
            return WELL_KNOWN[full], flags
        if p in parsed and bare in parsed[p][1] and bare not in parsed[p][0]:
            under, defined_in = parsed[p][1][bare]
            t, f = field_type(p, under, None, defined_in)
            return t, flags + f
        if p in parsed and bare in parsed[p][0]:
            add(p, bare)
            return full, flags
        if p == "k8s.io/apimachinery/pkg/types":  # UID, NamespacedName…: strings
            return "string", flags
        raise SystemExit(f"unknown type {go_type} ({full}) in {path}")

    def add(pkg, name):
        full = f"{pkg}.{name}"
        if full in messages:
            return
        messages[full] = None  # placeholder against recursion
        path, body = parsed[pkg][0][name]
        fields = []
        for line in body.splitlines():
            line = line.strip()
            if not line or line.startswith("//"):
                continue
            m = re.match(r"^(?:(\w+)\s+)?([^`\s]+)\s+`(.*)`", line)
            if not m:
                continue
            tags = dict(re.findall(r'(\w+):"([^"]*)"', m.group(3)))
            if "protobuf" not in tags:
                continue
            name_go, go_type = m.group(1), m.group(2)
            if name_go is None:  # embedded: `Type `…``
                go_type = m.group(2)
            proto = tags["protobuf"].split(",")
            number = int(proto[1])
            json_tag = tags.get("json", "").split(",")
            json_name = json_tag[0]
            inline = json_name == "" or "inline" in json_tag
            # Lists come from the Go type: some upstream tags say `rep` for a single field.
            t, flags = field_type(pkg, go_type, None, path)
            if inline:
                flags.append("inline")
            if "omitempty" in json_tag[1:]:
                flags.append("omitempty")
            fields.append([number, json_name, t, sorted(set(flags))])
        messages[full] = sorted(fields)

    kinds = {}
    for p in API_PACKAGES:
        group, version = p.split("/")
        pkg = "k8s.io/api/" + p
        api_version = f"{GROUPS.get(group, group)}/{version}".lstrip("/")
        # Objects: the types with TypeMeta and ObjectMeta (lists have ListMeta).
        for name, (path, body) in parsed[pkg][0].items():
            if re.search(r"^\s*metav1\.TypeMeta\b", body, re.M) and \
               re.search(r"^\s*metav1\.ObjectMeta\b", body, re.M):
                kinds[f"{api_version}/{name}"] = f"{pkg}.{name}"
                add(pkg, name)
    meta = "k8s.io/apimachinery/pkg/apis/meta/v1"
    add(meta, "DeleteOptions")
    kinds["DeleteOptions"] = f"{meta}.DeleteOptions"
    json.dump({"kinds": dict(sorted(kinds.items())), "messages": dict(sorted(messages.items()))},
              sys.stdout, indent=None, separators=(",", ":"))
    print()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
