"""The package's layout: jobs drive parts, and never each other."""

import ast
import importlib
import re
from pathlib import Path

from nas_sr.cli import JOBS

ROOT = Path(__file__).resolve().parents[1]


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts as a and a.b)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_every_cli_job_is_a_module_of_nas_sr_jobs():
    jobs = {p.stem for p in (ROOT / "nas_sr" / "jobs").glob("*.py")} - {"__init__"}
    assert set(JOBS) | {"report"} == jobs


def test_no_job_imports_another_and_no_part_imports_a_job():
    for package in ("nas_sr", "search_spaces", "controllers"):
        for path in (ROOT / package).rglob("*.py"):
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


def test_the_readme_layout_names_every_job_and_part():
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("```")[1]
    entries = dict(re.findall(r"^(\S+/)\s+(.*(?:\n {2,}.*)*)", layout, re.M))
    for folder in ("nas_sr/jobs/", "nas_sr/"):
        words = set(re.findall(r"\w+", entries[folder]))
        modules = {p.stem for p in (ROOT / folder).glob("*.py")} - {"__init__"}
        assert modules <= words, f"README's {folder} misses {sorted(modules - words)}"
