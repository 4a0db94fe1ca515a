#!/usr/bin/env python3
"""Module dependency graph of a Rust library crate's source files, and its import cycles.

Usage: node/tools/modcycle.py [--src node/src] [--tests] [--edges] [--max-scc N]
                              [--forbid FROM_PREFIX:TO_PREFIX ...]

One vertex per source file (`lib.rs` is `crate`; `main.rs`, a crate of its own, is left out).
An edge A -> B when A names an item of B by a path: `use crate::…`/`super::…`/`self::…`
trees, paths written inline (`crate::cluster::forward::intercept(…)`), and paths through a
name A brought into scope (`use super::peers; peers::Peers`, or a child module `mod.rs`
declares and calls as `shell::run`). A path to an item a module re-exports (`pub use
view::ClusterHandle` in `cluster/mod.rs`) is followed to the file that defines it, so a
re-export alone does not put a folder's files in one cycle. Declaring a child module
(`pub mod peers;`) is not an edge. Items under `#[cfg(test)]` are left out unless `--tests`.

Prints the strongly connected components with more than one file, largest first (the
first line is the figure: `largest cycle: N files`). `--forbid cluster/:http/` lists every
edge from a file whose path starts with `cluster/` to one starting with `http/` and exits 1
if there is any; `--max-scc N` exits 1 when the largest cycle has more than N files.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import defaultdict

# --- lexing --------------------------------------------------------------------------------


def strip_comments_and_strings(text: str) -> str:
    """Blanks comments, string and char literals (keeping newlines), so paths in them vanish."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
            continue
        if text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
            continue
        m = re.match(r'b?r(#*)"', text[i:i + 8])
        if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            close = '"' + m.group(1)
            j = text.find(close, i + len(m.group(0)))
            j = n if j < 0 else j + len(close)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
            continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
            continue
        if c == "'":
            # A char literal ('a', '\n', '\u{1F600}'), not a lifetime ('a).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:i + 12])
            if m:
                out.append("' '")
                i += len(m.group(0))
                continue
        out.append(c)
        i += 1
    return "".join(out)


def drop_cfg_test(text: str) -> str:
    """Removes items under `#[cfg(test)]` (a `mod tests { … }` or a single item)."""
    out, i = [], 0
    pat = re.compile(r"#\[cfg\(test\)\]")
    while True:
        m = pat.search(text, i)
        if not m:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:m.start()])
        j = m.end()
        # The item ends at its first top-level `;` or at the `}` closing its first `{`.
        depth = 0
        while j < len(text):
            ch = text[j]
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    j += 1
                    break
            elif ch == ";" and depth == 0:
                j += 1
                break
            j += 1
        out.append("\n" * text.count("\n", m.start(), j))
        i = j


# --- use trees ----------------------------------------------------------------------------


def parse_use_tree(s: str) -> list[tuple[list[str], str | None]]:
    """`a::{b, c::d as e, f::*}` → [(['a','b'], 'b'), (['a','c','d'], 'e'), (['a','f','*'], None)]."""
    s = re.sub(r"\s+", "", s)
    pos = 0

    def tree(prefix: list[str]) -> list[tuple[list[str], str | None]]:
        nonlocal pos
        segs = list(prefix)
        while True:
            if s.startswith("{", pos):
                pos += 1
                res = []
                while not s.startswith("}", pos):
                    res += tree(segs)
                    if s.startswith(",", pos):
                        pos += 1
                pos += 1
                return res
            m = re.compile(r"\*|[A-Za-z_][A-Za-z0-9_]*").match(s, pos)
            if not m:
                return []
            pos = m.end()
            segs.append(m.group(0))
            if s.startswith("::", pos):
                pos += 2
                continue
            if s.startswith("as", pos) and re.compile(r"as[A-Za-z_]").match(s, pos):
                pos += 2
                m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(s, pos)
                pos = m.end()
                return [(segs, m.group(0))]
            last = segs[-1]
            if last == "*":
                return [(segs, None)]
            if last == "self":
                return [(segs[:-1], segs[-2] if len(segs) > 1 else None)]
            return [(segs, last)]

    return tree([])


USE_RE = re.compile(r"(?:^|[;{}\s])(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", re.M)
MOD_RE = re.compile(r"(?:^|[;{}\s])(?:pub(?:\([^)]*\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*;", re.M)
PATH_RE = re.compile(r"(?<![A-Za-z0-9_:])([A-Za-z_][A-Za-z0-9_]*(?:\s*::\s*[A-Za-z_][A-Za-z0-9_]*)+)")

# --- the crate -----------------------------------------------------------------------------


class Module:
    def __init__(self, path: tuple[str, ...], file: str, text: str):
        self.path = path  # ('cluster', 'peers')
        self.file = file  # 'cluster/peers.rs'
        self.text = text
        self.children: set[str] = set(MOD_RE.findall(text))
        # name -> absolute path, for `use` items (private and public)
        self.uses: dict[str, list[str]] = {}
        self.globs: list[list[str]] = []
        self.reexports: dict[str, list[str]] = {}
        self.pub_globs: list[list[str]] = []


