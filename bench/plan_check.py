"""How close `humpback plan` comes to what a run counted: the plan for a finished run's own
settings, stage by stage, against the run's accounting (stats.json), and the ratio of each count.

The plan is made from the inputs alone (the corpus sampled, the seed, the rubric, the step table);
the throughput it times stages with is taken from the run itself (--from-run), so the time column
shows the error of the token counts, not of the throughput (timing another run on the same
hardware is the test of that). With --measure, a second plan times every stage with the
throughput `humpback plan --measure` measures here before the run (a few batches per stage, three
training steps): that column is the plan's whole error, counts and speed, as a user would see it.
Writes bench/results/plan_check.{json,md}, or NAME.{json,md} with --name NAME.

    python bench/plan_check.py runs/demo-accounted [--measure] [--name plan_check_shared]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
FIELDS = ("prompts", "prompt_tokens", "generated_tokens", "read_tokens", "tokens", "seconds")


def compare(planned: float | None, measured: float | None) -> dict:
    ratio = round(planned / measured, 2) if planned and measured else None
    return {"planned": planned, "measured": measured, "ratio": ratio}


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--measure"]
    measure = "--measure" in sys.argv[1:]
    name = "plan_check"
    if "--name" in args[:-1]:
        at = args.index("--name")
        name = args[at + 1]
        del args[at : at + 2]
    if len(args) != 1:
        print(__doc__)
        return 2
    run = Path(args[0])
    stats = json.loads((run / "stats.json").read_text(encoding="utf-8"))
    if not stats.get("accounting"):
        print(f"{run} has no accounting (made before it existed): run it again into a new folder")
        return 2
    from humpback.config import RunConfig, load_yaml
    from humpback.plan import plan, throughput_from_run

    config = RunConfig.model_validate(load_yaml(run / "config.yaml"))
    planned = {s["stage"]: s for s in plan(config, sample=200, throughput=throughput_from_run(run))["stages"]}
    ahead = {s["stage"]: s for s in plan(config, sample=200, measure=True)["stages"]} if measure else {}
    rows = []
    for stage, measured in stats["accounting"].items():
        if stage not in planned:
            continue
        p = planned[stage]
        p_tokens = p["tokens"]
        m_tokens = measured.get("tokens")
        row = {"stage": stage}
        for f in FIELDS:
            m = m_tokens if f == "tokens" else measured.get(f)
            if f == "prompts" and "steps" in measured:
                m = measured.get("examples")
            v = p_tokens if f == "tokens" else p.get(f)
            row[f] = compare(v, m)
        if stage in ahead:
            row["seconds_measured_ahead"] = compare(ahead[stage]["seconds"], measured.get("seconds"))
        rows.append(row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"run": str(run), "stages": rows}, indent=1) + "\n")
    lines = [
        f"# humpback plan against {run}'s accounting",
        "",
        "planned / measured for each count (1.0 is exact); the time uses the run's own tokens/s, so its "
        "ratio is the token count's error.",
        "",
        "| stage | prompts | prompt tokens | generated | read | tokens | seconds |"
        + (" seconds, --measure |" if measure else ""),
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if measure else ""),
    ]
    if measure:
        lines.insert(3, "The last column times the stage with the throughput `humpback plan --measure` measured here.")
    for r in rows:
        cells = [
            "-" if r[f]["ratio"] is None else f"{r[f]['ratio']} ({r[f]['planned']:.0f} / {r[f]['measured']:.0f})"
            for f in (*FIELDS, "seconds_measured_ahead")
            if f in r
        ]
        lines.append(f"| {r['stage']} | " + " | ".join(cells) + " |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
