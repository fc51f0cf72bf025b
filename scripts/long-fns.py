#!/usr/bin/env python3
"""Lists Rust functions longer than N lines (the `fn` line to the closing brace), longest first.

    scripts/long-fns.py [-n 80] [--tests] [--count] [PATH ...]   (default PATH: src)

Test code (`#[cfg(test)] mod … { }` blocks and `#[test]`/`#[tokio::test]` functions) is left out
unless `--tests` is given. Comments, strings and char literals are blanked before braces are
matched, so a `{` inside a string or a doc comment does not shift a function's end.
"""

import argparse
import os
import re
import sys


def blank_literals(text):
    """The text with comments, strings and char literals replaced by spaces (newlines kept)."""
    out = []
    i, n = 0, len(text)

    def blank(s):
        return "".join("\n" if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif m := re.compile(r'b?r(#*)"').match(text, i):
            if i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
                out.append(c)
                i += 1
                continue
            close = '"' + m.group(1)
            j = text.find(close, m.end())
            j = n if j < 0 else j + len(close)
            out.append(blank(text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(blank(text[i : j + 1]))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a, 'static).
            if i + 1 < n and text[i + 1] == "\\":
                j = text.find("'", i + 2)
                j = n if j < 0 else j + 1
            elif i + 2 < n and text[i + 2] == "'":
                j = i + 3
            else:
                out.append(c)
                i += 1
                continue
            out.append(blank(text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(code, open_at):
    depth = 0
    for j in range(open_at, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(code) - 1


def test_regions(code):
    """(start, end) offsets of `#[cfg(test)]` modules."""
    regions = []
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", code):
        regions.append((m.start(), matching_brace(code, m.end() - 1)))
    return regions


FN = re.compile(r"\bfn\s+([A-Za-z_]\w*)")
TEST_ATTR = re.compile(r"#\[(tokio::)?test\b[^\]]*\]\s*(#\[[^\]]*\]\s*)*(pub(\([^)]*\))?\s+)?(async\s+)?$")


def functions(code):
    """(name, first line, last line, start offset) of every function with a body."""
    line_of = lambda off: code.count("\n", 0, off) + 1
    for m in FN.finditer(code):
        j = m.end()
        while j < len(code) and code[j] not in "{;":
            j += 1
        if j >= len(code) or code[j] == ";":
            continue  # a declaration without a body (trait method, extern)
        end = matching_brace(code, j)
        yield m.group(1), line_of(m.start()), line_of(end), m.start()


def rust_files(paths):
    for p in paths:
        if os.path.isfile(p):
            yield p
            continue
        for root, dirs, files in os.walk(p):
            dirs.sort()
            for f in sorted(files):
                if f.endswith(".rs"):
                    yield os.path.join(root, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=80, help="report functions longer than this (lines)")
    ap.add_argument("--tests", action="store_true", help="include test code")
    ap.add_argument("--count", action="store_true", help="print only the number found")
    ap.add_argument("paths", nargs="*", default=["src"])
    args = ap.parse_args()

    found = []
    for path in rust_files(args.paths):
        with open(path, encoding="utf-8") as f:
            code = blank_literals(f.read())
        skip = [] if args.tests else test_regions(code)
        for name, first, last, start in functions(code):
            if any(a <= start <= b for a, b in skip):
                continue
            if not args.tests and TEST_ATTR.search(code[max(0, start - 300) : start]):
                continue
            length = last - first + 1
            if length > args.n:
                found.append((length, f"{path}:{first}", name))
    found.sort(key=lambda f: (-f[0], f[1]))
    if args.count:
        print(len(found))
        return 0
    for length, where, name in found:
        print(f"{length:5}  {where}  {name}")
    print(f"{len(found)} functions longer than {args.n} lines", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
