"""The import rules of docs/design.md, read from the source: who may import whom, where SQL
and the time may appear, how long a module may grow. Breaking a rule fails here, naming the
file and line."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "wis_monitor"

#: The pure core: no I/O, no clock, nothing from the edges.
CORE = {"book", "signals", "stats", "expr", "alerting", "duration", "errors", "symbols", "depths",
        "impact", "across", "streamguard"}
#: What the core may import besides itself.
CORE_ALLOWED = {"__future__", "collections", "dataclasses", "enum", "functools", "math",
                "operator", "re", "typing", "numpy", "bisect", "heapq", "itertools",
                "datetime", "abc", "difflib", "time", "zlib"}
#: Third-party libraries each confined to one owner (module or package).
OWNERS = {
    "ccxt": {"sources.ccxt", "sources.stream"},
    "apprise": {"channel"},
    "sqlite3": {"store"},
    "sqlite_utils": {"store"},
    "psycopg": {"store"},
    "apscheduler": {"daemon"},
    "jinja2": {"template"},
    "prometheus_client": {"telemetry"},
    "pyarrow": {"sources.recordings_parquet"},
    "matplotlib": {"tools.chart"},
}
#: The layers of docs/design.md, top first: a module imports its own layer or lower ones.
LAYERS = (
    {"__main__", "cli"},
    {"daemon", "tools"},
    {"engine", "series", "enrich", "outbox", "health", "telemetry", "leases", "selector"},
    {"sources"},
    {"config", "rulefile", "settings", "seriessettings", "selection", "yamlsource",
     "positions"},
    {"message", "template", "channel", "store", "clock", "sdnotify", "log", "redact"},
    {"book", "signals", "stats", "expr", "alerting", "duration", "errors", "symbols", "depths",
     "impact", "across", "streamguard"},
)
MAX_LINES = 600
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM"
                 r"|CREATE\s+(TABLE|INDEX|VIEW)|ALTER\s+TABLE|PRAGMA\s+\w+|VACUUM\b)",
                 re.IGNORECASE | re.DOTALL)
#: Calls that read the time; only clock.py makes them.
TIME_READS = {("time", "time"), ("time", "time_ns"), ("time", "monotonic"),
              ("time", "monotonic_ns"), ("time", "perf_counter"), ("time", "perf_counter_ns"),
              ("time", "clock_gettime"), ("time", "clock_gettime_ns"), ("datetime", "now"),
              ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
              ("loop", "time")}
#: These read the time only when called without one.
TIME_READS_WITHOUT_ARGUMENT = {("time", "localtime"), ("time", "gmtime"), ("time", "ctime")}


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        yield ".".join(parts), path


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path, *, annotations: bool = False) -> Iterator[tuple[str, int]]:
    """Every module ``path`` imports at run time (top level or inside a function), absolute,
    with its line; imports under ``if TYPE_CHECKING:`` only with ``annotations``."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if _type_checking(node) and not annotations:
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            if node.module == "wis_monitor" or node.module.startswith("wis_monitor."):
                for alias in node.names:  # ``from wis_monitor import yamlsource``
                    yield f"{node.module}.{alias.name}", node.lineno


def internal(name: str, known: set[str]) -> str | None:
    """The project module ``name`` refers to (``wis_monitor.x.y`` -> ``x.y``), or None."""
    if not name.startswith("wis_monitor."):
        return None
    mod = name.removeprefix("wis_monitor.")
    while mod and mod not in known:
        mod = mod.rpartition(".")[0]
    return mod or None


def graph(*, annotations: bool = False) -> dict[str, dict[str, int]]:
    known = {m for m, _ in modules()}
    out: dict[str, dict[str, int]] = {}
    for mod, path in modules():
        edges: dict[str, int] = {}
        for name, line in imports(path, annotations=annotations):
            target = internal(name, known)
            if target is not None and target != mod and not mod.startswith(target + "."):
                edges.setdefault(target, line)
        out[mod] = edges
    return out


