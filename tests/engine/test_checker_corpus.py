"""The broken-flow corpus: each file holds one mistake, found at its position.

Every file under tests/flows/broken/ starts with `# expect: LINE:COL: message`,
the one problem `actionflow validate` must report for it. The loader refuses
each of them too, so none of them can ever run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from actionflow.engine.checker import check_paths
from actionflow.engine.errors import FlowError
from actionflow.engine.flow import SYSTEM_FLOWS, FlowSet, load_directory, load_flow

REPO = Path(__file__).resolve().parents[2]
BROKEN = REPO / "tests" / "flows" / "broken"
CORPUS = sorted(BROKEN.glob("*.yaml"))


def _expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} has no expectation"
    return first.removeprefix("# expect: ").replace("<repo>", str(REPO))


def _reported(problem: FlowError) -> str:
    assert problem.position is not None
    step = f" [{problem.step}]" if problem.step else ""
    return f"{problem.position.line}:{problem.position.column}: {problem.message}{step}"


def test_the_corpus_holds_at_least_forty_broken_flows() -> None:
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("path", CORPUS, ids=[path.stem for path in CORPUS])
def test_each_broken_flow_is_reported_once_with_its_exact_message_and_position(
    path: Path,
) -> None:
    _, problems = check_paths([path], SYSTEM_FLOWS)
    assert [_reported(problem) for problem in problems] == [_expected(path)]
    assert problems[0].position is not None
    assert problems[0].position.file == str(path)


@pytest.mark.parametrize("path", CORPUS, ids=[path.stem for path in CORPUS])
def test_the_loader_refuses_each_broken_flow(path: Path) -> None:
    with pytest.raises(FlowError) as caught:
        FlowSet([*load_directory(SYSTEM_FLOWS, system=True), load_flow(path)])
    assert _reported(caught.value) == _expected(path)


def test_validate_over_the_whole_corpus_reports_every_file() -> None:
    count, problems = check_paths([BROKEN], SYSTEM_FLOWS)
    assert count == len(CORPUS)
    assert {Path(p.position.file).name for p in problems if p.position} == {
        path.name for path in CORPUS
    }
