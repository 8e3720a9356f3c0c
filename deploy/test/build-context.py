#!/usr/bin/env python3
"""Checks that the image's build stage gets every file the build reads, and no more.

  build-context.py REPO SOURCE...

REPO is the repository's root (the build context); SOURCE… are what the build stage COPYs
from it (dockerfile.py's DF_CONTEXT). The context is REPO less what .dockerignore leaves
out (Docker's rules: the last matching pattern wins, a pattern that matches a directory
matches everything under it, `!` brings back). Checked:

- every SOURCE is in the context;
- every file the compiler reads beside the sources — `include_str!`, `include_bytes!`
  (relative to the file) and `sqlx::migrate!` (relative to the crate) in crates/*/src and
  src — is in the context and under a SOURCE;
- every workspace member's Cargo.toml is copied;
- nothing secret or built is in the context: target/, .git, data/, deploy/.secrets.

Prints the context's size in files; exits non-zero naming what is wrong.
"""

import fnmatch
import os
import re
import sys

INCLUDE = re.compile(r'include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)')
MIGRATE = re.compile(r'sqlx::migrate!\(\s*"([^"]+)"\s*\)')


def patterns(repo):
    path = os.path.join(repo, ".dockerignore")
    out = []
    if os.path.exists(path):
        for line in open(path, encoding="utf-8"):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line[1:] if negate else line
            pattern = os.path.normpath(pattern.strip("/")) if pattern.strip("/") else "."
            out.append((negate, pattern))
    return out


def match(pattern, path):
    """Docker's matching: `*` stays within a path element, `**` spans any number."""
    regex = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            regex += ".*"
            i += 2
            if pattern.startswith("/", i):
                regex = regex[:-2] + "(?:.*/)?"
                i += 1
            continue
        if c == "*":
            regex += "[^/]*"
        elif c == "?":
            regex += "[^/]"
        else:
            regex += re.escape(c)
        i += 1
    return re.fullmatch(regex, path) is not None


def excluded(rules, path):
    """Whether .dockerignore leaves `path` (relative, /-separated) out of the context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    out = False
    for negate, pattern in rules:
        if any(match(pattern, p) for p in prefixes):
            out = not negate
    return out


def main(repo, sources):
    rules = patterns(repo)
    context = set()
    for root, dirs, files in os.walk(repo):
        rel_root = os.path.relpath(root, repo)
        # A directory left out whole, that no `!` pattern could bring back, is not walked.
        keep = []
        for d in dirs:
            rel = os.path.normpath(os.path.join(rel_root, d)).replace(os.sep, "/")
            if excluded(rules, rel) and not any(
                neg and (p.startswith(rel + "/") or "*" in p) for neg, p in rules
            ):
                continue
            keep.append(d)
        dirs[:] = keep
        for f in files:
            rel = os.path.normpath(os.path.join(rel_root, f)).replace(os.sep, "/")
            if not excluded(rules, rel):
                context.add(rel)
    problems = []

    def copied(rel):
        return any(rel == s or rel.startswith(s.rstrip("/") + "/") for s in sources)

    for s in sources:
        if not any(c == s or c.startswith(s.rstrip("/") + "/") for c in context):
            problems.append(f"COPY {s}: not in the build context (.dockerignore, or missing)")
    for bad in ("target/", ".git/", "data/", "deploy/.secrets/"):
        leaked = [c for c in context if c.startswith(bad) or f"/{bad}" in c]
        if leaked:
            problems.append(f"the context holds {bad}: {leaked[:3]}…")

    rust = [c for c in context if c.endswith(".rs") and (c.startswith("src/") or re.match(r"crates/[^/]+/src/", c))]
    needed = set()
    for rel in rust:
        text = open(os.path.join(repo, rel), encoding="utf-8").read()
        for m in INCLUDE.finditer(text):
            needed.add((rel, os.path.normpath(os.path.join(os.path.dirname(rel), m.group(1)))))
        crate = rel.split("/src/")[0] if rel.startswith("crates/") else "."
        for m in MIGRATE.finditer(text):
            needed.add((rel, os.path.normpath(os.path.join(crate, m.group(1)))))
    for user, target in sorted(needed):
        target = target.replace(os.sep, "/")
        inside = [c for c in context if c == target or c.startswith(target + "/")]
        if not inside:
            problems.append(f"{user} reads {target}, which is not in the build context")
        elif not all(copied(c) for c in inside):
            problems.append(f"{user} reads {target}, which the build stage does not COPY")
    members = [c for c in context if re.fullmatch(r"crates/[^/]+/Cargo\.toml", c)]
    for m in members:
        if not copied(m):
            problems.append(f"workspace member {m} is not copied")
    if not members:
        problems.append("no crates/*/Cargo.toml in the context")

    for p in problems:
        print(f"build-context: {p}", file=sys.stderr)
    files = sum(1 for c in context if copied(c))
    if not problems:
        print(f"build context: {len(context)} files, {files} copied by the build stage; "
              f"{len(needed)} compile-time file reads, all inside")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: build-context.py REPO SOURCE...")
    sys.exit(main(sys.argv[1], sys.argv[2:]))
