"""The shape of the code: no import cycles, no module using another module's private names, the runtime layered
(registry < kernels < methods < functional < layers / toolkit < models), and a runtime that never imports SymPy.

Imports are read from the source (every `import` statement, function-level ones included: a lazy import that
closes a cycle is still a cycle), so these hold whatever runs first.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("runtime", "codegen")

# runtime layers, lowest first: a module may import modules of its own layer or below, never above
RUNTIME_LAYERS = (
    ("runtime", "runtime.registry", "runtime.learned_algebra", "runtime.checks", "runtime.im2col", "runtime.involution"),
    ("runtime.kernels",),
    ("runtime.methods",),
    ("runtime.functional",),
    ("runtime.layers", "runtime.init", "runtime.counting", "runtime.sparsity", "runtime.packing"),
    ("runtime.models", "runtime.fsdp"),
)


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


MODULES = _modules()


def _absolute(module: str, is_pkg: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _package(module: str) -> str:
    path, is_pkg = MODULES[module]
    return module if is_pkg else module.rpartition(".")[0]


def _analyse():
    """(edges, private uses, dangling imports): edges module -> imported project modules (with the packages a submodule import
    initialises); private uses (module, what) for names or modules private to another module / package."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    private: list[tuple[str, str]] = []
    dangling: list[tuple[str, str]] = []
    for mod, (path, is_pkg) in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases: dict[str, str] = {}
        targets: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _absolute(mod, is_pkg, node.level, node.module)
                for a in node.names:
                    full = f"{base}.{a.name}"
                    if full in MODULES:
                        targets.append(full)
                        aliases[a.asname or a.name] = full
                    else:
                        if base in MODULES:
                            targets.append(base)
                        elif base.split(".")[0] in PACKAGES:
                            dangling.append((mod, base))
                        if _private(a.name) and base != mod:
                            private.append((mod, full))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] in PACKAGES and a.name not in MODULES:
                        dangling.append((mod, a.name))
                    if a.name in MODULES:
                        targets.append(a.name)
                        aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and _private(node.attr) and f"{aliases[node.value.id]}.{node.attr}" not in MODULES):
                private.append((mod, f"{aliases[node.value.id]}.{node.attr}"))
        own = _package(mod)
        for t in targets:
            leaf = t.rpartition(".")[2]
            if _private(leaf) and t.rpartition(".")[0] != own:       # a package-private module used from outside
                private.append((mod, t))
            parts = t.split(".")
            for i in range(1, len(parts) + 1):                   # importing a.b.c initialises a and a.b too
                anc = ".".join(parts[:i])
                if anc in MODULES and anc != mod and not (mod == anc or mod.startswith(anc + ".")):
                    edges[mod].add(anc)
    return edges, private, dangling


EDGES, PRIVATE, DANGLING = _analyse()


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _layer(module: str) -> int | None:
    best = None
    for rank, prefixes in enumerate(RUNTIME_LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (rank, len(p))
    return None if best is None else best[0]


def test_the_analysis_sees_imports():
    # guards the guard: known edges of each kind are found
    assert "runtime.registry" in EDGES["runtime.functional"]
    assert "runtime.kernels.cpu" in EDGES["runtime.kernels.choice"]          # a function-level import
    assert "runtime.kernels" in EDGES["runtime.functional"]


def test_every_project_import_resolves():
    assert DANGLING == []


def test_no_import_cycles():
    assert _cycles(EDGES) == []


def test_no_private_names_across_modules():
    assert PRIVATE == []


def test_every_runtime_module_has_a_layer():
    assert [m for m in MODULES if m.startswith("runtime") and _layer(m) is None] == []


def test_runtime_imports_only_downwards():
    upward = [(m, t) for m, ts in EDGES.items() for t in ts
              if m.startswith("runtime") and t.startswith("runtime") and _layer(t) > _layer(m)]
    assert upward == []


def test_runtime_uses_only_the_manifest_contract_of_codegen():
    used = {t for m, ts in EDGES.items() if m.startswith("runtime") for t in ts if t.startswith("codegen")}
    assert used <= {"codegen", "codegen.contract", "codegen.contract.digest", "codegen.contract.locations",
                    "codegen.contract.manifest", "codegen.build", "codegen.spec"}
    # the one call into the build (first use of a built-in algebra when installed) is in the registry
    assert {m for m, ts in EDGES.items() if m.startswith("runtime") and ts & {"codegen.build", "codegen.spec"}} \
        == {"runtime.registry"}


def test_codegen_contract_is_stdlib_and_numpy_only():
    for mod in (m for m in MODULES if m.startswith("codegen.contract")):
        tree = ast.parse(MODULES[mod][0].read_text(encoding="utf-8"))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
        assert names <= set(sys.stdlib_module_names) | {"numpy", "__future__"}, (mod, names)
        project = {t for t in EDGES[mod] if not t.startswith("codegen.contract") and t != "codegen"}
        assert project == set(), (mod, project)


def test_no_runtime_module_imports_sympy():
    # (torch itself may import SymPy, e.g. torch._dynamo when custom ops register; the runtime never does)
    for mod in (m for m in MODULES if m.startswith(("runtime", "codegen.contract"))):
        tree = ast.parse(MODULES[mod][0].read_text(encoding="utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
        assert not any(n.split(".")[0] == "sympy" for n in names), mod


@pytest.mark.slow
def test_running_layers_loads_only_the_contract_of_codegen():
    code = (
        "import sys, warnings, torch\n"
        "from runtime.layers import AlgebraLinear, AlgebraConv2d\n"
        "from runtime import counting, sparsity\n"
        "lin = AlgebraLinear(4, 3, algebra='H')\n"
        "lin(torch.randn(5, 16)).sum().backward()\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('ignore')\n"
        "    with torch.no_grad():\n"
        "        lin(torch.randn(1, 16))\n"
        "AlgebraConv2d(2, 2, 3, algebra='M2R', method='fold')(torch.randn(1, 8, 5, 5))\n"
        "counting.count(lin, torch.randn(1, 16))\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('codegen'))\n"
        "assert set(loaded) <= {'codegen', 'codegen.contract', 'codegen.contract.digest',\n"
        "                       'codegen.contract.locations', 'codegen.contract.manifest'}, loaded\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
