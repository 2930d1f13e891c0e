"""Sample a server with py-spy while it works, and say where its time went.

py-spy records wall-clock stacks of every thread (`--idle`), so time the
worker spends waiting on the disk (fsync in a commit) counts, not only CPU.
The summary splits samples by thread role (worker, event loop, thread pool)
and lists, per role, the functions on the stack most often (inclusive share).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROLES = (
    # (role, a frame that marks it), checked in order
    ("worker", "run (actionflow/server/worker.py)"),
    ("worker", "run (server/worker.py)"),
    ("worker", "run (baseline_app.py)"),
    ("thread pool", "run (anyio/_backends/_asyncio.py)"),
    ("event loop", "run (uvicorn/server.py)"),
)


def py_spy() -> str:
    """The py-spy program next to this python, or on PATH."""
    program = Path(sys.executable).parent / "py-spy"
    found = str(program) if program.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


class Recording:
    """py-spy attached to one process until `stop`."""

    def __init__(self, pid: int, output: Path, rate: int = 200) -> None:
        self.output = output
        self.log = output.with_suffix(".log")
        command = [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--idle",
            "--threads",
            "--nolineno",
            "--nonblocking",
            "--output",
            str(output),
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)

    def stop(self) -> None:
        """Stop sampling; py-spy writes its file on SIGINT."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if not self.output.exists():
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"py-spy wrote no profile:\n{tail}")


def _role(frames: list[str]) -> str:
    for role, marker in ROLES:
        if any(frame.endswith(marker) or marker in frame for frame in frames):
            return role
    return "other"


def summarise(raw: Path, top: int = 25) -> str:
    """A text table: per thread role, the functions with the largest share."""
    per_role: dict[str, Counter[str]] = {}
    totals: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")[1:]  # the first frame names the thread
        role = _role(frames)
        count = int(count_text)
        totals[role] += count
        seen = per_role.setdefault(role, Counter())
        for frame in set(frames):
            seen[frame] += count
    everything = sum(totals.values())
    lines = [f"py-spy samples: {everything} (wall clock, every thread)"]
    for role, samples in totals.most_common():
        share = 100 * samples / everything
        lines.append(f"\n[{role}] {samples} samples, {share:.0f}% of all")
        for frame, count in per_role[role].most_common(top):
            lines.append(f"  {100 * count / samples:5.1f}%  {frame}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25))
