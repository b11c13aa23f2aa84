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
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "wmbench"
HEAVY = ("torch", "lightning")


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(top, deferred)``: module -> the modules (of wmbench, or top-level third-party names) it
    imports when it is imported, and those it imports inside functions. ``if TYPE_CHECKING:`` blocks
    never run and are left out."""
    files = {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }
    top: dict[str, set[str]] = {}
    deferred: dict[str, set[str]] = {}

    def targets(node: ast.AST) -> set[str]:
        if isinstance(node, ast.Import):
            return {
                a.name if a.name.startswith("wmbench") else a.name.split(".")[0] for a in node.names
            }
        base = node.module or ""
        if not base.startswith("wmbench"):
            return {base.split(".")[0]}
        return {f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names}

    def visit(node: ast.AST, module: str, inside_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (deferred if inside_function else top)[module] |= targets(child)
            visit(
                child,
                module,
                inside_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)),
            )

    for name, path in sorted(files.items()):
        top[name], deferred[name] = set(), set()
        visit(ast.parse(path.read_text()), name, False)
    return top, deferred


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
    top, deferred = import_graph()
    assert cycles(top) == []
    merged = {m: top[m] | deferred[m] for m in top}
    assert cycles(merged) == []  # nor through imports inside functions


def test_the_report_run_directory_suite_planning_and_config_are_light():
    light = light_modules(import_graph()[0])
    for module in (
        "wmbench.rundir",
        "wmbench.run_config",
        "wmbench.configio",
        "wmbench.errors",
        "wmbench.cli",
        "wmbench.suite.spec",
        "wmbench.suite.plan",
        "wmbench.runtime.schedule",
        "wmbench.agents.config",
        "wmbench.diagnostics.config",
        "wmbench.report.store",
        "wmbench.report.stats",
        "wmbench.report.plots",
        "wmbench.report.diagnostics",
        "wmbench.report.markdown",
    ):
        assert module in light, module


BLOCKER = """
import sys
BLOCKED = {blocked!r}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocker())
"""


def run_blocked(blocked: tuple[str, ...], code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter in which importing any of ``blocked`` raises
    ImportError."""
    script = tmp_path / "blocked.py"
    script.write_text(BLOCKER.format(blocked=blocked) + textwrap.dedent(code))
    env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )


@pytest.fixture
def tiny_store(tmp_path) -> Path:
    """A suite file and its directory with a result store (two runs of toy:reach), written without
    training."""
    from wmbench.report.store import collect, run_row, runs_frame, save
    from wmbench.rundir import write_status

    (tmp_path / "suite.yaml").write_text(
        "name: s\nobjectives: [reward]\ntasks: [toy:reach]\nseeds: [0, 1]\n"
    )
    suite_dir = tmp_path / "runs" / "s"
    dirs = []
    for seed in (0, 1):
        run_dir = suite_dir / f"reward-toy_reach-s{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(
            f"objective: reward\nseed: {seed}\nenv: {{task: 'toy:reach'}}\n"
        )
        (run_dir / "metrics.csv").write_text(
            f"env_frames,wall_time,eval/return\n0,1.0,{seed}.0\n10,2.0,{seed + 1}.0\n"
        )
        write_status(run_dir, "done", eval_return=seed + 1.0)
        dirs.append(run_dir)
    rows = [run_row(d, "s", "reward", "toy:reach", seed) for seed, d in enumerate(dirs)]
    save(suite_dir, collect(dirs, "s"), runs_frame(rows))
    return tmp_path


COMMANDS = """
from wmbench.cli import main
for argv in {commands!r}:
    try:
        code = main(argv)
    except SystemExit as exit:  # --help
        code = exit.code
    assert code == 0, (argv, code)
print("ok")
"""


def test_light_modules_help_and_report_load_no_torch(tiny_store):
    done = run_blocked(
        HEAVY,
        textwrap.dedent("""
        import wmbench.rundir, wmbench.run_config, wmbench.suite.spec, wmbench.suite.plan
        import wmbench.report.store, wmbench.report.stats, wmbench.report.plots
        import wmbench.report.diagnostics
    """)
        + COMMANDS.format(
            commands=[["--help"], ["report", "runs/s", "-o", "report", "--reps", "10"]]
        ),
        tiny_store,
    )
    assert done.returncode == 0 and done.stdout.endswith("ok\n"), done.stderr
    assert (tiny_store / "report" / "report.md").exists()


def test_objectives_dry_run_and_suite_status_load_no_lightning(tiny_store):
    commands = [
        ["objectives"],
        ["suite", "run", "suite.yaml", "--dry-run"],
        ["suite", "status", "suite.yaml"],
    ]
    done = run_blocked(("lightning",), COMMANDS.format(commands=commands), tiny_store)
    assert done.returncode == 0 and done.stdout.endswith("ok\n"), done.stderr
    assert "reward-toy_reach-s1" in done.stdout


if __name__ == "__main__":
    top, deferred = import_graph()
    merged = {m: top[m] | deferred[m] for m in top}
    edges = sum(len([w for w in ws if w in top]) for ws in top.values())
    later = sum(len([w for w in ws if w in top]) for ws in deferred.values())
    print(
        f"{len(top)} modules of wmbench; {edges} top-level imports between them, {later} more "
        "inside functions"
    )
    print(f"cycles among top-level imports: {len(cycles(top))} {cycles(top)}")
    print(f"cycles counting imports inside functions too: {len(cycles(merged))} {cycles(merged)}")
    light = light_modules(top)
    print(f"modules whose top-level imports reach neither torch nor Lightning ({len(light)}):")
    print("  " + "\n  ".join(light))
