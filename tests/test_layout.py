"""The house's layout: the networks' parts in models/networks/, and no import circle in models/ or service/.

Imports are read from the source (every `import`, at module level or inside a function), so a circle that a
deferred import hides still counts: it is a dependency in both directions all the same.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "service")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _with_parents(name: str, known: dict[str, Path]) -> set[str]:
    """Importing a.b.c runs a/__init__.py and a/b/__init__.py first."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & known.keys()


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    edges |= _with_parents(alias.name, known)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                edges |= _with_parents(node.module, known)
                for alias in node.names:  # `from models import files` imports a module
                    edges |= _with_parents(f"{node.module}.{alias.name}", known)
        graph[name] = edges - {name} - _with_parents(name, known)  # a package's own __init__ is no circle
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_in_models_or_service():
    assert circles(import_graph()) == []


def test_circles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]


def test_the_inference_layer_is_imported_by_neither_files_nor_networks():
    graph = import_graph()
    for name, edges in graph.items():
        if name.startswith(("models.files", "models.networks")):
            assert not {e for e in edges if e.startswith("models.inference")}, name


def test_the_networks_parts_live_in_models_networks():
    flat = {p.stem for p in (ROOT / "models").glob("*.py")}
    assert not flat & {"coupling", "haar", "latent_codec", "rescaler", "invertible_rescaler", "lr_restorer"}
    assert {"coupling", "haar", "latent_codec", "rescaler"} <= {p.stem for p in (ROOT / "models/networks").glob("*.py")}


def test_models_keeps_only_its_entry_points_flat():
    """Every other module belongs to a layer: networks, files, store, training, inference, evaluation."""
    assert {p.stem for p in (ROOT / "models").glob("*.py")} == {"__init__", "__main__", "cli"}
