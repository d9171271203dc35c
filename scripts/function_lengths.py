#!/usr/bin/env python3
"""Lists the longest functions of the non-test C++ sources.

A function here is a definition that starts at column 0 and ends at the
next line holding only "}" (clang-format's Google style puts both there),
so member functions defined inside a class body are not counted.

Usage: function_lengths.py [--top N] [--max LINES] [ROOT]
  --max: exit 1 when any function is longer (the list shows which).
"""

import argparse
import os
import re
import sys

FOLDERS = ("base", "models", "storage", "engine", "net", "server", "client",
           "trainer", "bench")
START = re.compile(r"^[A-Za-z_][\w:<>,\s\*&~\[\]]*[\s\*&:~]([\w:~]+|operator\S+)\(")
SKIP = ("namespace", "class ", "struct ", "enum ", "using ", "typedef ",
        "return", "#", "//", "ABSL_FLAG", "ABSL_DECLARE")


def functions(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        m = START.match(line)
        if m and not line.startswith(SKIP) and not line.endswith(";"):
            # The body starts at the first "{" before a ";" at depth 0.
            j = i
            while j < len(lines) and "{" not in lines[j] and not \
                    lines[j].rstrip().endswith(";"):
                j += 1
            if j < len(lines) and "{" in lines[j]:
                if lines[j].rstrip().endswith("}"):  # one-line body
                    yield m.group(1), i + 1, j - i + 1
                    i = j + 1
                    continue
                k = j + 1
                while k < len(lines) and lines[k] != "}":
                    k += 1
                if k < len(lines):
                    yield m.group(1), i + 1, k - i + 1
                    i = k + 1
                    continue
        i += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--max", type=int, default=0)
    ap.add_argument("root", nargs="?", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), ".."))
    a = ap.parse_args()
    found = []
    for folder in FOLDERS:
        top = os.path.join(a.root, folder)
        for dirpath, _, files in os.walk(top):
            for name in files:
                if name.endswith((".cc", ".h")):
                    path = os.path.join(dirpath, name)
                    rel = os.path.relpath(path, a.root)
                    for fn, line, n in functions(path):
                        found.append((n, f"{rel}:{line}", fn))
    found.sort(reverse=True)
    for n, where, fn in found[:a.top]:
        print(f"{n:5d}  {where}  {fn}")
    if a.max:
        over = [f for f in found if f[0] > a.max]
        print(f"{len(over)} functions over {a.max} lines")
        return 1 if over else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
