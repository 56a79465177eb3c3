"""The docs speak to users: no internal tracking numbers, a short results page, live links."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = DOCS / "RESULTS.md"

USER_DOCS = [ROOT / "README.md", *sorted(DOCS.rglob("*.md")),
             *sorted(ROOT.glob("nas_sr/models/*/MODEL_CARD.md"))]

# "issue 11", "stops 25-26", "task 3", "session #2"; "seed 000" (a source paper by number)
TRACKING = re.compile(r"\b(?:issue|stop|task|session)s? #?\d+|\bseed \d{3}\b", re.IGNORECASE)
# "#12" in prose: an issue reference (code is left out, so "#1f77b4" or "x[#2]" pass)
ISSUE_REF = re.compile(r"(?<![\w&])#\d{1,3}\b")
CODE = re.compile(r"^```.*?^```|`[^`\n]*`", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")


def prose(text: str) -> str:
    """``text`` without its fenced code blocks and inline code spans."""
    return CODE.sub(" ", text)


def test_the_user_docs_are_all_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in USER_DOCS}
    assert {"README.md", "docs/RESULTS.md", "docs/experiments/README.md"} <= names
    assert len([n for n in names if n.endswith("MODEL_CARD.md")]) >= 4


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_internal_tracking_numbers(path: Path) -> None:
    text = path.read_text()
    found = TRACKING.findall(text) + ISSUE_REF.findall(prose(text))
    assert not found, f"{path.relative_to(ROOT)} names internal tracking numbers: {found}"


def test_the_patterns_catch_tracking_numbers_and_pass_the_rest() -> None:
    for bad in ("issue 11's goal", "in stops 25-26", "Stop 39", "task 4", "session #2",
                "seed 000's formula", "Seed 004"):
        assert TRACKING.search(bad), bad
    assert ISSUE_REF.search(prose("fixed in #12."))
    for fine in ("Set5 x2", "seed 0, 1 and 2", "seeds 0-2", "the stop at step 300",
                 "one ONNX Runtime session", "colour `#1f77b4`", "## Results", "[a](#speed)"):
        assert not TRACKING.search(fine) and not ISSUE_REF.search(prose(fine)), fine


def test_results_is_a_short_read() -> None:
    assert len(RESULTS.read_text().splitlines()) < 400


@pytest.mark.parametrize("path", [RESULTS, *sorted((DOCS / "experiments").glob("*.md"))],
                         ids=lambda p: p.relative_to(DOCS).as_posix())
def test_relative_links_point_to_files_that_exist(path: Path) -> None:
    targets = [t.split("#", 1)[0] for t in LINK.findall(prose(path.read_text()))]
    local = [t for t in targets if t and not re.match(r"[a-z][a-z+.-]*:", t)]
    missing = [t for t in local if not (path.parent / t).exists()]
    assert not missing, f"{path.relative_to(ROOT)} links to missing files: {missing}"
