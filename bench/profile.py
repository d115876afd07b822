"""`--profile`: py-spy samples the serving process during each measured phase; a summary is written beside.

The samples are kept in order, idle ones included (speedscope format, `--idle`), so the summary has a timeline
too: per quarter second, how busy the process's thread was and on what. A latency spike then shows whether the
event loop was busy (and with what) or idle while the request waited (the CPU, another process).
py-spy is a development tool (pinned in the dev extras); without it `--profile` says so and goes on.
"""

import asyncio
import collections
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

PROFILES = Path(tempfile.gettempdir()) / "keyward-bench-profiles"
RATE = 250  # samples a second
TICK = 0.25  # the timeline's step, seconds
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
    raw = PROFILES / f"{name}.speedscope.json"
    proc = await asyncio.create_subprocess_exec(
        tool,
        "record",
        "-p",
        str(pid),
        "-o",
        str(raw),
        "--format",
        "speedscope",
        "-r",
        str(RATE),
        "--idle",
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


# A sample whose innermost Python frame is the loop's own: waiting in epoll (uvloop's C loop shows no frame of
# its own, so its other C work counts as waiting too; asyncio's pure-Python loop waits in select()).
_WAITING = frozenset({"Runner.run (runners.py)", "EpollSelector.select (selectors.py)"})


def _stacks(speedscope: Path) -> list[list[str]]:
    """Each sample's frames, outermost first, in the order taken; an idle sample is []."""
    doc = json.loads(speedscope.read_text())
    frames = [f"{f['name']} ({Path(f.get('file') or '?').name})" for f in doc["shared"]["frames"]]
    main = max(doc["profiles"], key=lambda p: len(p["samples"]))  # the event loop's thread
    stacks = []
    for sample in main["samples"]:
        stack = [frames[i] for i in sample]
        stacks.append([] if not stack or stack[-1] in _WAITING else stack)
    return stacks


def _ours(stack: list[str]) -> str:
    """The innermost frame of Keyward's own code (or the leaf when there is none)."""
    for frame in reversed(stack):
        if frame.split(" (")[1].rstrip(")") not in _FOREIGN:
            return frame
    return stack[-1]


_FOREIGN = frozenset({"runners.py", "base_events.py", "events.py", "server.py", "_compat.py", "main.py", "runpy"})


def summarize(speedscope: Path, top: int = 40) -> str:
    """Busy share, inclusive and self time per function, and a timeline per TICK."""
    stacks = _stacks(speedscope)
    busy = [s for s in stacks if s]
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for stack in busy:
        inclusive.update(set(stack))
        own[stack[-1]] += 1
    total = max(1, len(busy))
    lines = [
        f"{len(stacks)} samples at {RATE}/s, {len(busy)} busy ({100 * len(busy) / max(1, len(stacks)):.0f}%)",
        "",
        "inclusive (share of busy samples):",
    ]
    lines += [f"{100 * v / total:5.1f}%  {k}" for k, v in inclusive.most_common(top)]
    lines += ["", "self:"] + [f"{100 * v / total:5.1f}%  {k}" for k, v in own.most_common(top // 2)]
    lines += ["", f"timeline (every {TICK:g} s: busy share, then the innermost Keyward frames most sampled):"]
    step = max(1, int(RATE * TICK))
    for start in range(0, len(stacks), step):
        window = [s for s in stacks[start : start + step] if s]
        where = collections.Counter(_ours(s) for s in window).most_common(3)
        described = ", ".join(f"{n} {frame}" for frame, n in where)
        lines.append(f"{start / RATE:6.2f}s {100 * len(window) / step:4.0f}%  {described}")
    return "\n".join(lines) + "\n"
