"""`actionflow validate` and `actionflow graph`: output formats and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from actionflow.server.cli import main

REPO = Path(__file__).resolve().parents[2]
BROKEN = REPO / "tests" / "flows" / "broken"
UNKNOWN_STEP = BROKEN / "21_unknown_step_reference.yaml"


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_validate_passes_every_flow_in_the_repo() -> None:
    code, output = _invoke("validate", str(REPO / "flows"))
    count = len(list((REPO / "flows").rglob("*.yaml")))
    assert count >= 10
    assert (code, output) == (0, f"{count} flow files checked, no problems\n")


def test_validate_prints_one_line_per_problem_and_exits_1() -> None:
    code, output = _invoke("validate", str(UNKNOWN_STEP))
    assert code == 1
    assert output.splitlines()[0] == (
        f"{UNKNOWN_STEP}:13:36: error: steps.paymnet: no step 'paymnet' in this flow; "
        "did you mean 'payment'? [mark]"
    )


def test_validate_over_a_folder_reports_every_broken_file() -> None:
    code, output = _invoke("validate", str(BROKEN))
    lines = [line for line in output.splitlines() if ": error: " in line]
    assert code == 1
    assert len(lines) == len(list(BROKEN.glob("*.yaml")))


def test_validate_writes_github_annotations() -> None:
    code, output = _invoke("validate", "--format", "github", str(UNKNOWN_STEP))
    assert code == 1
    assert output == (
        f"::error file={UNKNOWN_STEP},line=13,col=36,title=actionflow validate::"
        "steps.paymnet: no step 'paymnet' in this flow; did you mean 'payment'? "
        "[mark]\n"
    )


def test_validate_writes_json() -> None:
    code, output = _invoke("validate", "--format", "json", str(UNKNOWN_STEP))
    assert code == 1
    assert json.loads(output) == [
        {
            "file": str(UNKNOWN_STEP),
            "line": 13,
            "column": 36,
            "severity": "error",
            "message": "steps.paymnet: no step 'paymnet' in this flow; "
            "did you mean 'payment'?",
            "step": "mark",
            "pointer": "/steps/1/with/id",
        }
    ]


def test_validate_exits_2_on_a_usage_error() -> None:
    assert _invoke("validate", str(REPO / "no-such-folder"))[0] == 2
    assert _invoke("validate")[0] == 2
    assert _invoke("validate", "--format", "xml", str(UNKNOWN_STEP))[0] == 2


def test_graph_draws_branches_error_paths_and_extensions_as_mermaid() -> None:
    code, output = _invoke(
        "graph",
        str(REPO / "flows/examples/DescribePayment.yaml"),
        "--format",
        "mermaid",
    )
    assert code == 0
    assert "  s0 -.->|on error| s6" in output
    assert "  s1 -->|case succeeded| s2" in output
    assert "  s1 -->|default| s4" in output

    code, output = _invoke(
        "graph",
        str(REPO / "flows/system/StripePaymentCallback.yaml"),
        "--flows",
        str(REPO / "flows/examples"),
    )
    assert code == 0
    assert "  finish -.->|succeeded| ext_MarkOrderPaid" in output


def test_graph_writes_dot() -> None:
    code, output = _invoke(
        "graph", str(REPO / "flows/examples/DescribePayment.yaml"), "--format", "dot"
    )
    assert code == 0
    assert output.startswith('digraph "DescribePayment" {')
    assert '  s0 -> s6 [label="on error", style=dashed];' in output
