"""Small matplotlib helpers the result scripts share (examples.study, examples.pareto)."""
from __future__ import annotations

__all__ = ["compact", "log_x"]


def compact(v: float, _pos=None) -> str:
    """2000 -> "2k", 5e6 -> "5M" (axis labels; usable as a matplotlib FuncFormatter)."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def log_x(ax) -> None:
    """A logarithmic x axis with 1-2-5 ticks and compact labels (2k, 5M)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(compact))
    ax.xaxis.set_minor_formatter(NullFormatter())
