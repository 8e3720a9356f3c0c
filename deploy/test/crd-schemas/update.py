#!/usr/bin/env python3
"""Vendors the schemas of the custom resources the manifests use.

  update.py SOURCE CRD.yaml [SOURCE CRD.yaml ...]

SOURCE says where CRD.yaml came from (repository, tag or commit, path); it is kept in
the output. For each version the CRD serves, writes <group>_<kind>_<version>.json here:
{"apiVersion", "kind", "source", "schema"}, the schema being the CRD's openAPIV3Schema
without its descriptions (they are most of its size and validate nothing) or null keywords.

validate.py reads these files and validates the rendered objects of those kinds as the
API server would on a create with strict field validation: unknown fields are errors,
except where the schema says x-kubernetes-preserve-unknown-fields.
"""

import json
import os
import sys

import yaml


def strip(node, names=False):
    """The schema without descriptions and null keywords (routes.crd.yaml has `anyOf:
    null`); under `properties`, keys are field names, all kept."""
    if isinstance(node, dict):
        return {k: strip(v, names=(k == "properties" and not names)) for k, v in node.items()
                if names or (k != "description" and v is not None)}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main(pairs):
    here = os.path.dirname(os.path.abspath(__file__))
    for source, path in pairs:
        for crd in yaml.safe_load_all(open(path, encoding="utf-8")):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                name = f"{spec['group']}_{spec['names']['kind'].lower()}_{version['name']}.json"
                out = {
                    "apiVersion": f"{spec['group']}/{version['name']}",
                    "kind": spec["names"]["kind"],
                    "source": source,
                    "schema": strip(version["schema"]["openAPIV3Schema"]),
                }
                with open(os.path.join(here, name), "w", encoding="utf-8") as f:
                    json.dump(out, f, separators=(",", ":"), sort_keys=True)
                    f.write("\n")
                print(f"{name}: {out['apiVersion']} {out['kind']} from {source}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit("usage: update.py SOURCE CRD.yaml [SOURCE CRD.yaml ...]")
    main(list(zip(args[0::2], args[1::2])))
