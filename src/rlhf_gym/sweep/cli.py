"""``rlhf-gym sweep SPEC``: run a grid of training runs on Ray (or ``--serial``) and print one results table."""

from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sweep", help="run a grid of training runs (Ray) and print one results table",
                       description="Run every row x seed of a TOML/YAML sweep spec (see rlhf_gym.sweep) and write "
                                   "OUT/sweep.json with the IQM, median and share of seeds solved, with intervals.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("spec", help="sweep spec (.toml, .yaml)")
    s.add_argument("--out", default=None, help="run folders and sweep.json (default: the spec's `out`)")
    s.add_argument("--seeds", type=int, default=None, help="run seeds 0..N-1 (overrides the spec)")
    s.add_argument("--serial", action="store_true", help="run the jobs one after another in this process, without Ray")
    s.add_argument("--address", default=None,
                   help="Ray cluster to run on (e.g. ray://head:10001 or auto); default: a local Ray instance")
    s.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all cores)")
    s.add_argument("--resume", action="store_true", help="keep runs already in OUT/sweep.json with the same config")
    s.add_argument("--dry-run", action="store_true", help="list the runs and stop")
    s.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from rlhf_gym.sweep import format_table, load_spec, run_sweep

    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.cpus is not None and args.cpus < 1:
        raise ValueError(f"--cpus must be >= 1, got {args.cpus}")
    if args.serial and args.address:
        raise ValueError("--serial runs without Ray; drop --address (or --serial)")
    sweep = load_spec(args.spec, out=args.out, seeds=args.seeds)
    jobs = sweep.jobs()
    print(f"sweep {sweep.name}: {len(sweep.rows)} row(s) x {len(sweep.seeds)} seed(s) = {len(jobs)} run(s) -> {sweep.out}")
    if args.dry_run:
        for j in jobs:
            print(f"  {j.row} seed {j.seed}: {j.config}")
        return 0
    if not args.serial:
        from rlhf_gym.sweep import import_ray

        import_ray()  # fail fast, naming the extra
    doc = run_sweep(sweep, serial=args.serial, address=args.address,
                    cpus=args.cpus or (None if args.address else os.cpu_count()))
    print(format_table(doc["rows"], sweep.metric))
    failed = sum(1 for r in doc["runs"] if "error" in r)
    print(f"results in {sweep.out / 'sweep.json'}" + (f" ({failed} run(s) failed; their errors are there)" if failed else ""))
    return 1 if failed else 0
