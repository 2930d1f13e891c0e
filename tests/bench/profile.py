"""Sample a server with py-spy while it works, and say where its time went.

py-spy records wall-clock stacks of every thread (`--idle`), so time the
worker spends waiting on the disk (fsync in a commit) counts, not only CPU.
The summary groups samples by thread (worker, event loop, the thread pool that
stores events), leaves out those waiting for work, and lists, per group, the
functions most often on the stack (inclusive share of the working samples).
Summarise a kept recording again with `python -m tests.bench.profile FILE`.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROLES = {
    "actionflow-worker": "worker thread",
    "baseline-worker": "worker thread",
    "AnyIO worker thread": "thread pool (stores events)",
    "MainThread": "main thread (event loop, or a worker process)",
}
# A thread whose stack holds one of these is waiting for work, not working.
IDLE = (
    "Queue.get (queue.py)",
    "EpollSelector.select (selectors.py)",
    "Event.wait (threading.py)",
)
# Frames on every stack of a role, which say nothing about where time goes.
PLUMBING = ("Thread._bootstrap", "Thread.run (", "WorkerThread.run", "click/core.py")


def py_spy() -> str:
    """The py-spy program next to this python, or on PATH."""
    program = Path(sys.executable).parent / "py-spy"
    found = str(program) if program.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


class Recording:
    """py-spy attached to one process until `stop`."""

    def __init__(self, pid: int, output: Path, rate: int = 100) -> None:
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


def _role(thread: str) -> str:
    name = thread.partition(": ")[2] or thread
    return ROLES.get(name, "other threads")


def summarise(raw: Path, top: int = 25) -> str:
    """Per thread role: how busy it was, and where its busy samples were spent."""
    busy: dict[str, Counter[str]] = {}
    samples: Counter[str] = Counter()
    working: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        thread, *frames = stack.split(";")
        role, count = _role(thread), int(count_text)
        samples[role] += count
        if any(frame in IDLE for frame in frames):
            continue
        working[role] += count
        seen = busy.setdefault(role, Counter())
        for frame in set(frames):
            if not frame.startswith(PLUMBING):
                seen[frame] += count
    lines = [f"py-spy: {sum(samples.values())} wall-clock samples of every thread"]
    for role, total in samples.most_common():
        work = working[role]
        lines.append(
            f"\n[{role}] {total} samples, {100 * work / total:.0f}% of them working "
            "(not waiting for work); share of the working samples:"
        )
        ranked = busy.get(role, Counter()).most_common()
        for frame, count in ranked[:top]:
            lines.append(f"  {100 * count / work:5.1f}%  {frame}")
        own = [(frame, count) for frame, count in ranked if _own(frame)]
        if own:
            lines.append("  of which in the application's own code:")
        for frame, count in own[:top]:
            lines.append(f"  {100 * count / work:5.1f}%  {frame}")
    return "\n".join(lines)


def _own(frame: str) -> bool:
    where = frame.rpartition(" (")[2]
    return where.startswith(("engine/", "server/", "actionflow/", "tests/bench/"))


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25))
