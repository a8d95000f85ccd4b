#!/usr/bin/env python3
"""Generate lamina's single-header edition, single_include/lamina/lamina.hpp.

    python3 scripts/amalgamate.py            # (re)write single_include/lamina/lamina.hpp
    python3 scripts/amalgamate.py --check    # exit 1 if the committed file is stale

Starting from the umbrella header include/lamina/lamina.hpp, every `#include "..."` (and
`#include <lamina/...>`) that names one of lamina's own headers is replaced by that header's
text, recursively and exactly once per header (the first time it is reached, so each header
lands after the headers it depends on). Relative paths are resolved against the including
file's folder first, then against include/. `#pragma once` lines are dropped (the output has
one of its own). System and third-party includes (`#include <...>`) stay where they are; a
repeated one is dropped when it and its first occurrence are both outside any #if block.
Includes inside comments are left alone. The output depends only on the headers' contents,
so it is byte-for-byte reproducible. Standard library only.
"""

import argparse
import difflib
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE_DIR = ROOT / "include"
LAMINA_DIR = INCLUDE_DIR / "lamina"
UMBRELLA = LAMINA_DIR / "lamina.hpp"
OUTPUT = ROOT / "single_include" / "lamina" / "lamina.hpp"
COMMAND = "python3 scripts/amalgamate.py"

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
PRAGMA_ONCE_RE = re.compile(r"^\s*#\s*pragma\s+once\b")
IF_RE = re.compile(r"^\s*#\s*(if|ifdef|ifndef)\b")
ENDIF_RE = re.compile(r"^\s*#\s*endif\b")


def rel(path):
    """Path relative to the repository root, with forward slashes (stable across OSes)."""
    return Path(os.path.relpath(path, ROOT)).as_posix()


def ends_in_block_comment(line, in_comment):
    """Whether a block comment is still open at the end of `line` (strings are skipped)."""
    i, n = 0, len(line)
    while i < n:
        if in_comment:
            end = line.find("*/", i)
            if end < 0:
                return True
            in_comment, i = False, end + 2
            continue
        c = line[i]
        if line.startswith("//", i):
            return False
        if line.startswith("/*", i):
            in_comment, i = True, i + 2
            continue
        if c in "\"'":
            j = i + 1
            while j < n and line[j] != c:
                j += 2 if line[j] == "\\" else 1
            i = j + 1
            continue
        i += 1
    return in_comment


class Amalgamator:
    def __init__(self):
        self.inlined = set()   # lamina headers already inlined (resolved paths)
        self.system = set()    # <...> includes already emitted outside any #if
        self.out = []
        self.warnings = []

    def resolve(self, current, delim, name):
        """The lamina header that `#include <delim>name` in `current` names, or None."""
        candidates = []
        if delim == '"':
            candidates.append(current.parent / name)
        candidates.append(INCLUDE_DIR / name)
        for c in candidates:
            c = Path(os.path.normpath(c))
            if c.is_file() and (c == LAMINA_DIR or LAMINA_DIR in c.parents):
                return c
        return None

    def add_file(self, path, outer_depth=0):
        path = Path(os.path.normpath(path))
        if path in self.inlined:
            return
        self.inlined.add(path)
        name = rel(path)
        self.out.append(f"// ---- begin {name} ----\n")
        depth = 0
        in_comment = False
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for line in lines:
            directive = not in_comment
            in_comment = ends_in_block_comment(line, in_comment)
            if not directive:
                self.out.append(line + "\n")
                continue
            if PRAGMA_ONCE_RE.match(line):
                continue
            if IF_RE.match(line):
                depth += 1
            elif ENDIF_RE.match(line):
                depth -= 1
            m = INCLUDE_RE.match(line)
            if m:
                delim, inc = m.group(1), m.group(2).strip()
                target = self.resolve(path, delim, inc)
                if target is not None:
                    if outer_depth + depth > 0 and target not in self.inlined:
                        self.warnings.append(
                            f"{name}: {rel(target)} is first included inside an #if block; "
                            "it is inlined there, so later unconditional includes of it see nothing")
                    self.add_file(target, outer_depth + depth)
                    continue
                if delim == '"':
                    if not (path.parent / inc).is_file() and not (INCLUDE_DIR / inc).is_file():
                        self.warnings.append(f"{name}: #include \"{inc}\" not found; the line is kept "
                                             "(the single header will not compile until the file exists)")
                    else:
                        self.warnings.append(f"{name}: #include \"{inc}\" is outside include/lamina; kept as is")
                elif outer_depth + depth == 0:
                    if inc in self.system:
                        continue
                    self.system.add(inc)
            self.out.append(line + "\n")
        # keep files separated by exactly one blank line
        while len(self.out) > 1 and self.out[-1].strip() == "":
            self.out.pop()
        self.out.append(f"// ---- end {name} ----\n\n")


