"""py-spy samples of a server while the benchmark loads it: where its CPU goes, in one table.

Used by ``benchmarks/serve.py --profile DIR`` so that a missed target is explained by a
profile of the same run, not a guess. py-spy is not a project dependency (it is a tool, like
``perf``): ``uv tool install py-spy``, or put it on PATH. The raw samples (one line per stack,
flamegraph.pl / speedscope can read them) are kept beside the summary.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

# Exclusive buckets, first match wins: (label, frame-name prefixes anywhere in the stack).
IDLE_TOPS = ("EpollSelector.select", "Condition.wait", "Event.wait", "Queue.get", "select")
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("explanations (IG, Grad-CAM, ...)", ("explain_batch", "integrated_gradients", "grad_cam")),
    ("model forward (TensorFlow + Keras dispatch)", ("Predictor.forward", "quick_execute")),
    (
        "request decoding (JSON, validation, pixels)",
        (
            "model_validate_json",
            "JSONDecoder",
            "validate_python",
            "scaled",
            "from_array",
            "as_images",
            "loads",
        ),
    ),
    (
        "rest of the ASGI app (middlewares, routing, response)",
        ("ServerErrorMiddleware.__call__", "ExceptionMiddleware.__call__"),
    ),
    ("event loop + HTTP protocol, outside the app", ("_run_once", "Runner.run", "run_forever")),
)


def available() -> str | None:
    """The py-spy executable, or None."""
    return shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    """Start sampling ``pid`` and its children for ``seconds`` (100 Hz, raw stacks to ``out``)."""
    spy = available()
    if spy is None:
        raise SystemExit("--profile needs py-spy on PATH (uv tool install py-spy)")
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--nonblocking",
            "--rate",
            "100",
            "--duration",
            str(max(1, int(seconds))),
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=out.with_suffix(".log").open("w"),  # e.g. ptrace refused: says why no profile
    )


def summarise(raw: Path, top: int = 12) -> dict:
    """Samples, the share of each bucket (plus idle and other threads) and the frames most
    often on top of the stack."""
    total = 0
    buckets: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [f.split(" (")[0] for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        if frames[-1].startswith(IDLE_TOPS):
            buckets["idle (waiting)"] += n
            continue
        label = next(
            (label for label, prefixes in BUCKETS if any(f.startswith(prefixes) for f in frames)),
            "other threads, partial stacks",
        )
        buckets[label] += n
    share = (lambda n: round(n / total, 3)) if total else (lambda n: 0.0)
    labels = [label for label, _ in BUCKETS] + ["other threads, partial stacks", "idle (waiting)"]
    return {
        "samples": total,
        "buckets": {label: share(buckets[label]) for label in labels},
        "top_frames": [(frame, share(n)) for frame, n in own.most_common(top)],
    }


def render(name: str, summary: dict) -> str:
    lines = [f"profile {name}: {summary['samples']} samples (100 Hz, all threads)"]
    lines += [f"  {share:6.1%}  {label}" for label, share in summary["buckets"].items()]
    lines.append("  most often on top of the stack:")
    lines += [f"  {share:6.1%}  {frame}" for frame, share in summary["top_frames"]]
    return "\n".join(lines)
