#!/usr/bin/env python3
"""Print the crate's module import graph: one line per top-level module with the modules its
non-test code names through `crate::…` (or `super::…` from a nested file), and the cycles.

Usage: python3 scripts/import-graph.py [SRC_DIR]      (default: src)
       git archive OLD src | tar -x -C /tmp/old && python3 scripts/import-graph.py /tmp/old/src

The grouping follows src/layers.rs (the architecture test): `steps::api` is its own node, items
of the crate root (`exit`, `out`) are `root`, lib.rs/main.rs are `main`. The test is what keeps the
direction; this script only draws it, e.g. to compare two commits.
"""

import re
import sys
from itertools import chain
from pathlib import Path

ROOT_ITEMS = {"exit", "out"}
PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{)")
USE_GROUP = re.compile(r"\bcrate::\{([^;]*)\}", re.S)


def module_path(rel):
    parts = [p[:-3] if p.endswith(".rs") else p for p in rel.parts]
    if parts and parts[-1] == "mod":
        parts.pop()
    return parts


def node_of(parts):
    if not parts:
        return "root"
    if parts[0] in ("lib", "main"):
        return "main"
    if parts[0] == "steps" and len(parts) > 1 and parts[1] == "api":
        return "steps::api"
    if parts[0] in ROOT_ITEMS:
        return "root"
    return parts[0]


def non_test_code(text):
    """Drop `#[cfg(test)]` modules and `//` comments, as layers.rs does."""
    out, depth, skipping, pending = [], 0, False, False
    for line in text.splitlines():
        stripped = line.strip()
        if skipping:
            depth += line.count("{") - line.count("}")
            if depth <= 0:
                skipping = False
            continue
        if stripped.startswith("#[cfg(test)]"):
            pending = True
            continue
        if pending and stripped.startswith("mod ") or pending and stripped.startswith("pub mod "):
            pending = False
            if stripped.endswith(";"):
                continue
            depth = line.count("{") - line.count("}")
            skipping = depth > 0
            continue
        pending = False
        out.append(line.split("//", 1)[0])
    return "\n".join(out)


def targets(code, here):
    """The module paths a file's code names."""
    found = []
    for m in USE_GROUP.finditer(code):
        for item in m.group(1).split(","):
            name = item.strip().split("::")[0].strip("{} \n")
            if name:
                found.append([name] + item.strip().split("::")[1:2])
    for m in PATH.finditer(code):
        if m.group(2) == "::{":
            continue
        segs = m.group(2).strip(":").split("::")
        if m.group(1) == "crate":
            found.append(segs)
        else:
            # `super::` from a nested file stays inside its own top-level module unless it
            # climbs to the crate root.
            base = here[:-1]
            while segs and segs[0] == "super":
                segs, base = segs[1:], base[:-1]
            found.append(base + segs)
    return found


def graph(src):
    edges = {}
    for file in sorted(src.rglob("*.rs")):
        rel = file.relative_to(src)
        if rel.parts[0] in ("bin",):
            continue
        here = module_path(rel)
        me = node_of(here)
        code = non_test_code(file.read_text(encoding="utf-8"))
        for t in targets(code, here):
            to = node_of(t)
            if to != me:
                edges.setdefault(me, set()).add(to)
    return edges


def cycles(edges):
    """Pairs and longer loops, found as strongly connected components (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(set(edges) | set(chain.from_iterable(edges.values()))):
        if v not in index:
            visit(v)
    return out


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    edges = graph(src)
    for node in sorted(edges):
        print(f"{node:<12} → {', '.join(sorted(edges[node]))}")
    comps = cycles(edges)
    print(f"\n{sum(len(v) for v in edges.values())} edges, {len(comps)} cycle(s)")
    for comp in comps:
        print("  cycle among: " + ", ".join(comp))


if __name__ == "__main__":
    main()
