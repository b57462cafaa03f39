"""Errors raised while defining, checking or building algebras.

Every error names the spec file and the algebra when they are known, so the CLI can print one clear line.
"""
from __future__ import annotations


class SpecError(Exception):
    """A problem in an algebra specification (bad input, false claim, unverifiable scheme)."""

    def __init__(self, message: str, *, algebra: str | None = None, file: str | None = None):
        super().__init__(message)
        self.message = message
        self.algebra = algebra
        self.file = file

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.algebra:
            where.append(f"algebra {self.algebra}")
        prefix = ": ".join(where)
        text = f"{prefix}: {self.message}" if prefix else self.message
        return " ".join(part.strip() for part in text.splitlines())      # always one line


class BuildError(Exception):
    """The build cannot proceed (I/O problem, unusable output folder) or produced an invalid file (a generator bug)."""
