#!/usr/bin/env python3
"""Every file a comment names must exist: comments in lamina's sources point readers at other
files, and a stale pointer sends them nowhere.

Scans the comments (// and # lines, and /* */ blocks) of the tracked C++, CMake, shell and
Python sources for names with a file extension (.hpp .cpp .md .cmake .sh .py .txt; .h names are other
projects' C headers) and
checks that each resolves: relative to the commenting file's folder, to include/, include/lamina/
or the repository root (names under ../shared/, beside the checkout, are not checked), or, for a bare file name, to some file of that name in the repository.
Names of other projects' files are listed in EXTERNAL. Exits 1 listing every dangling name."""
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", ".."))
EXTERNAL = {"Kokkos_Core.hpp", "catch.hpp", "KokkosBlas3_gemm.hpp", "Kokkos_Cuda_Instance.hpp",
            "Kokkos_Cuda_Half.hpp", "Kokkos_CudaSpace.cpp", "KokkosConfig.cmake", "CMakeLists.txt",
            "KokkosKernelsConfig.cmake", "torch.h", "zlib.h", "requirements.txt"}
SOURCE_EXT = (".hpp", ".cpp", ".h", ".cmake", ".sh", ".py")
NAME = re.compile(r"(?<![\w.<-])((?:\.{1,2}/|[\w-]+/)*[\w-]+\.(?:hpp|cpp|md|cmake|sh|py|txt))\b")


def tracked_files():
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        files = out.split()
    except (OSError, subprocess.CalledProcessError):
        files = [os.path.relpath(os.path.join(d, f), ROOT) for d, _, fs in os.walk(ROOT) for f in fs]
    # untracked sources being added count too
    try:
        out = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
        files += out.split()
    except (OSError, subprocess.CalledProcessError):
        pass
    return sorted(set(files))


def comments(path, text):
    """(line number, comment text) pairs."""
    cpp = path.endswith((".hpp", ".cpp", ".h"))
    in_block = False
    for no, line in enumerate(text.splitlines(), 1):
        if cpp:
            if in_block:
                end = line.find("*/")
                yield no, line if end < 0 else line[:end]
                in_block = end < 0
                continue
            i = line.find("//")
            j = line.find("/*")
            if i >= 0 and (j < 0 or i < j):
                # skip "//" inside a string literal (e.g. "http://")
                if line[:i].count('"') % 2 == 0:
                    yield no, line[i + 2:]
            elif j >= 0 and line[:j].count('"') % 2 == 0:
                end = line.find("*/", j)
                yield no, line[j + 2:] if end < 0 else line[j + 2:end]
                in_block = end < 0
        else:
            s = line.lstrip()
            if s.startswith("#") and not s.startswith("#!") and not s.startswith("#include"):
                yield no, s[1:]


def main():
    files = tracked_files()
    basenames = {os.path.basename(f) for f in files}
    fileset = set(files)
    bad = []
    for rel in files:
        if not rel.endswith(SOURCE_EXT) or rel.startswith(("single_include/", ".git")):
            continue
        try:
            text = open(os.path.join(ROOT, rel), encoding="utf-8").read()
        except (OSError, UnicodeDecodeError):
            continue
        here = os.path.dirname(rel)
        for no, c in comments(rel, text):
            for name in NAME.findall(c):
                base = os.path.basename(name)
                if base in EXTERNAL or "*" in name or "<" in name:
                    continue
                candidates = [os.path.normpath(os.path.join(here, name)), os.path.normpath(name),
                              os.path.normpath(os.path.join("include", name)),
                              os.path.normpath(os.path.join("include/lamina", name))]
                if name.startswith("../shared/"):  # beside the checkout, not part of it
                    continue
                if any(c in fileset or os.path.isdir(os.path.join(ROOT, c)) for c in candidates):
                    continue
                if "/" not in name and base in basenames:
                    continue
                bad.append(f"{rel}:{no}: names '{name}', which does not exist")
    if bad:
        print("comments name files that do not exist:")
        print("\n".join(bad))
        return 1
    print(f"check_file_references: every file named in the comments of {len(files)} files exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
