"""`actionflow validate` and `actionflow graph`: check and draw flow files.

validate prints one line per problem, `path:line:col: error: message [step]`,
or GitHub workflow annotations (--format github), or JSON (--format json).
Exit 0 when clean, 1 when problems were found, 2 on a usage error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from actionflow.engine.checker import check_paths, check_text
from actionflow.engine.errors import FlowError
from actionflow.engine.flow import SYSTEM_FLOWS
from actionflow.engine.graph import dot, mermaid


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "github", "json"]),
    default="text",
    show_default=True,
    help="text: path:line:col lines; github: workflow annotations; json: a list.",
)
def validate(paths: tuple[Path, ...], output: str) -> None:
    """Check flow files (or folders of them); print one line per problem."""
    for path in paths:
        if not path.exists():
            raise click.BadParameter(f"{path} does not exist", param_hint="PATHS")
    count, problems = check_paths(paths, SYSTEM_FLOWS)
    if output == "json":
        click.echo(json.dumps([_as_dict(problem) for problem in problems], indent=2))
    else:
        line = _github_line if output == "github" else problem_line
        for problem in problems:
            click.echo(line(problem))
    if problems:
        if output == "text":
            noun = "problem" if len(problems) == 1 else "problems"
            click.echo(f"{len(problems)} {noun} in {count} flow files", err=True)
        sys.exit(1)
    if output == "text":
        click.echo(f"{count} flow files checked, no problems")


def problem_line(error: FlowError) -> str:
    """`path:line:col: error: message [step]`."""
    where = str(error.position) if error.position else "?"
    step = f" [{error.step}]" if error.step else ""
    return f"{where}: error: {error.message}{step}"


def _as_dict(error: FlowError) -> dict[str, object]:
    position = error.position
    return {
        "file": position.file if position else None,
        "line": position.line if position else None,
        "column": position.column if position else None,
        "severity": "error",
        "message": error.message,
        "step": error.step,
        "pointer": error.pointer,
    }


def _github_line(error: FlowError) -> str:
    """A GitHub Actions `::error` workflow command for one problem."""
    position = error.position
    fields = []
    if position is not None:
        fields.append(f"file={_escape_property(position.file)}")
        if position.line:
            fields.append(f"line={position.line}")
            fields.append(f"col={position.column}")
    fields.append("title=actionflow validate")
    step = f" [{error.step}]" if error.step else ""
    return f"::error {','.join(fields)}::{_escape_data(error.message + step)}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


@click.command()
@click.argument(
    "flow_file", type=click.Path(path_type=Path, exists=True, dir_okay=False)
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
)
@click.option(
    "--flows",
    "folders",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="Folders whose flows may extend this one (drawn as extensions).",
)
def graph(flow_file: Path, output: str, folders: tuple[Path, ...]) -> None:
    """Draw a flow's steps, branches, error paths and extensions."""
    facts, problems = check_text(flow_file.read_text(encoding="utf-8"), str(flow_file))
    if facts is None:
        for problem in problems:
            click.echo(problem_line(problem), err=True)
        sys.exit(1)
    extensions = _extensions(facts.name, [SYSTEM_FLOWS, flow_file.parent, *folders])
    draw = mermaid if output == "mermaid" else dot
    click.echo(draw(facts.name, facts.document.data["steps"], extensions), nl=False)


def _extensions(name: str, folders: list[Path]) -> list[str]:
    """Names of the flows in `folders` that run after `name`, in run order."""
    found: set[str] = set()
    for folder in folders:
        for file in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            facts, _ = check_text(file.read_text(encoding="utf-8"), str(file))
            if facts is not None and facts.after == name:
                found.add(facts.name)
    return sorted(found)
