"""The system C++ compiler the runtime compiles generated code with (the CPU kernels and their torch glue).

$ALGEBRANETS_CXX names it (a path or a name on PATH; when set and not found, there is no compiler); otherwise
$CXX, then g++, c++, clang++ on PATH.
"""
from __future__ import annotations

import os
import shutil

__all__ = ["ENV_CXX", "find_compiler", "no_compiler_message"]

ENV_CXX = "ALGEBRANETS_CXX"


def find_compiler() -> str | None:
    """The C++ compiler: $ALGEBRANETS_CXX if set (None when it does not exist), else $CXX, g++, c++, clang++."""
    given = os.environ.get(ENV_CXX)
    if given:
        return shutil.which(given)
    for c in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if c and shutil.which(c):
            return shutil.which(c)
    return None


def no_compiler_message() -> str:
    """Why `find_compiler()` found nothing, in one line."""
    given = os.environ.get(ENV_CXX)
    if given:
        return f"no C++ compiler: {ENV_CXX}={given!r} was not found"
    return "no C++ compiler found (install g++ or set CXX / ALGEBRANETS_CXX)"
