"""Start the system under test (actionflow or the baseline) as real processes.

One HTTP server on a loopback port, with its worker in-process (SQLite) or
`--no-worker` plus separate worker processes (PostgreSQL). Output goes to log
files, never to a pipe that could fill up and stall the server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

WEBHOOK_SECRET = "whsec_benchmark_secret_for_loopback_only"
ADMIN_TOKEN = "aft_benchmark_admin_token"
BASELINE = Path(__file__).with_name("baseline_app.py")
SYSTEMS = ("actionflow", "baseline")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _commands(system: str) -> tuple[list[str], list[str]]:
    """The serve and worker commands of `system`."""
    if system == "actionflow":
        program = Path(sys.executable).parent / "actionflow"
        if not program.exists():
            raise SystemExit(
                f"{program} does not exist; run the benchmark with the python of "
                "the venv actionflow is installed in (.venv/bin/python)"
            )
        return [str(program), "serve"], [str(program), "worker"]
    script = [sys.executable, str(BASELINE)]
    return [*script, "serve"], [*script, "worker"]


@dataclass
class Deployment:
    """A running server (and workers) of one system on one database."""

    system: str
    url: str
    server: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        """The server first, then the workers."""
        return [self.server, *self.workers]

    def peak_rss_mib(self) -> list[float]:
        """The resident-memory high-water mark of each process, in MiB."""
        return [_status_kib(process.pid, "VmHWM") / 1024 for process in self.processes]

    def rss_mib(self) -> list[float]:
        """The resident memory of each process now, in MiB."""
        return [_status_kib(process.pid, "VmRSS") / 1024 for process in self.processes]

    def cpu_seconds(self) -> list[float]:
        """User plus system CPU time each process has used so far."""
        return [_cpu_seconds(process.pid) for process in self.processes]

    def check_alive(self) -> None:
        """Stop the benchmark with the log's tail if a process has exited."""
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(
                    f"{self.system} process exited with {process.returncode}:\n{tail}"
                )

    def stop(self) -> None:
        """SIGTERM every process and wait; SIGKILL what does not stop in 30 s."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start(system: str, database_url: str, workers: int, rundir: Path) -> Deployment:
    """Start `system` on `database_url`; `workers` 0 keeps the worker in-process."""
    serve, work = _commands(system)
    port = free_port()
    environment = {
        **os.environ,
        "ACTIONFLOW_DATABASE_URL": database_url,
        "ACTIONFLOW_ADMIN_TOKEN": ADMIN_TOKEN,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    arguments = ["--host", "127.0.0.1", "--port", str(port)]
    if workers:
        arguments.append("--no-worker")
    server_log = rundir / f"{system}-serve.log"
    deployment = Deployment(
        system,
        f"http://127.0.0.1:{port}",
        _spawn([*serve, *arguments], server_log, environment, rundir),
        logs=[server_log],
    )
    for number in range(workers):
        log = rundir / f"{system}-worker-{number}.log"
        deployment.workers.append(_spawn(work, log, environment, rundir))
        deployment.logs.append(log)
    _wait_until_healthy(deployment)
    return deployment


def _spawn(
    command: list[str], log: Path, environment: dict[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=environment, cwd=cwd
        )


def _wait_until_healthy(deployment: Deployment, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=deployment.url, timeout=2) as client:
        while time.monotonic() < deadline:
            deployment.check_alive()
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    deployment.stop()
    raise RuntimeError(f"{deployment.system} did not answer /healthz in {timeout} s")


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {key}")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")
