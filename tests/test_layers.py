"""The package's layers: no import cycle, and the light modules and commands import no torch or
Lightning.

``python tests/test_layers.py`` prints the import graph's cycles (top-level imports; function-level
ones counted apart) and the modules whose top-level imports reach neither torch nor Lightning.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "wmbench"
HEAVY = ("torch", "lightning")


def import_graph() -> dict[str, dict[str, set[str]]]:
    """Module -> the modules (of wmbench, or top-level third-party names) it imports, by kind:
    ``top`` (when it is imported), ``deferred`` (inside functions) and ``typing`` (in ``if
    TYPE_CHECKING:`` blocks, which never run)."""
    files = {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }
    graph: dict[str, dict[str, set[str]]] = {"top": {}, "deferred": {}, "typing": {}}

    def targets(node: ast.Import | ast.ImportFrom) -> set[str]:
        if isinstance(node, ast.Import):
            return {a.name if a.name.startswith("wmbench") else a.name.split(".")[0]
                    for a in node.names}
        base = node.module or ""
        if not base.startswith("wmbench"):
            return {base.split(".")[0]}
        return {f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names}

    def visit(node: ast.AST, module: str, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                graph[kind][module] |= targets(child)
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit(child, module, "typing")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, module, "deferred" if kind == "top" else kind)
            else:
                visit(child, module, kind)

    for name, path in sorted(files.items()):
        for edges in graph.values():
            edges[name] = set()
        visit(ast.parse(path.read_text()), name, "top")
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            component.append(v)
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            connect(v)
    return found


def light_modules(top: dict[str, set[str]]) -> list[str]:
    """Modules whose top-level imports, followed through wmbench, reach neither torch nor Lightning.
    """

    def reaches(module: str, seen: set[str]) -> set[str]:
        out = set(top.get(module, ()))
        for w in top.get(module, ()):
            if w in top and w not in seen:
                seen.add(w)
                out |= reaches(w, seen)
        return out

    return sorted(m for m in top if not set(HEAVY) & reaches(m, {m}))


def test_no_import_cycle():
    graph = import_graph()
    assert cycles(graph["top"]) == []
    every = {m: set().union(*(edges[m] for edges in graph.values())) for m in graph["top"]}
    assert cycles(every) == []  # nor through imports inside functions or for type checking


def test_the_report_run_directory_suite_planning_and_config_are_light():
    light = light_modules(import_graph()["top"])
    for module in (
        "wmbench.rundir",
        "wmbench.run_config",
        "wmbench.configio",
        "wmbench.errors",
        "wmbench.cli",
        "wmbench.suite.spec",
        "wmbench.suite.plan",
        "wmbench.suite.gpus",
        "wmbench.runtime.schedule",
        "wmbench.runtime.env_pool",  # its env worker processes import no torch
        "wmbench.agents.config",
        "wmbench.diagnostics.config",
        "wmbench.report.store",
        "wmbench.report.stats",
        "wmbench.report.plots",
        "wmbench.report.diagnostics",
        "wmbench.report.objectives",
        "wmbench.report.markdown",
    ):
        assert module in light, module


LIGHT_COMMANDS = """
import sys

BLOCKED = {"torch", "lightning"}


class Blocker:  # importing a blocked package raises ImportError
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")


sys.meta_path.insert(0, Blocker())
from wmbench.cli import main


def run(*argv):
    try:
        code = main(list(argv))
    except SystemExit as exit:  # --help
        code = exit.code
    assert code == 0, (argv, code)


import wmbench.rundir, wmbench.run_config, wmbench.suite.spec, wmbench.suite.plan
import wmbench.report.store, wmbench.report.stats, wmbench.report.plots, wmbench.report.diagnostics
run("--help")
run("report", "runs/s", "-o", "report", "--reps", "10")
BLOCKED.discard("torch")  # the objectives are torch modules; Lightning stays out
run("objectives")
run("suite", "run", "suite.yaml", "--dry-run")
run("suite", "status", "suite.yaml")
print("ok")
"""


def test_light_modules_and_commands_load_no_torch_or_no_lightning(tmp_path):
    """Without torch: the light modules, ``--help`` and ``report``. Without Lightning:
    ``objectives``, ``suite run --dry-run`` and ``suite status``. In a fresh interpreter where
    importing them raises ImportError."""
    from wmbench.report.store import collect, run_row, runs_frame, save
    from wmbench.rundir import write_status

    (tmp_path / "suite.yaml").write_text("name: s\nobjectives: [reward]\ntasks: [toy:reach]\n"
                                         "seeds: [0, 1]\n")
    dirs = [tmp_path / "runs" / "s" / f"reward-toy_reach-s{seed}" for seed in (0, 1)]
    for seed, run_dir in enumerate(dirs):
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(f"objective: reward\nseed: {seed}\n"
                                             "env: {task: 'toy:reach'}\n")
        (run_dir / "metrics.csv").write_text(f"env_frames,wall_time,eval/return\n0,1.0,{seed}\n")
        write_status(run_dir, "done", eval_return=float(seed))
    rows = [run_row(d, "s", "reward", "toy:reach", seed) for seed, d in enumerate(dirs)]
    save(tmp_path / "runs" / "s", collect(dirs, "s"), runs_frame(rows))
    (tmp_path / "light.py").write_text(LIGHT_COMMANDS)
    env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
    done = subprocess.run([sys.executable, "light.py"], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.endswith("ok\n"), done.stderr
    assert (tmp_path / "report" / "report.md").exists() and "reward-toy_reach-s1" in done.stdout


if __name__ == "__main__":
    graph = import_graph()
    top = graph["top"]
    for kind, edges in graph.items():
        count = sum(len([w for w in ws if w in top]) for ws in edges.values())
        print(f"{kind:8s} imports between the {len(top)} modules of wmbench: {count}")
    print(f"cycles among top-level imports: {len(cycles(top))} {cycles(top)}")
    every = {m: set().union(*(edges[m] for edges in graph.values())) for m in top}
    print(f"cycles counting imports inside functions and for type checking too: "
          f"{len(cycles(every))} {cycles(every)}")
    light = light_modules(top)
    print(f"modules whose top-level imports reach neither torch nor Lightning ({len(light)}):")
    print("  " + "\n  ".join(light))
