"""Who may import whom, read from the source (every import statement, function-local ones
included):

    cli/ (command-line programs)
      |          \\
      |        ros/ (the node, ROS tools)
      |          /
    runtime/ (backends, the exported graph and its cache)
      |
    core: model/, data/, pipeline, geometry, sync, metrics, ...

The core and runtime/ never import the programs or the ROS layer, the ROS layer never imports
the programs (a program may drive the node, as posediff-bench --node does), and no group of
modules imports itself round in a cycle."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "posediff_ros"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """posediff_ros modules a file imports (for `from x import y`: x.y when that is a module,
    else x)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                    for a in node.names}
    return {m for m in out if m in MODULES}


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (parsed when a test asks, not at collection:
    every xdist worker collects this file)."""
    return {module_name(p): imported(p) for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("cli", "ros", "runtime") else "core"


def test_every_module_is_read(graph):
    assert {"posediff_ros.pipeline", "posediff_ros.runtime.graph", "posediff_ros.ros.node",
            "posediff_ros.cli.train"} <= set(graph)
    assert "posediff_ros.runtime.graph" in graph["posediff_ros.runtime.fused_backend"]


def test_layers_import_only_downwards(graph):
    allowed = {"core": {"core"}, "runtime": {"core", "runtime"},
               "ros": {"core", "runtime", "ros"}, "cli": {"core", "runtime", "ros", "cli"}}
    protocol = "posediff_ros.runtime.base"  # the Backend protocol the core pipeline calls
    wrong = sorted(f"{m} imports {i}" for m, deps in graph.items() for i in deps
                   if layer(i) not in allowed[layer(m)] and i != protocol)
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles(graph):
    def cycle_from(start, path, seen):
        for nxt in sorted(graph[path[-1]]):
            if nxt == start:
                return path
            if nxt not in seen:
                seen.add(nxt)
                found = cycle_from(start, [*path, nxt], seen)
                if found:
                    return found
        return None

    parents = {m for m in graph if any(o.startswith(m + ".") for o in graph)}
    cycles = []
    for m in sorted(graph):
        found = cycle_from(m, [m], {m})
        # a package importing its own submodules (re-exports in __init__) is no cycle
        if found and not (set(found) & parents):
            cycles.append(" -> ".join(found))
    assert not cycles, "\n".join(cycles)
