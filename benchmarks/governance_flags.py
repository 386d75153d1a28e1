"""How reliably the bias flags catch planted annotators, and how often they flag careful ones.

Simulates many populations with a known true preference (pair queries, clip order random): five
careful people (error rate drawn from [0, max_noise]) plus one always-left, one random clicker, one
position-biased (answers "left" with probability 0.6 regardless, else correctly) and one too-fast
(correct but 0.2-0.6 s per answer). For k = 10..50 labels per person it reports, over all seeds,
the share of planted annotators caught with their expected flag and the share of careful ones
flagged at all. Control: populations of careful people only (no planted ones), where every flag is a
false flag.

    python benchmarks/governance_flags.py --seeds 200
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rlhf_gym.governance.agreement import Label
from rlhf_gym.governance.bias import population_flags

CAREFUL = ("c1", "c2", "c3", "c4", "c5")
PLANTED = {"always_left": "same_side", "random": "random_clicking", "leans_left": "position_bias",
           "too_fast": "too_fast"}


def simulate(seed: int, per_person: int, max_noise: float, planted: bool, n_queries: int = 60) -> list[Label]:
    rng = np.random.default_rng(seed)
    truth = (rng.random(n_queries) < 0.5).astype(float)  # 1 = left clip is better (order is random)
    people = [*CAREFUL, *(PLANTED if planted else ())]
    noise = {p: float(rng.uniform(0.0, max_noise)) for p in CAREFUL}
    labels = []
    for p in people:
        t = 0.0
        for q in rng.choice(n_queries, size=per_person, replace=False):
            correct = truth[q] if rng.random() >= noise.get(p, 0.05) else 1.0 - truth[q]
            rt = float(rng.lognormal(np.log(4.0), 0.4))
            v = {"always_left": 1.0, "random": float(rng.random() < 0.5),
                 "leans_left": 1.0 if rng.random() < 0.6 else correct}.get(p, correct)
            if p == "too_fast":
                rt = float(rng.uniform(0.2, 0.6))
            t += rt + 1.0
            labels.append(Label(None, f"q{q}", p, "pair", float(v), t - rt, t, rt))
    return labels


def run(seeds: int, ks: list[int], max_noise: float) -> dict:
    rows = []
    for k in ks:
        caught = dict.fromkeys(PLANTED, 0)
        careful_flagged = control_flagged = 0
        for seed in range(seeds):
            flags = population_flags(simulate(seed, k, max_noise, planted=True), {}, [*CAREFUL, *PLANTED])
            for p, f in PLANTED.items():
                caught[p] += f in {x.name for x in flags[p]}
            careful_flagged += sum(bool(flags[p]) for p in CAREFUL)
            ctrl = population_flags(simulate(10_000 + seed, k, max_noise, planted=False), {}, CAREFUL)
            control_flagged += sum(bool(ctrl[p]) for p in CAREFUL)
        rows.append({"labels_per_person": k, **{f"caught_{p}": caught[p] / seeds for p in PLANTED},
                     "careful_flagged": careful_flagged / (seeds * len(CAREFUL)),
                     "control_flagged": control_flagged / (seeds * len(CAREFUL))})
    return {"seeds": seeds, "max_noise": max_noise, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--labels", default="10,20,30,40,50")
    ap.add_argument("--max-noise", type=float, default=0.1, help="largest error rate of a careful annotator")
    ap.add_argument("--out", default="benchmarks/results/governance_flags.json")
    args = ap.parse_args()
    t0 = time.time()
    res = run(args.seeds, [int(x) for x in args.labels.split(",")], args.max_noise)
    res["seconds"] = round(time.time() - t0, 1)
    head = ["labels", *PLANTED, "careful flagged", "control flagged"]
    print(f"{args.seeds} populations per row, careful error rate up to {args.max_noise:.0%}")
    print("  ".join(f"{h:>15}" for h in head))
    for r in res["rows"]:
        vals = [str(r["labels_per_person"]), *(f"{r[f'caught_{p}']:.1%}" for p in PLANTED),
                f"{r['careful_flagged']:.2%}", f"{r['control_flagged']:.2%}"]
        print("  ".join(f"{v:>15}" for v in vals))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    name = out if args.max_noise == 0.1 else out.with_name(f"{out.stem}_noise{args.max_noise:g}{out.suffix}")
    name.write_text(json.dumps(res, indent=1))
    print(f"written to {name} in {res['seconds']}s")


if __name__ == "__main__":
    main()
