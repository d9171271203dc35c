#!/usr/bin/env python3
"""Fails when an #include crosses the project's layers the wrong way.

    base <- models <- storage, engine <- server
    base <- net (gRPC channels) <- client, server
    client and trainer stand on models, net and proto; never on server,
    engine or storage. bench and tests may use everything.

Also keeps heavy dependencies out of the low layers: base has no Eigen, gRPC
or protobuf; models has no gRPC or protobuf; engine and storage have no gRPC.

Usage: check_layers.py [SOURCE_DIR]   (exit 0: clean; 1: every bad edge listed)
"""

import os
import re
import sys

# Folder -> the project folders its files may include.
ALLOWED = {
    "base": {"base"},
    "models": {"base", "models"},
    "storage": {"base", "models", "storage"},
    "engine": {"base", "models", "storage", "engine", "proto"},
    "net": {"base", "net"},
    "server": {"base", "models", "storage", "engine", "net", "proto",
               "server"},
    "client": {"base", "models", "net", "proto", "client"},
    "trainer": {"base", "models", "trainer"},
    # Fuzz targets drive the parsers below the server, never gRPC.
    "fuzz": {"base", "models", "storage", "engine", "fuzz"},
}
# Folder -> include prefixes of third-party code it must not use.
FORBIDDEN_THIRD_PARTY = {
    "base": ("Eigen/", "grpc", "google/protobuf", "proto/"),
    "models": ("grpc", "google/protobuf", "proto/"),
    "storage": ("grpc",),
    "engine": ("grpc",),
}
PROJECT_FOLDERS = set(ALLOWED) | {"proto", "bench", "tests"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..")
    problems = []
    checked = 0
    for folder in sorted(ALLOWED):
        top = os.path.join(root, folder)
        if not os.path.isdir(top):
            continue
        for dirpath, _, files in os.walk(top):
            for name in sorted(files):
                if not name.endswith((".h", ".cc")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8") as f:
                    for number, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        checked += 1
                        target = m.group(1)
                        head = target.split("/", 1)[0]
                        if head in PROJECT_FOLDERS and "/" in target:
                            if head not in ALLOWED[folder]:
                                problems.append(
                                    f"{rel}:{number}: {folder}/ must not "
                                    f"include {target}")
                        for bad in FORBIDDEN_THIRD_PARTY.get(folder, ()):
                            if target.startswith(bad):
                                problems.append(
                                    f"{rel}:{number}: {folder}/ must not "
                                    f"depend on {target}")
    for p in problems:
        print(p)
    print(f"check_layers: {checked} includes checked, "
          f"{len(problems)} against the layering")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
