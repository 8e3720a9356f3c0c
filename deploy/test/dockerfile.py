#!/usr/bin/env python3
"""Reads the Dockerfile's build and run steps, for image-steps.sh.

Prints shell assignments (values quoted with shlex.quote) that image-steps.sh evals:

  DF_BUILDER        the build stage's base image
  DF_BASE           the final stage's base image
  DF_CONTEXT        (array) what the build stage copies from the build context
  DF_CARGO          the build stage's `cargo build …` command
  DF_BUILD_STEPS    (array) the commands after it in the same RUN (`install …`)
  DF_COPY           (array) the final stage's COPY lines: "from|chown|chmod|src|dst"
  DF_ENV            (array) the final stage's ENV, "NAME=value", in order
  DF_USER DF_WORKDIR
  DF_EXPOSE DF_VOLUME DF_ENTRYPOINT DF_CMD   (arrays)

Only what the Dockerfile uses is understood; anything else (a shell-form ENTRYPOINT, an
ENV with several pairs, a second RUN in the build stage, an instruction this does not
know) is an error, so the Dockerfile cannot drift from what the script proves.
"""

import json
import re
import shlex
import sys

KNOWN = {
    "FROM", "ARG", "WORKDIR", "COPY", "RUN", "LABEL", "ENV", "USER", "EXPOSE", "VOLUME",
    "ENTRYPOINT", "CMD",
}


def fail(msg):
    sys.exit(f"dockerfile.py: {msg}")


def instructions(text):
    """(keyword, rest) per instruction: comments dropped, continuation lines joined."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1].strip() + " "
            continue
        buf += line.strip()
        keyword, _, rest = buf.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        buf = ""
    if buf:
        fail("the last instruction ends with a line continuation")
    return out


def flags(rest):
    """Leading --flag=value options of COPY/RUN, and what follows them."""
    found = {}
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        name, _, value = word[2:].partition("=")
        found.setdefault(name, []).append(value)
        rest = rest.lstrip()
    return found, rest


def exec_form(keyword, rest):
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        fail(f"{keyword} must be in exec form (a JSON array): {rest}")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        fail(f"{keyword} must be a JSON array of strings: {rest}")
    return value


def main(path):
    args = {}
    stages = []
    for keyword, rest in instructions(open(path, encoding="utf-8").read()):
        if keyword not in KNOWN:
            fail(f"unexpected instruction {keyword} (teach image-steps.sh about it first)")
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
            continue
        if keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            if not m:
                fail(f"cannot read FROM {rest}")
            image = re.sub(r"\$\{(\w+)\}", lambda v: args.get(v.group(1), ""), m.group(1))
            stages.append({"name": m.group(2), "image": image, "steps": []})
            continue
        if not stages:
            fail(f"{keyword} before FROM")
        stages[-1]["steps"].append((keyword, rest))
    if len(stages) != 2:
        fail(f"expected two stages (build, runtime), found {len(stages)}")
    build, final = stages

    runs = [rest for keyword, rest in build["steps"] if keyword == "RUN"]
    if len(runs) != 1:
        fail("the build stage must have exactly one RUN (cargo build, then install)")
    _, command = flags(runs[0])
    commands = [c.strip() for c in command.split("&&")]
    if not commands[0].startswith("cargo build "):
        fail(f"the build stage's RUN must start with cargo build: {commands[0]}")

    env, copies = [], []
    user = workdir = None
    expose, volume, entrypoint, cmd = [], [], None, None
    for keyword, rest in final["steps"]:
        if keyword == "ENV":
            m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)", rest)
            if not m:
                fail(f"one NAME=value per ENV line, no quotes or spaces: ENV {rest}")
            env.append(f"{m.group(1)}={m.group(2)}")
        elif keyword == "COPY":
            opts, rest = flags(rest)
            unknown = set(opts) - {"from", "chown", "chmod"}
            if unknown:
                fail(f"COPY flags not understood: {sorted(unknown)}")
            words = rest.split()
            if len(words) != 2:
                fail(f"one source and one destination per COPY: {rest}")
            copies.append("|".join([
                opts.get("from", [""])[0], opts.get("chown", [""])[0],
                opts.get("chmod", [""])[0], words[0], words[1],
            ]))
        elif keyword == "USER":
            user = rest
        elif keyword == "WORKDIR":
            workdir = rest
        elif keyword == "EXPOSE":
            expose += rest.split()
        elif keyword == "VOLUME":
            volume += exec_form(keyword, rest)
        elif keyword == "ENTRYPOINT":
            entrypoint = exec_form(keyword, rest)
        elif keyword == "CMD":
            cmd = exec_form(keyword, rest)
        elif keyword == "RUN":
            fail("the runtime stage cannot RUN (it has no shell)")
    if entrypoint is None or cmd is None or user is None or workdir is None:
        fail("the runtime stage needs ENTRYPOINT, CMD, USER and WORKDIR")
    if any(c.split("|")[0] not in ("", build["name"]) for c in copies):
        fail("COPY --from must name the build stage")

    sources = []
    for keyword, rest in build["steps"]:
        if keyword == "COPY":
            opts, rest = flags(rest)
            if opts:
                fail(f"the build stage copies from the context only: COPY {rest}")
            sources += rest.split()[:-1]

    q = shlex.quote
    arr = lambda values: "(" + " ".join(q(v) for v in values) + ")"
    print(f"DF_BUILDER={q(build['image'])}")
    print(f"DF_BASE={q(final['image'])}")
    print(f"DF_CONTEXT={arr(sources)}")
    print(f"DF_CARGO={q(commands[0])}")
    print(f"DF_BUILD_STEPS={arr(commands[1:])}")
    print(f"DF_COPY={arr(copies)}")
    print(f"DF_ENV={arr(env)}")
    print(f"DF_USER={q(user)}")
    print(f"DF_WORKDIR={q(workdir)}")
    print(f"DF_EXPOSE={arr(expose)}")
    print(f"DF_VOLUME={arr(volume)}")
    print(f"DF_ENTRYPOINT={arr(entrypoint)}")
    print(f"DF_CMD={arr(cmd)}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: dockerfile.py PATH/TO/Dockerfile")
    main(sys.argv[1])
