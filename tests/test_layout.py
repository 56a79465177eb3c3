"""The package's layout: wings named for the concepts, stacked in one order; jobs drive
wings and never each other; nothing below a job imports one."""

import ast
import importlib
import re
from pathlib import Path

from nas_sr.cli import JOBS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nas_sr", "search_spaces", "controllers")

# Lowest first: a module may import its own layer and the layers below it, never above.
# The search space and the controllers know nothing of nas_sr; the base modules of
# nas_sr/ (errors, device, ...) know only each other and the search space.
LAYERS = [
    ["search_spaces"],
    ["controllers"],
    ["nas_sr.errors", "nas_sr.progress", "nas_sr.metrics", "nas_sr.device",
     "nas_sr.checkpoint", "nas_sr.schema"],
    ["nas_sr.runs"],
    ["nas_sr.plots"],
    ["nas_sr.data"],
    ["nas_sr.archs"],
    ["nas_sr.deploy"],
    ["nas_sr.train"],
    ["nas_sr.search"],
    ["nas_sr.web"],
    ["nas_sr.options"],
    ["nas_sr.jobs"],
    ["nas_sr.cli"],
    ["nas_sr.api"],
]
MAX_BASE_MODULES = 8  # nas_sr/*.py besides __init__: the rest lives in wings
MAX_LEVELS = 9  # the longest import chain between rooms (10 with nas_sr/ flat)


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts as a and a.b)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def internal_imports() -> dict[str, set[str]]:
    """Module -> the project's modules it imports (a package's ``__init__`` only names it)."""
    known = {name: path for name, path in modules().items() if path.stem != "__init__"}
    return {name: {n for n in imported(path) if n in known and n != name}
            for name, path in known.items()}


def room(module: str) -> str:
    """A wing (``nas_sr.data``), a top package (``search_spaces``) or a base module."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "nas_sr" else parts[0]


def layer(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} is in no layer of tests/test_layout.py: place it")


def test_every_module_has_a_layer_and_imports_only_its_own_and_lower_layers():
    for module, deps in internal_imports().items():
        for dep in deps:
            assert layer(dep) <= layer(module), (
                f"{module} imports {dep}, a higher layer: move the shared part down")


def levels(graph: dict[str, set[str]]) -> dict[str, int]:
    """Each node's level (1 + its highest import's); an import cycle fails the test."""
    depth: dict[str, int] = {}

    def level(node: str, path: tuple[str, ...] = ()) -> int:
        assert node not in path, f"import cycle: {' -> '.join(path + (node,))}"
        if node not in depth:
            depth[node] = 1 + max((level(d, path + (node,)) for d in graph[node]), default=0)
        return depth[node]

    for node in graph:
        level(node)
    return depth


def test_the_import_graph_has_no_cycle_and_fewer_levels_than_before():
    graph = internal_imports()
    levels(graph)
    rooms: dict[str, set[str]] = {}
    for module, deps in graph.items():
        here = room(module)
        rooms.setdefault(here, set()).update(room(d) for d in deps if room(d) != here)
    depth = levels(rooms)
    top = max(depth, key=depth.get)
    assert depth[top] <= MAX_LEVELS, f"{top} stands {depth[top]} levels high"


def test_nas_sr_keeps_its_code_in_wings():
    base = {p.stem for p in (ROOT / "nas_sr").glob("*.py")} - {"__init__"}
    assert len(base) <= MAX_BASE_MODULES, sorted(base)
    wings = {p.name for p in (ROOT / "nas_sr").iterdir() if (p / "__init__.py").is_file()}
    assert {"archs", "data", "deploy", "jobs", "plots", "runs", "search", "train",
            "web"} <= wings


def test_every_cli_job_is_a_module_of_nas_sr_jobs():
    jobs = {p.stem for p in (ROOT / "nas_sr" / "jobs").glob("*.py")} - {"__init__"}
    assert set(JOBS) | {"report"} == jobs


def test_no_job_imports_another_and_neither_wings_nor_bench_import_a_job():
    for folder in (*PACKAGES, "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            jobs = {n for n in imported(path) if n.startswith("nas_sr.jobs")}
            assert not jobs, f"{path.relative_to(ROOT)} imports {sorted(jobs)}"


def test_the_genotype_lifecycle_in_the_docs_names_real_files_and_functions():
    text = (ROOT / "docs" / "search_space.md").read_text()
    section = text.split("## Genotype lifecycle", 1)[1]
    rows = re.findall(r"^\| .* \| `([\w/]+\.py)` \| `([\w.]+)` \|$", section, re.M)
    assert len(rows) >= 15
    for path, name in rows:
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        target = module
        for part in name.split("."):
            target = getattr(target, part)  # AttributeError: the docs name a moved function
        assert callable(target), f"{path}: {name}"


def test_the_readme_layout_names_every_wing_and_module():
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("```")[1]
    entries = dict(re.findall(r"^(\S+/)\s+(.*(?:\n {2,}.*)*)", layout, re.M))
    folders = ["nas_sr/", *(f"nas_sr/{p.name}/" for p in sorted((ROOT / "nas_sr").iterdir())
                            if (p / "__init__.py").is_file())]
    for folder in folders:
        assert folder in entries, f"README's layout has no {folder}"
        words = set(re.findall(r"\w+", entries[folder]))
        names = {p.stem for p in (ROOT / folder).glob("*.py")} - {"__init__"}
        assert names <= words, f"README's {folder} misses {sorted(names - words)}"
