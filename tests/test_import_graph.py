"""The package's layering: stage modules (zfutils/stages/, one per notebook) sit on top of the
library; no library module imports a stage module, only the report reads other stages' modules,
and no two modules import each other, even through imports inside functions."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from zfutils import paths

PACKAGE = Path(__file__).resolve().parent.parent / "zfutils"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path) -> set[str]:
    """Every zfutils module `path` imports, at the top or inside a function: `from a.b import c`
    counts as a.b.c when c is a module, else as a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "zfutils"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "zfutils":
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(MODULES)
            found |= subs or {node.module}
            if len(subs) < len(node.names):
                found.add(node.module)
    return found - {module_name(path)}


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}
STAGE_MODULES = {name for name in MODULES if name.startswith("zfutils.stages.")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph`, as the modules along it, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_is_read_from_every_module():
    assert {"zfutils.stages.finetune_classifier", "zfutils.train.classifier_setup", "zfutils.tables"} <= set(MODULES)
    assert "zfutils.train.classifier_setup" in GRAPH["zfutils.stages.finetune_classifier"]
    assert "zfutils.models.registry" in GRAPH["zfutils.models.aotgan"]
    assert "zfutils.stages.vary_training_size" in GRAPH["zfutils.stages.report"]  # an import inside a function


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None, f"import cycle: {' -> '.join(find_cycle(GRAPH))}"


def test_find_cycle_finds_one_through_a_function_level_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) is None


def test_no_library_module_imports_a_stage_module():
    upward = {m: sorted(GRAPH[m] & STAGE_MODULES) for m in MODULES if m not in STAGE_MODULES}
    assert {m: s for m, s in upward.items() if s} == {}


def test_only_the_report_reads_other_stage_modules():
    across = {m: sorted(GRAPH[m] & STAGE_MODULES) for m in STAGE_MODULES if m != "zfutils.stages.report"}
    assert {m: s for m, s in across.items() if s} == {}


def test_each_stage_notebook_has_its_stage_module_and_imports_it():
    notebooks = sorted(p.stem for p in paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    assert tuple(notebooks) == paths.STAGES  # the stage names live once, and match the notebooks
    for stage in paths.STAGES[1:]:  # stage 01's work is zfutils.data.build's
        short = stage.split("_", 1)[1]
        assert f"zfutils.stages.{short}" in MODULES, f"no zfutils/stages/{short}.py for notebooks/{stage}.ipynb"
        text = (paths.NOTEBOOKS_DIR / f"{stage}.ipynb").read_text()
        assert "from zfutils.stages import" in text and short in text


def test_importing_the_library_loads_no_stage_module():
    """At run time too: import every library module in one fresh process."""
    library = [m for m in MODULES if m not in STAGE_MODULES and not m.endswith("__main__")]
    code = ("import importlib, sys\n"
            f"for m in {library!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.startswith('zfutils.stages.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("name", ["zfutils.stages.finetune_classifier", "zfutils.stages.report"])
def test_stage_modules_import_alone(name):
    out = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=300,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr[-2000:]
