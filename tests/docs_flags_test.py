#!/usr/bin/env python3
"""Checks docs/operations/configuration.md against recsys-server's flags.

Runs `recsys-server --helpfull`, keeps the flags defined in the server's own
sources (helpfull groups flags under "Flags from <source file>:"; Abseil's
and gRPC's own flags, such as --flagfile or --fromenv, are left out), and
checks both ways:
  - every such flag is in the flag table of configuration.md as `--name`;
  - every `--name` in that table is a flag of the binary.
Dashes and underscores in names are the same flag (Abseil accepts both).

  python3 tests/docs_flags_test.py --server build/release/server/recsys-server --docs docs

Exit 0 when they agree, 1 listing the differences (2 when the binary cannot
be run or the page cannot be read).
"""

import argparse
import os
import re
import subprocess
import sys

# A flag is the server's own when the file that defines it lies in one of
# these folders (or is the client's security flags, which the server would
# share if it linked them).
OWN_SOURCE = re.compile(
    r"(^|/)(server|engine|storage|models|base)/|(^|/)client/security_flags")
# A group header and a flag line of --helpfull. Flags sit at four spaces;
# wrapped descriptions at six, so "--replica_of))" in a description never
# matches.
GROUP = re.compile(r"^\s*Flags from (.+):\s*$")
FLAG = re.compile(r"^    --([A-Za-z0-9_]+)\b")
DOC_FLAG = re.compile(r"--([A-Za-z0-9][A-Za-z0-9_-]*)")


def fail(message):
    print("docs_flags_test: " + message, file=sys.stderr)
    sys.exit(2)


def normalize(name):
    return name.replace("-", "_")


def server_flags(binary):
    """The flags defined in the server's own sources, by normalized name."""
    try:
        run = subprocess.run([binary, "--helpfull"], capture_output=True,
                             text=True, timeout=60)
    except OSError as e:
        fail(f"cannot run {binary}: {e}")
    except subprocess.TimeoutExpired:
        fail(f"{binary} --helpfull did not finish")
    # Abseil exits 1 after printing help; the output is what counts.
    text = run.stdout + run.stderr
    flags = {}
    groups = []
    source = None
    for line in text.splitlines():
        group = GROUP.match(line)
        if group:
            source = group.group(1)
            groups.append(source)
            continue
        flag = FLAG.match(line)
        if flag and source is not None and OWN_SOURCE.search(source):
            flags[normalize(flag.group(1))] = source
    if not groups:
        fail(f"no 'Flags from' groups in the output of {binary} --helpfull:"
             f"\n{text[:2000]}")
    if not flags:
        fail("no flag comes from the server's sources; groups seen: " +
             ", ".join(groups))
    return flags


def table_flags(page):
    """The --names in the first column of the page's flag tables."""
    try:
        with open(page, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        fail(f"cannot read {page}: {e}")
    flags = {}
    in_table = False
    for number, line in enumerate(lines, 1):
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not in_table:
            # A table whose first column is headed "flag".
            in_table = cells and cells[0].lower() == "flag"
            continue
        if set(cells[0]) <= set("-: "):
            continue  # the separator row
        for name in DOC_FLAG.findall(cells[0]):
            flags.setdefault(normalize(name), number)
    return flags


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", required=True,
                        help="the recsys-server binary")
    parser.add_argument("--docs", required=True,
                        help="the docs directory (holding operations/)")
    args = parser.parse_args()

    page = os.path.join(args.docs, "operations", "configuration.md")
    binary = server_flags(args.server)
    documented = table_flags(page)
    if not documented:
        fail(f"no flag table (first column 'flag') in {page}")

    problems = []
    for name in sorted(set(binary) - set(documented)):
        problems.append(f"--{name} (defined in {binary[name]}) is not in the "
                        f"flag table of {page}")
    for name in sorted(set(documented) - set(binary)):
        problems.append(f"{page}:{documented[name]}: --{name} is not a flag "
                        f"of {args.server}")
    if problems:
        print(f"docs_flags_test: {len(problems)} problem(s):")
        for p in problems:
            print("  " + p)
        return 1
    print(f"docs_flags_test: {len(binary)} flags of {args.server} and the "
          f"flag table of {page} agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
