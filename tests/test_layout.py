"""The package's layout: jobs drive parts, and never each other."""

import ast
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