def rel_module_path(rel: str) -> tuple[str, ...] | None:
    parts = rel[:-3].split("/")
    if parts == ["lib"]:
        return ()
    if parts == ["main"]:
        return None
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def load(src: str, tests: bool) -> dict[tuple[str, ...], Module]:
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            full = os.path.join(root, f)
            rel = os.path.relpath(full, src).replace(os.sep, "/")
            mp = rel_module_path(rel)
            if mp is None or "bin" in mp[:1]:
                continue
            with open(full, encoding="utf-8") as fh:
                text = strip_comments_and_strings(fh.read())
            if not tests:
                text = drop_cfg_test(text)
            mods[mp] = Module(mp, rel, text)
    return mods


def absolute(mod: Module, segs: list[str]) -> list[str] | None:
    """A path as written in `mod`, made absolute from the crate root (None: another crate)."""
    head = segs[0]
    if head == "crate":
        return segs[1:]
    if head in ("self", "super"):
        base = list(mod.path)
        rest = segs
        while rest and rest[0] in ("self", "super"):
            if rest[0] == "super":
                if not base:
                    return None
                base.pop()
            rest = rest[1:]
        return base + rest
    if head in mod.children:
        return list(mod.path) + segs
    if head in mod.uses:
        return mod.uses[head] + segs[1:]
    return None


def collect_uses(mods: dict[tuple[str, ...], Module]) -> None:
    for m in mods.values():
        for vis, tree in USE_RE.findall(m.text):
            for segs, alias in parse_use_tree(tree):
                if not segs:
                    continue
                if segs[0] not in ("crate", "self", "super") and segs[0] not in m.children:
                    continue  # another crate (or a name brought in by another use: rare)
                a = absolute(m, segs)
                if a is None:
                    continue
                if a and a[-1] == "*":
                    (m.pub_globs if vis else m.globs).append(a[:-1])
                    continue
                if alias:
                    m.uses[alias] = a
                    if vis:
                        m.reexports[alias] = a


def resolve(mods: dict[tuple[str, ...], Module], path: list[str], depth: int = 0) -> tuple[str, ...]:
    """The module (file) that defines what an absolute path names: the longest prefix that is
    a file, with re-exports followed."""
    best: tuple[str, ...] = ()
    for k in range(len(path), -1, -1):
        if tuple(path[:k]) in mods:
            best = tuple(path[:k])
            break
    rest = path[len(best):]
    if rest and depth < 16:
        m = mods[best]
        item = rest[0]
        if item in m.reexports:
            return resolve(mods, m.reexports[item] + rest[1:], depth + 1)
        for g in m.pub_globs:
            inner = resolve(mods, g + [item], depth + 1)
            if inner != tuple(g) or tuple(g + [item]) in mods:
                return inner
    return best


def edges(mods: dict[tuple[str, ...], Module]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for m in mods.values():
        targets = []
        # use items
        for a in list(m.uses.values()) + m.globs + m.pub_globs:
            targets.append(a)
        # inline paths (outside use statements too; harmless duplicates)
        for raw in PATH_RE.findall(m.text):
            segs = [s.strip() for s in raw.split("::")]
            a = absolute(m, segs)
            if a is not None:
                targets.append(a)
        for a in targets:
            t = resolve(mods, a)
            if t in mods and mods[t].file != m.file:
                out[m.file].add(mods[t].file)
        out.setdefault(m.file, set())
    return out


def sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    result = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                result.append(sorted(comp))
    return result


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default=os.path.join(here, "..", "src"))
    ap.add_argument("--tests", action="store_true", help="count #[cfg(test)] items too")
    ap.add_argument("--edges", action="store_true", help="print every edge")
    ap.add_argument("--max-scc", type=int, default=None)
    ap.add_argument("--forbid", action="append", default=[], metavar="FROM:TO")
    args = ap.parse_args()

    mods = load(args.src, args.tests)
    collect_uses(mods)
    graph = edges(mods)
    comps = sorted((c for c in sccs(graph) if len(c) > 1), key=lambda c: (-len(c), c))
    largest = len(comps[0]) if comps else 1
    print(f"files: {len(graph)}, edges: {sum(len(v) for v in graph.values())}")
    print(f"largest cycle: {largest} files")
    for c in comps:
        print(f"  cycle of {len(c)}: {' '.join(c)}")
    if args.edges:
        for a in sorted(graph):
            for b in sorted(graph[a]):
                print(f"  {a} -> {b}")
    bad = 0
    for rule in args.forbid:
        frm, _, to = rule.partition(":")
        hits = [(a, b) for a in sorted(graph) for b in sorted(graph[a])
                if a.startswith(frm) and b.startswith(to)]
        print(f"forbidden {frm}* -> {to}*: {len(hits)}")
        for a, b in hits:
            print(f"  {a} -> {b}")
        bad += len(hits)
    if args.max_scc is not None and largest > args.max_scc:
        print(f"largest cycle {largest} > --max-scc {args.max_scc}", file=sys.stderr)
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
