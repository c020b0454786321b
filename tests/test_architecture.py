"""The package's import graph, read with `ast` (no imports run): no cycle between modules, and the
layers point down (cli -> stages -> model, data -> common); a stage imports another only where it is
built on it (`BUILT_ON`); `infer` never reaches into `train`."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "artemis_cli"
STAGES = ("features", "train", "infer", "judge", "metrics", "ownvideo", "web", "serve", "demo", "lmms_plugin")
# The only stage -> stage imports, each a stage built on another's library (docs/architecture.md):
# the demo runs the whole pipeline; the web page and the server are front ends over the own-video
# `Referrer`; own-video referring extracts one video's clip feature through `features`; `infer`'s
# single-frame mode of VideoRefer-Bench tracks the key frame's box with the own-video trackers; the
# lmms-eval plugin is a front end that answers with `infer`'s inputs and scores with `judge` and `metrics`.
BUILT_ON = {"demo": set(STAGES) - {"demo", "web", "serve", "lmms_plugin"}, "web": {"ownvideo"},
            "serve": {"ownvideo"}, "ownvideo": {"features"}, "infer": {"ownvideo"},
            "lmms_plugin": {"infer", "judge", "metrics"}}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (function-level imports included)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                for alias in node.names:
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[name] = {target for target in found if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    graph = import_graph()
    assert len(graph) > 50 and "artemis_cli.data.benchmarks" in graph["artemis_cli.infer.runner"]
    assert cycles(graph) == []


def test_layers_point_down():
    graph = import_graph()
    wrong = []
    for module, targets in graph.items():
        for target in targets:
            if layer(module) == "infer" and layer(target) == "train":
                wrong.append(f"{module} -> {target}")
            if layer(module) in ("model", "data", "common") and layer(target) in (*STAGES, "cli"):
                wrong.append(f"{module} -> {target}")
            if layer(module) == "common" and layer(target) in ("model", "data"):
                wrong.append(f"{module} -> {target}")
            if (layer(module) in STAGES and layer(target) in STAGES and layer(module) != layer(target)
                    and layer(target) not in BUILT_ON.get(layer(module), ())):
                wrong.append(f"{module} -> {target}")
    assert wrong == []
