#!/usr/bin/env python3
"""Compares checkov's failed checks with the accepted ones.

  checkov-gate.py ACCEPTED.txt REPORT.json...

REPORT.json: `checkov -o json` output (one report or a list of them). ACCEPTED.txt: lines
`CHECK_ID WHERE REASON`, WHERE a glob over FILE:RESOURCE (FILE without directories).
Fails on any failed check no line accepts, on a line that accepts nothing, on a line
without a reason, and on a report with parsing errors or no resources.
"""

import fnmatch
import json
import os
import sys


def main(accepted_path, reports):
    accepted = []
    bad = []
    for n, line in enumerate(open(accepted_path, encoding="utf-8"), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3 or len(parts[2]) < 10:
            bad.append(f"{accepted_path}:{n}: needs CHECK_ID WHERE REASON")
            continue
        accepted.append({"id": parts[0], "where": parts[1], "reason": parts[2], "used": 0, "line": n})

    failed, passed, resources = [], 0, 0
    for path in reports:
        data = json.load(open(path, encoding="utf-8"))
        for report in data if isinstance(data, list) else [data]:
            if "results" not in report:  # checkov's answer when nothing was scanned
                bad.append(f"{path}: checkov scanned nothing: {report}")
                continue
            summary = report["summary"]
            if summary.get("parsing_errors"):
                bad.append(f"{path}: checkov could not parse {summary['parsing_errors']} files")
            if not summary.get("resource_count"):
                bad.append(f"{path}: checkov found no resources")
            passed += summary.get("passed", 0)
            resources += summary.get("resource_count", 0)
            for check in report["results"]["failed_checks"]:
                where = f"{os.path.basename(check['file_path'])}:{check['resource']}"
                failed.append((check["check_id"], where, check["check_name"]))

    unaccepted = []
    for check_id, where, name in failed:
        hits = [a for a in accepted if a["id"] == check_id and fnmatch.fnmatchcase(where, a["where"])]
        for a in hits:
            a["used"] += 1
        if not hits:
            unaccepted.append(f"{check_id} {where}: {name}")
    for a in accepted:
        if not a["used"]:
            bad.append(f"{accepted_path}:{a['line']}: {a['id']} {a['where']} accepts no finding any more: remove it")
    for a in accepted:
        if a["used"]:
            print(f"checkov: accepted {a['id']} ×{a['used']} ({a['where']}): {a['reason']}")
    for u in unaccepted:
        print(f"checkov: FAILED {u}")
    for b in bad:
        print(f"checkov: {b}")
    print(f"checkov: {resources} resources, {passed} checks passed, {len(failed)} failed "
          f"({len(failed) - len(unaccepted)} accepted, {len(unaccepted)} not)")
    return 1 if unaccepted or bad else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: checkov-gate.py ACCEPTED.txt REPORT.json...")
    sys.exit(main(sys.argv[1], sys.argv[2:]))
