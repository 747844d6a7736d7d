#!/usr/bin/env python3
"""check-layers.py — the dependency rule of docs/ARCHITECTURE.md, checked against the code.

Two checks, each printing one line per finding and exiting 1 on any:

1. Includes: every `#include "folder/file.h"` in src/ goes from a component (a folder of src/,
   or main.c) to one it may use (ALLOWED below). That rule has no cycle, so no chain of includes
   between components can have one either, and nothing points up (store -> auth, config or
   watch; watch -> http; account -> http or api are all refused here).
2. Calls: no two source files call each other, directly or round a loop. The graph is read from
   the objects the build made (BUILD/obj/src/**/*.o, `nm`): file A -> file B when A uses a
   function B defines. Run after `make` (scripts/lint.sh builds first). A loop of calls is where
   two files should be one, or one should hand the other a callback.

Usage: scripts/check-layers.py [BUILD]   (BUILD defaults to build)
"""
import os
import re
import subprocess
import sys

# component -> the components it may include (itself always).
BASE = {"mem", "common"}
ALLOWED = {
    "common": set(),
    "mem": {"common"},
    "auth": BASE,
    "ratelimit": BASE,
    "store": BASE,
    "watch": BASE,
    # The HTTP layer counts connections per client, and a trusted proxy's clients each on their
    # own: it reads the trusted-proxy list (ratelimit/proxy.c).
    "http": BASE | {"ratelimit"},
    # The configuration reads settings into the types of what it configures (store/policy.h).
    "config": BASE | {"store"},
    # The account service: workflows over the stores, the password pool and the throttles. It
    # knows no HTTP and no API. It may read settings from a loaded configuration.
    # Mail: the address parser, the message builder and one SMTP delivery (libcurl).
    "mail": BASE,
    "account": BASE | {"auth", "ratelimit", "store", "watch", "config", "mail"},
    # The JSON API and the pages: parse, call the account service, render.
    "api": BASE | {"account", "auth", "ratelimit", "store", "watch", "http", "config", "mail"},
    # `gatehouse load`: a client of a node, linked into the same binary.
    "load": BASE | {"config"},
    # The node assembles everything: it alone names store backends and loads the configuration.
    "node": BASE | {"api", "account", "auth", "ratelimit", "store", "watch", "http", "config",
             "mail"},
    "main": BASE | {"node", "load"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def component(path):
    parts = path.split("/")
    if len(parts) == 2:  # src/main.c
        return "main"
    return parts[1]


def sources():
    for root, _, files in os.walk("src"):
        for f in sorted(files):
            if f.endswith((".c", ".h")):
                yield os.path.join(root, f)


def check_includes():
    bad = []
    for path in sorted(sources()):
        src = component(path)
        if src not in ALLOWED:
            bad.append(f"{path}: component '{src}' is not in the dependency rule "
                       "(scripts/check-layers.py ALLOWED, docs/ARCHITECTURE.md)")
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for inc in INCLUDE.findall(text):
            if "/" not in inc:
                continue
            dst = inc.split("/")[0]
            if not os.path.exists(os.path.join("src", inc)):
                continue
            if dst != src and dst not in ALLOWED[src]:
                bad.append(f"{path}: includes {inc}: {src} may not use {dst} "
                           f"(it may use: {', '.join(sorted(ALLOWED[src])) or 'nothing'})")
    return bad


def symbols(obj):
    out = subprocess.run(["nm", "--defined-only", "-g", obj], capture_output=True, text=True,
                         check=True).stdout
    # Functions only: a table of function pointers (the route table) is data that names
    # handlers, not a call, and reading a table is no call either.
    defined = {l.split()[2] for l in out.splitlines() if len(l.split()) >= 3 and l.split()[1] in "TW"}
    out = subprocess.run(["nm", "-u", obj], capture_output=True, text=True, check=True).stdout
    used = {l.split()[-1] for l in out.splitlines() if l.strip()}
    return defined, used


def check_calls(build):
    objdir = os.path.join(build, "obj", "src")
    if not os.path.isdir(objdir):
        return [f"{objdir}: no objects (run make first)"]
    defs, uses = {}, {}
    for root, _, files in os.walk(objdir):
        for f in files:
            if not f.endswith(".o"):
                continue
            obj = os.path.join(root, f)
            name = os.path.relpath(obj, os.path.join(build, "obj"))[:-2] + ".c"
            if not os.path.exists(name):
                continue  # an object left from a file that has moved
            defs[name], uses[name] = symbols(obj)
    owner = {}
    for name, ds in defs.items():
        for s in ds:
            owner[s] = name
    edges = {n: set() for n in defs}
    why = {}
    for n, us in uses.items():
        for s in us:
            o = owner.get(s)
            if o and o != n:
                edges[n].add(o)
                why.setdefault((n, o), s)
    # Tarjan's strongly connected components; any with more than one file is a loop of calls.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(sorted(scc))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    bad = []
    for scc in sccs:
        ties = [f"{a} -> {b} ({why[(a, b)]})" for a in scc for b in sorted(edges[a]) if b in scc]
        bad.append("call cycle: " + "; ".join(ties))
    # A call that points up breaks the rule as an include would.
    for (a, b), s in sorted(why.items()):
        ca, cb = component(a), component(b)
        if ca != cb and cb not in ALLOWED.get(ca, set()):
            bad.append(f"{a}: calls {s} of {b}: {ca} may not use {cb}")
    return bad


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    bad = check_includes() + check_calls(build)
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
