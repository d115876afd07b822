"""`--profile`: py-spy samples the serving process during each measured phase; a summary is written beside.

py-spy is a development tool (pinned in the dev extras); without it `--profile` says so and goes on.
"""

import asyncio
import collections
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

PROFILES = Path(tempfile.gettempdir()) / "keyward-bench-profiles"
enabled = False


def _py_spy() -> str | None:
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


@asynccontextmanager
async def profiled(pid: int, name: str) -> AsyncIterator[None]:
    tool = _py_spy() if enabled else None
    if tool is None:
        if enabled:
            print("[bench] --profile: py-spy is not installed (pip install py-spy)", flush=True)
        yield
        return
    PROFILES.mkdir(exist_ok=True)
    raw = PROFILES / f"{name}.folded"
    proc = await asyncio.create_subprocess_exec(
        tool,
        "record",
        "-p",
        str(pid),
        "-o",
        str(raw),
        "--format",
        "raw",
        "-r",
        "250",
        "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        await proc.wait()
    if raw.exists():
        (PROFILES / f"{name}.top.txt").write_text(summarize(raw))
        print(f"[bench] profile: {raw} (summary: {name}.top.txt)", flush=True)


def summarize(folded: Path, top: int = 60) -> str:
    """Inclusive and self time per function from py-spy's folded stacks (idle samples are not recorded)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [f.rsplit(":", 1)[0] for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    lines = [f"{total} samples", "", "inclusive:"]
    lines += [f"{100 * v / total:5.1f}%  {k}" for k, v in inclusive.most_common(top)]
    lines += ["", "self:"] + [f"{100 * v / total:5.1f}%  {k}" for k, v in own.most_common(top // 2)]
    return "\n".join(lines) + "\n"
