"""The package's shape: every import goes down the data flow, and no module imports itself back.

Floors, lowest first (docs/architecture.md): a module may import its own floor and lower ones only. Lazy imports
inside functions count the same as top-level ones.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "comparator"

FLOORS = [
    # plain data and helpers every stage uses
    {"errors", "events", "fileio", "jsondata", "variant", "result", "caches", "scratch"},
    {"graph"},  # the model and its rewritten copies
    {"backends"},  # executors: open a model, run it
    {"run"},  # worker processes and what they leave behind
    {"measure"},  # metrics and analyses over the runs' tensors
    {"report"},  # views of a Report: import no compute module
    {"api", "arguments", "assemble", "windows", "workspace"},  # compare(): graph -> run -> measure; its checks;
    # the Report; windows; where its files go
    {"gate", "audit"},  # bundles, policies, verdicts over api's results; invariance audits
    {"testing", "fleet"},  # pytest helpers over the gate; fleet runs: bundles captured on Ray nodes, their matrix
    {"cli", "worker", "__init__"},  # entry points
]


def stage(module: str) -> str:
    """`comparator.graph.tap` -> `graph`; `comparator` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def floor(module: str) -> int:
    name = stage(module)
    return next(i for i, names in enumerate(FLOORS) if name in names)


def modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every comparator module that `module` imports, top level or inside a function."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("comparator"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("comparator"))
    return {m for m in found if m in known and m != module}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def test_every_module_has_a_floor():
    assert all(floor(m) >= 0 for m in modules())


def test_no_module_imports_a_higher_floor():
    upward = [f"{m} -> {t}" for m, targets in graph().items() for t in targets
              if floor(t) > floor(m) and not (stage(m) == "__init__" and m == "comparator")]
    assert upward == []


def test_no_import_cycles():
    edges = graph()
    # A package's __init__ re-exporting its own modules is not a cycle through the package.
    for m, targets in edges.items():
        edges[m] = {t for t in targets if not m.startswith(t + ".")}
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_views_import_no_compute_module():
    compute = ("comparator.measure", "comparator.run", "comparator.backends", "comparator.graph")
    assert [f"{m} -> {t}" for m, ts in graph().items() if m.startswith("comparator.report")
            for t in ts if t.startswith(compute)] == []


def test_the_check_sees_imports(tmp_path):
    # The walker must resolve relative imports from modules and from packages, or the tests above prove nothing.
    edges = graph()
    assert "comparator.run.record" in edges["comparator.measure.facts"]
    assert "comparator.errors" in edges["comparator.backends.torch.backend"]
    assert "comparator.backends.torch.backend" in edges["comparator.backends.torch"]