def project_version():
    try:
        text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.search(r"project\s*\(\s*lamina\b[^)]*\bVERSION\s+([0-9][0-9.]*)", text)
    return m.group(1) if m else None


def generate():
    """Return (text, warnings)."""
    a = Amalgamator()
    all_headers = sorted(LAMINA_DIR.rglob("*.hpp"))
    if UMBRELLA.is_file():
        roots = [UMBRELLA]
        source = rel(UMBRELLA)
    else:
        roots = all_headers
        source = "every include/lamina/**/*.hpp (no umbrella header yet)"
        a.warnings.append("include/lamina/lamina.hpp does not exist: inlining every header in path order")
    version = project_version()
    head = [
        "// lamina" + (f" {version}" if version else "") +
        " - header-only C++17 deep learning templates for HPC: single-header edition.\n",
        "//\n",
        "// GENERATED FILE, DO NOT EDIT. It was produced by\n",
        f"//     {COMMAND}\n",
        f"// from {source}.\n",
        "// Edit the headers under include/lamina/ instead and rerun that command.\n",
        "// Needs Eigen 3.4 and xsimd 8 on the include path, like the multi-header library.\n",
        "// SPDX-License-Identifier: MIT (see LICENSE).\n",
        "#pragma once\n",
        "\n",
    ]
    for r in roots:
        a.add_file(r)
    unreached = [rel(h) for h in all_headers if Path(os.path.normpath(h)) not in a.inlined]
    if UMBRELLA.is_file() and unreached:
        a.warnings.append("headers not reachable from include/lamina/lamina.hpp (not in the single header): "
                          + ", ".join(unreached))
    return "".join(head + a.out).rstrip() + "\n", a.warnings


def main():
    parser = argparse.ArgumentParser(description="Generate single_include/lamina/lamina.hpp.")
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the committed single header differs from a fresh one")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT,
                        help="file to write or check (default: single_include/lamina/lamina.hpp)")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print warnings")
    args = parser.parse_args()

    if not LAMINA_DIR.is_dir():
        print(f"amalgamate.py: {LAMINA_DIR} not found", file=sys.stderr)
        return 2
    text, warnings = generate()
    def notes():
        if not args.quiet:
            for w in warnings:
                print(f"amalgamate.py: note: {w}", file=sys.stderr)

    out = args.output if args.output.is_absolute() else Path.cwd() / args.output

    if args.check:
        try:
            current = out.read_text(encoding="utf-8")
        except OSError:
            current = None
        if current == text:
            print(f"amalgamate.py: {rel(out)} is up to date.")
            return 0
        notes()
        if current is None:
            print(f"amalgamate.py: ERROR: {rel(out)} does not exist.", file=sys.stderr)
        else:
            print(f"amalgamate.py: ERROR: {rel(out)} is stale: it differs from what the headers "
                  "under include/lamina/ generate. First differences:", file=sys.stderr)
            diff = list(difflib.unified_diff(current.splitlines(), text.splitlines(),
                                             "committed", "generated", lineterm="", n=1))
            for d in diff[:40]:
                print("    " + d, file=sys.stderr)
            if len(diff) > 40:
                print(f"    ... ({len(diff) - 40} more diff lines)", file=sys.stderr)
        print(f"amalgamate.py: fix: run `{COMMAND}` and commit {rel(out)}.", file=sys.stderr)
        return 1

    notes()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if out.read_text(encoding="utf-8") == text:
            print(f"amalgamate.py: {rel(out)} already up to date.")
            return 0
    except OSError:
        pass
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"amalgamate.py: wrote {rel(out)} ({len(text.splitlines())} lines, "
          f"{len(generate_count_headers(text))} lamina headers).")
    return 0


def generate_count_headers(text):
    return re.findall(r"^// ---- begin ", text, flags=re.M)


if __name__ == "__main__":
    sys.exit(main())