def test_no_import_circle() -> None:
    """Not even through the imports made for annotations only."""
    g = graph(annotations=True)
    circles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in g.get(m, {}):
            if state.get(n) == 1:
                circles.append([*stack[stack.index(n):], n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert circles == [], "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def layer(mod: str) -> int:
    top = mod.split(".")[0]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def test_every_module_is_in_a_layer_and_imports_only_its_own_or_lower_ones() -> None:
    unplaced = [m for m, _ in modules() if m and not any(m.split(".")[0] in names
                                                         for names in LAYERS)]
    assert unplaced == [], "place new modules in LAYERS (and docs/design.md)"
    upward = [f"{mod}:{line}: imports {target}"
              for mod, edges in graph().items() for target, line in edges.items()
              if layer(target) < layer(mod)]
    assert upward == []


def test_the_core_imports_nothing_from_the_edges() -> None:
    found = []
    for mod, path in modules():
        if mod not in CORE:
            continue
        for name, line in imports(path):
            top = name.split(".")[0]
            target = internal(name, {m for m, _ in modules()})
            edge = target not in CORE if target is not None else \
                top != "wis_monitor" and top not in CORE_ALLOWED
            if edge:
                found.append(f"{path.name}:{line}: imports {name}")
    assert found == []


def test_nothing_imports_the_daemon_or_the_command_line() -> None:
    found = [f"{mod}:{line}: imports {target}"
             for mod, edges in graph().items() for target, line in edges.items()
             if (target == "daemon" and not mod.startswith("cli"))
             or (target.split(".")[0] == "cli" and mod not in ("__main__",)
                 and not mod.startswith("cli"))]
    assert found == []


def test_only_the_daemon_and_the_command_line_use_the_tools() -> None:
    """The tools sit beside the daemon, above the pipeline: the pipeline is given what it
    needs of them (the email chart) instead of reaching up."""
    found = [f"{mod}:{line}: imports {target}"
             for mod, edges in graph().items() for target, line in edges.items()
             if target.split(".")[0] == "tools" and mod.split(".")[0] not in (
                 "tools", "cli", "daemon")]
    assert found == []


def test_each_library_is_imported_by_its_owner_only() -> None:
    found = []
    for mod, path in modules():
        for name, line in imports(path):
            owners = OWNERS.get(name.split(".")[0])
            if owners is not None and not any(mod == o or mod.startswith(o + ".")
                                               for o in owners):
                found.append(f"{mod}:{line}: imports {name} (owned by {sorted(owners)})")
    assert found == []


def test_sql_is_written_only_in_the_store() -> None:
    found = []
    for mod, path in modules():
        if mod == "store" or mod.startswith("store."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and SQL.search(node.value):
                found.append(f"{mod}:{node.lineno}: {node.value[:60]!r}")
    assert found == []


def test_only_the_clock_reads_the_time() -> None:
    found = []
    for mod, path in modules():
        if mod == "clock":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and (node.value.id, node.attr) in TIME_READS:
                found.append(f"{mod}:{node.lineno}: {node.value.id}.{node.attr}")
            elif isinstance(node, ast.Call) and not node.args \
                    and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name) \
                    and (node.func.value.id, node.func.attr) in TIME_READS_WITHOUT_ARGUMENT:
                found.append(f"{mod}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.ImportFrom) and node.module == "time" and any(
                    ("time", a.name) in TIME_READS for a in node.names):
                found.append(f"{mod}:{node.lineno}: from time import ...")
    assert found == []


def test_no_module_is_longer_than_600_lines() -> None:
    long = {mod: n for mod, path in modules()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_rules_themselves_catch_what_they_forbid(tmp_path: Path) -> None:
    """The readers above see a circle, a time read and SQL when they are there."""
    src = ("from __future__ import annotations\nimport time\nfrom typing import TYPE_CHECKING\n"
           "if TYPE_CHECKING:\n    from wis_monitor import daemon\n"
           "def f():\n    from wis_monitor.store import Store\n    return time.monotonic()\n"
           "Q = 'SELECT ts FROM samples'\n")
    path = tmp_path / "x.py"
    path.write_text(src)
    names = [n for n, _ in imports(path)]
    assert "wis_monitor.store" in names and "wis_monitor.daemon" not in names
    tree = ast.parse(src)
    assert any(isinstance(n, ast.Attribute) and (getattr(n.value, "id", None), n.attr)
               in TIME_READS for n in ast.walk(tree))
    assert SQL.search("SELECT ts FROM samples") and not SQL.search("select the venue")
    assert internal("wis_monitor.store.sqlite", {"store"}) == "store"


def test_a_command_starts_without_the_channel_library(tmp_path: Path) -> None:
    """apprise takes most of a second to import: a config without channels, and every tool
    that sends nothing, must not pay for it."""
    import subprocess
    import sys

    cfg = tmp_path / "config.yaml"
    cfg.write_text("venues:\n  - {id: simex, exchange: sim, symbols: [BTC/USDT]}\n")
    probe = ("import sys\nfrom wis_monitor.cli import cli\nfrom wis_monitor.config import "
             f"load_config\nload_config({str(cfg)!r})\nprint(sorted(m for m in sys.modules "
             "if m.split('.')[0] in ('apprise', 'ccxt', 'sqlite_utils', 'matplotlib')))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout
