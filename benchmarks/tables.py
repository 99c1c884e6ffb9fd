"""The tables of docs/benchmarks.md, produced from the committed result files.

A table in the docs sits between two markers naming how to draw it and from which file:

    <!-- table:train benchmarks/results/train-2026-12-05.json -->
    ...generated, do not edit...
    <!-- /table -->

``python -m benchmarks.tables`` rewrites every such block from its file; ``--check`` rewrites
nothing and exits 1 if a block differs from what its file gives, or if a command the docs cite
(``benchmarks/NAME.py --option``, ``-m benchmarks.NAME --option``) names an option that script
does not define. So a reader can re-derive every number, and a stale table or a removed option
fails the tests (tests/benchmarks). Only the standard library: it runs in milliseconds.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.time_to_target import Curve, summary

REPO = Path(__file__).resolve().parents[1]
DOCS = (REPO / "docs" / "benchmarks.md",)
# Markdown files whose benchmark commands are checked against the scripts' options.
CITING = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
BLOCK = re.compile(
    r"(?P<open><!-- table:(?P<kind>[\w-]+) (?P<file>\S+) -->\n)(?P<body>.*?)(?P<close><!-- /table -->)",
    re.S,
)
COMMAND = re.compile(
    r"(?:benchmarks/(?P<path>\w+)\.py|-m benchmarks\.(?P<module>\w+))(?P<rest>[^`\n]*)"
)
OPTION = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")
GOAL_SPEEDUP = 2.0


# -- the training benchmark (benchmarks/train.py) ------------------------------------------------
def _seconds(s: dict[str, Any]) -> str:
    if s["reached"]:
        return f"{s['seconds']:.1f}"
    return f">= {s['seconds']:.1f} (not reached)"


def _ratio(seed: dict[str, Any], ours: dict[str, Any]) -> tuple[str, float | None, bool]:
    """The speed-up as text, its value, and whether it is exact (both reached the target).
    Seed code not reached, clearsight reached: the ratio is a lower bound."""
    if not ours["reached"] or ours["seconds"] <= 0:
        return "n/a (clearsight did not reach it)", None, False
    value = seed["seconds"] / ours["seconds"]
    if seed["reached"]:
        return f"{value:.2f}x", value, True
    return f">= {value:.2f}x", value, False


def _header(result: dict[str, Any], file: str) -> str:
    env = result.get("environment", {})
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
    load = env.get("load_average_start")
    return (
        f"From `{file}`: `{env.get('command', '?')}`, {env.get('date', '?')}, "
        f"{env.get('cpu', '?')} ({env.get('cores_usable', '?')} cores usable), load average "
        f"(1, 5, 15 min) at the start {', '.join(map(str, load)) if load else '?'}; {versions}."
    )


class Pair(NamedTuple):
    """One run at one target: its seed, the seed code's and clearsight's summaries, the load."""

    seed: int
    baseline: dict[str, Any]
    ours: dict[str, Any]
    load: list[float]


def _pairs(result: dict[str, Any], target: float) -> list[Pair]:
    pairs = []
    for run in result["runs"]:
        baseline, ours = (summary(Curve.from_list(t["curve"]), target) for t in run["trainings"])
        pairs.append(Pair(run["seed"], baseline, ours, run["trainings"][0]["load_average_start"]))
    return pairs


def train_table(result: dict[str, Any], file: str = "(this run)") -> str:
    target = result["target"]
    names = [t["code"] for t in result["runs"][0]["trainings"]]
    lines = [
        _header(result, file),
        "",
        f"| seed | load avg (1 min) | {names[0]}: s to {target} | epochs | {names[1]}: s to "
        f"{target} | epochs | speed-up |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for p in _pairs(result, target):
        text, value, exact = _ratio(p.baseline, p.ours)
        verdicts.append((value, exact))
        lines.append(
            f"| {p.seed} | {p.load[0] if p.load else '?'} | {_seconds(p.baseline)} | "
            f"{p.baseline['epochs']} | {_seconds(p.ours)} | {p.ours['epochs']} | {text} |"
        )
    met = all(v is not None and v >= GOAL_SPEEDUP for v, _ in verdicts)
    bounds = sum(1 for v, e in verdicts if v is not None and not e)
    verdict = "met" if met else "MISSED"
    if met and bounds:
        verdict += (
            f" (as lower bounds: the seed code did not reach {target} in {bounds} of "
            f"{len(verdicts)} runs)"
        )
    lines += [
        "",
        f"Goal: clearsight at least {GOAL_SPEEDUP:.0f}x faster to {target} in every run: "
        f"**{verdict}**. Epoch cap: {result['max_epochs']}; clearsight plans "
        f"{result['clearsight_settings']['epochs']} epochs (its default or the cap, whichever "
        "is smaller) and may stop early on its validation loss.",
    ]
    return "\n".join(lines)


def train_thresholds_table(result: dict[str, Any], file: str = "(this run)") -> str:
    names = [t["code"] for t in result["runs"][0]["trainings"]]
    lines = [
        f"| holdout accuracy | {names[0]}: median s (runs reached) | {names[1]}: median s "
        "(runs reached) | speed-up per run |",
        "|---:|---:|---:|---|",
    ]
    for threshold in result["thresholds"]:
        pairs = _pairs(result, threshold)
        cells = []
        for column in ("baseline", "ours"):
            summaries = [getattr(p, column) for p in pairs]
            reached = [s["seconds"] for s in summaries if s["reached"]]
            median = f"{statistics.median(reached):.1f}" if reached else "-"
            cells.append(f"{median} ({len(reached)}/{len(pairs)})")
        ratios = ", ".join(_ratio(p.baseline, p.ours)[0] for p in pairs)
        lines.append(f"| {threshold} | {cells[0]} | {cells[1]} | {ratios} |")
    return "\n".join(lines)


# -- the other benchmarks' files -------------------------------------------------------------
def ingest_table(result: dict[str, Any], file: str = "(this run)") -> str:
    lines = [
        f"From `{file}`: `{result.get('command', '?')}`, {result.get('device', '?')}, "
        f"python {result.get('python', '?')}, base {result.get('base_images', '?')} images.",
        "",
        "| batches | total s | s/batch mean | s/batch median | first tenth | last tenth "
        "| batch files |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        lines.append(
            f"| {r['batches']} | {r['total_s']:.1f} | {r['mean_s_per_batch']:.3f} "
            f"| {r['median_s_per_batch']:.3f} | {r['first_tenth_mean_s']:.3f} "
            f"| {r['last_tenth_mean_s']:.3f} | {r['loaded_files']} |"
        )
    return "\n".join(lines)


def _gap(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.3f} %"


def serve_table(result: dict[str, Any], file: str = "(this run)") -> str:
    lines = [
        f"From `{file}`: `{result.get('command', '?')}`, {result.get('date', '?')}, "
        f"{result.get('cpu', '?')}, load average before {result.get('load_average_before')}, "
        f"after {result.get('load_average_after')}.",
        "",
    ]
    configs = result.get("configs", {})
    if configs:
        lines += ["| server | version | configuration |", "|---|---|---|"]
        versions = result.get("servers", {})
        lines += [f"| {n} | {versions.get(n, '?')} | {c} |" for n, c in configs.items()]
        lines.append("")
    lines += [
        "| server | workload | loop | load | requests | req/s | p50 ms | p95 ms | p99 ms | errors "
        "| completeness gap |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['server']} | {r['workload']} | {r['mode']} | {r['load']} | {r['requests']} "
            f"| {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['errors']} | {_gap(r.get('completeness_gap'))} |"
        )
    lines.append("")
    for name, check in result.get("checks", {}).items():
        extra = f", best peer {check['best_peer']}" if "best_peer" in check else ""
        if "floor_p99_ms" in check:
            extra += f"; the framework's floor at its own 50 %: {check['floor_p99_ms']:.1f} ms"
        if "gap_clearsight" in check:
            extra += (
                f"; completeness gap clearsight {_gap(check['gap_clearsight'])}, "
                f"peer {_gap(check['gap_peer'])}"
            )
        lines.append(
            f"- {'met' if check['met'] else 'MISSED'}: {name}: {check['value']:.2f} "
            f"(target {check['target']:.4g}{extra})"
        )
    return "\n".join(lines)


def explain_table(result: dict[str, Any], file: str = "(this run)") -> str:
    rows = result["results"]
    reference = rows.get("shap.GradientExplainer defaults (10 classes)", {}).get("p50_ms")
    lines = [
        f"From `{file}`: `{result.get('command', '?')}`, {result.get('device', '?')}, "
        f"{result.get('versions', {})}.",
        "",
        "| method | p50 ms (1 image) | p95 ms (1 image) | images/s (batch) | completeness gap "
        "(median) | gradient evaluations per image | p50 speed-up vs GradientExplainer |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        gap = row.get("completeness_gap_median")
        evaluations = row.get("evaluations_mean")
        speedup = f"{reference / row['p50_ms']:.1f}x" if reference else "-"
        lines.append(
            f"| {name} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['images_per_s']:.1f} "
            f"| {'-' if gap is None else f'{gap:.4f}'} "
            f"| {'-' if evaluations is None else f'{evaluations:.1f}'} | {speedup} |"
        )
    lines.append("")
    for check, passed in result.get("checks", {}).items():
        lines.append(f"- {'PASS' if passed else 'MISS'}: {check}")
    return "\n".join(lines)


def tail_ab_table(result: dict[str, Any], file: str = "(this run)") -> str:
    """Paired rounds of ``benchmarks/tail_ab.py``: one row per round, then each variant's
    medians and, against the first variant, in how many rounds its p99 was lower."""
    names = list(result["variants"])
    settings = "; ".join(
        f"{name}: {', '.join(f'`{k}={v}`' for k, v in env.items()) or 'as shipped'}"
        for name, env in result["variants"].items()
    )
    fraction = f"{result.get('fraction', 0.5):.0%}"
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for run in result["runs"]:
        by_round.setdefault(run["round"], {})[run["variant"]] = run
    lines = [
        _header(result, file),
        "",
        f"Variants: {settings}. Open loop at {fraction} of each run's own capacity "
        f"(32 closed-loop clients), {result.get('seconds', '?')} s after 2 s of warm-up.",
        "",
        "| round | "
        + " | ".join(f"{n} capacity req/s | {n} p50 ms | {n} p99 ms | {n} core busy" for n in names)
        + " |",
        "|---:|" + "---:|" * (4 * len(names)),
    ]
    for number, runs in sorted(by_round.items()):
        cells = []
        for name in names:
            run = runs.get(name)
            cells += (
                ["-"] * 4
                if run is None
                else [
                    f"{run['capacity_rps']:.0f}",
                    f"{run['p50_ms']:.1f}",
                    f"{run['p99_ms']:.1f}",
                    f"{100 * run['server_core_busy']:.0f} %",
                ]
            )
        lines.append(f"| {number} | " + " | ".join(cells) + " |")
    lines.append("")
    summary = result["summary"]
    for name in names:
        s = summary[name]
        line = (
            f"- {name}: median p99 {s['median_p99_ms']:.1f} ms, median capacity "
            f"{s['median_capacity_rps']:.0f} req/s"
        )
        wins = s.get(f"lower_p99_than_{names[0]}")
        if wins is not None:
            line += (
                f"; p99 lower than {names[0]}'s in {wins} of {s['rounds']} rounds, median "
                f"ratio {s['median_p99_ratio']:.2f}"
            )
        lines.append(line)
    return "\n".join(lines)


def forward_call_table(result: dict[str, Any], file: str = "(this run)") -> str:
    """Per-call cost of the served forward pass, Keras vs LiteRT (``benchmarks/forward_call.py``)."""
    lines = [
        _header(result, file),
        "",
        "| images per call | Keras us | LiteRT us | speed-up | largest probability difference |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n, row in result["batches"].items():
        lines.append(
            f"| {n} | {row['keras_us']:.0f} | {row['litert_us']:.0f} | {row['speedup']:.2f}x "
            f"| {row['max_probability_difference']:.1g} |"
        )
    return "\n".join(lines)


def ledger_insert_table(result: dict[str, Any], file: str = "(this run)") -> str:
    """What ``AnswerLedger.record`` costs the event loop, per variant and round
    (``benchmarks/ledger_insert.py``)."""
    lines = [
        _header(result, file),
        "",
        f"{result['rate']:.0f} calls/s for {result['seconds']:.0f} s, one image each, one core.",
        "",
        "| variant | round | p50 ms | p99 ms | p99.9 ms | max ms | calls over 10 ms "
        "| write-ahead log MB | dropped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['variant']} | {row['round']} | {row['p50_ms']:.3f} | {row['p99_ms']:.2f} "
            f"| {row['p999_ms']:.1f} | {row['max_ms']:.1f} | {row['over_10_ms']} "
            f"| {row['wal_mb']:.1f} | {row['dropped']} |"
        )
    return "\n".join(lines)


KINDS: dict[str, Callable[[dict[str, Any], str], str]] = {
    "train": train_table,
    "train-thresholds": train_thresholds_table,
    "ingest": ingest_table,
    "serve": serve_table,
    "explain": explain_table,
    "tail-ab": tail_ab_table,
    "forward-call": forward_call_table,
    "ledger-insert": ledger_insert_table,
}


# -- the docs --------------------------------------------------------------------------------
def table(kind: str, file: str, repo: Path = REPO) -> str:
    """The body of one marked block: the table from ``file``, or a note that it awaits a run."""
    if kind not in KINDS:
        raise ValueError(f"unknown table kind {kind!r} (known: {', '.join(KINDS)})")
    path = repo / file
    if not path.is_file():
        return f"_Awaiting a run: `{file}` is not committed yet._"
    return KINDS[kind](json.loads(path.read_text()), file)


def render(text: str, repo: Path = REPO) -> str:
    """``text`` with every marked block's body regenerated from its file."""

    def replace(match: re.Match[str]) -> str:
        body = table(match["kind"], match["file"], repo)
        # A blank line before the closing marker ends a Markdown table for every renderer.
        return f"{match['open']}{body}\n\n{match['close']}"

    return BLOCK.sub(replace, text)


def script_options(name: str, repo: Path = REPO) -> set[str] | None:
    """Every ``--option`` the script ``benchmarks/<name>.py`` gives ``add_argument`` (read from
    its source: importing it would import Keras); None when there is no such script."""
    path = repo / "benchmarks" / f"{name}.py"
    if not path.is_file():
        return None
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            found |= {
                a.value
                for a in node.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value[:2] == "--"
            }
    return found


def cited_options(text: str) -> list[tuple[str, str]]:
    """(script, option) for every option a cited benchmark command passes, up to the end of
    its code span or line."""
    cited = []
    for match in COMMAND.finditer(text):
        script = match["path"] or match["module"]
        rest = re.split(r"\s(?:&&|;|\||>)\s", match["rest"])[0]
        cited += [(script, option) for option in OPTION.findall(rest)]
    return cited


def unknown_options(paths: tuple[Path, ...] = CITING, repo: Path = REPO) -> list[str]:
    """One line per cited option (or script) that does not exist."""
    problems = []
    for path in paths:
        for script, option in cited_options(path.read_text()):
            options = script_options(script, repo)
            where = path.relative_to(repo) if path.is_relative_to(repo) else path
            if options is None:
                problems.append(f"{where}: benchmarks/{script}.py does not exist")
            elif option not in options and option != "--help":
                problems.append(f"{where}: benchmarks/{script}.py has no option {option}")
    return sorted(set(problems))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="Change nothing; exit 1 if a table is stale."
    )
    args = parser.parse_args(argv)
    stale = []
    for doc in DOCS:
        text = doc.read_text()
        fresh = render(text)
        if fresh != text:
            if args.check:
                stale.append(f"{doc.relative_to(REPO)}: a table differs from its result file")
            else:
                doc.write_text(fresh)
                print(f"regenerated the tables of {doc.relative_to(REPO)}")
    problems = stale + unknown_options()
    for problem in problems:
        print(problem, file=sys.stderr)
    if stale:
        print("run: python -m benchmarks.tables", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
