"""The README's walkthrough, run as written: init, serve, an order, trigger, paid.

The commands are read from the README itself and run by bash, with two
changes only: the server listens on a free loopback port instead of 8000
(which may be taken where the tests run), and `trigger` is told that port.
A step the README does not state cannot sneak in: the test has none of its own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### Try it without a Stripe account"


def _walkthrough() -> tuple[list[str], str]:
    """The walkthrough's two shell blocks: the first terminal's, the second's."""
    section = README.read_text(encoding="utf-8").split(SECTION, 1)[1]
    first, second = re.findall(r"```sh\n(.*?)```", section, re.S)[:2]
    return first.splitlines(), second


def _environment(home: Path) -> dict[str, str]:
    """A new user's shell: only the venv activated, no actionflow settings."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ACTIONFLOW_", "STRIPE_", "VIRTUAL_ENV"))
    }
    venv_bin = str(Path(sys.executable).parent)
    environment["PATH"] = f"{venv_bin}{os.pathsep}{environment.get('PATH', '')}"
    environment["HOME"] = str(home)
    return environment


def _bash(script: str, environment: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[dict[str, str], int]]:
    """The first terminal: activate, init, serve (on a free port)."""
    activate, init, serve = _walkthrough()[0]
    assert activate == ". .venv/bin/activate"  # stood for by PATH below
    assert init == "actionflow init ~/shop && cd ~/shop"
    assert serve == "actionflow serve"
    environment = _environment(tmp_path)
    _bash(init, environment)
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["bash", "-c", f"{init.split('&&')[1]} && exec {serve} --port {port}"],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: _answers(f"http://127.0.0.1:{port}/healthz", process, log),
            timeout=60,
            what="actionflow serve to listen",
        )
        yield environment, port
    finally:
        process.terminate()
        process.wait(30)


def _answers(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        pytest.fail(f"serve exited:\n{log.read_text(errors='replace')[-3000:]}")
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_the_readme_walkthrough_takes_a_new_project_to_a_paid_order(
    served: tuple[dict[str, str], int],
) -> None:
    environment, port = served
    second = _walkthrough()[1]
    trigger = "actionflow trigger payment_intent.succeeded --order 1"
    assert trigger in second
    second = second.replace("localhost:8000", f"127.0.0.1:{port}").replace(
        trigger, f"{trigger} --url http://127.0.0.1:{port}/webhooks/stripe"
    )
    *steps, check = second.strip().splitlines()
    assert steps[0] == "cd ~/shop" and steps[1].startswith("TOKEN=$(actionflow")
    assert check.startswith("curl -s 127.0.0.1:") and '"status":"paid"' in check

    sent = _bash("\n".join(steps), environment)

    assert '"status":"pending"' in sent
    assert "-> HTTP 200" in sent
    script = "\n".join([steps[0], steps[1], check])
    wait_for(
        lambda: '"status":"paid"' in _bash(script, environment),
        what="the order to be paid",
    )
