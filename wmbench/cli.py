"""Command line: ``wmbench objectives``, ``train``, ``suite run``, ``suite status``, ``report``,
``diagnose``.

Invalid input (unknown objective or task, a broken objective plugin or one that fails its check,
malformed suite, bad override, missing renderer, a run directory that cannot be resumed) prints one
``wmbench: error: ...`` message and exits with status 2 before any training starts. A run stopped
by the NaN guard, or by a failed actor process in async mode, prints its message (the actor's
traceback included) and exits with status 1.

This module imports only light modules at the top (``wmbench.errors``, ``wmbench.configio``, the
diagnose settings); each command imports what it needs, so ``--help`` and ``report`` load no torch
and ``objectives``, ``suite status`` and ``suite run --dry-run`` no Lightning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wmbench.configio import ConfigError
from wmbench.diagnostics.config import DiagnoseConfig
from wmbench.errors import RunError, RunInterrupted, UsageError


def _cmd_objectives(args: argparse.Namespace) -> int:
    from wmbench.objectives import registry

    if args.objectives_command == "check":
        return _cmd_objectives_check(args)
    rows = [("name", "origin", "class", "status")]
    for entry in registry.entries():
        try:
            registry.load(entry)
            status = "ok"
        except registry.ObjectiveLoadError as err:
            status = f"BROKEN: {err.what} (wmbench objectives check {entry.key})"
        origin = "built-in" if entry.builtin else f"{entry.distribution} {entry.version}"
        rows.append((entry.key, origin, entry.target, status))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
              + "  " + row[3])
    return 0


def _cmd_objectives_check(args: argparse.Namespace) -> int:
    from wmbench.objectives import check_objective, registry

    names = args.names or list(dict.fromkeys(e.key for e in registry.entries()))
    failed = 0
    for name in names:
        try:
            report = check_objective(registry.get(name))
        except ConfigError as err:  # unknown, or a broken entry
            print(f"wmbench: error: {err}", file=sys.stderr)
            failed += 1
            continue
        for line in report.problems:
            print(f"wmbench: error: {line}", file=sys.stderr)
        if report.ok:
            print(report.summary())
        failed += not report.ok
    return 2 if failed else 0


def _cmd_train(args: argparse.Namespace) -> int:
    from wmbench.configio import from_dict, load_yaml, with_overrides
    from wmbench.run_config import RunConfig
    from wmbench.rundir import BASELINES, PLACEMENT, read_config, run_id
    from wmbench.runtime.train import quiet_libraries, train

    quiet_libraries()

    if args.resume:
        placement = [f"train.{key}=" for key in PLACEMENT]
        moves = [item for item in args.set if item.startswith(tuple(placement))]
        given = [
            name
            for name in ("config", "set", "objective", "task", "seed", "mode", "out")
            if getattr(args, name) not in (None, []) and (name != "set" or args.set != moves)
        ]
        if given:
            raise ConfigError(
                "--resume continues RUN_DIR with its own config.yaml; drop "
                f"{', '.join('--' + name for name in given)} (only where it runs may change: "
                f"--set {', '.join(p + '...' for p in placement)})"
            )
        run_dir = Path(args.resume)
        cfg = with_overrides(read_config(run_dir), moves)
        if cfg.objective in BASELINES:
            raise ConfigError(
                f"{run_dir} is the {cfg.objective} baseline (a fixed policy): nothing trains or "
                "resumes"
            )
    else:
        data = load_yaml(args.config) if args.config else {}
        cfg = from_dict(RunConfig, data, where=str(args.config or "config"))
        overrides = list(args.set)
        overrides += [f"objective={args.objective}"] if args.objective else []
        overrides += [f"env.task={args.task}"] if args.task else []
        overrides += [f"seed={args.seed}"] if args.seed is not None else []
        overrides += [f"train.mode={args.mode}"] if args.mode else []
        cfg = with_overrides(cfg, overrides)
        run_dir = Path(args.out or "runs/train") / run_id(cfg.objective, cfg.env.task, cfg.seed)
    summary = train(cfg, run_dir, resume=bool(args.resume))
    print(
        f"done: {run_dir}  eval return {summary['eval_return']:.1f} after {summary['env_frames']} "
        f"env frames ({summary['updates']} updates, {summary['wall_time'] / 60:.1f} min)"
    )
    return 0


def _cmd_suite_run(args: argparse.Namespace) -> int:
    if args.dry_run:
        from wmbench.suite.plan import dry_run

        plan = dry_run(args.file)
        print(plan.to_string(index=False))
        print(
            f"\n{len(plan)} runs, {plan.env_frames.sum():,} env frames and {plan.updates.sum():,} "
            "updates in all (plus the zero-action and random baselines' evaluations); nothing was "
            "run"
        )
        return 0
    if args.launcher == "ray" and args.workers != 1:
        raise ConfigError(
            "--workers applies to --launcher local; with --launcher ray each run reserves "
            "train.threads CPUs (1 if 0)"
        )
    if args.address and args.launcher != "ray":
        raise ConfigError("--address is the Ray cluster's; add --launcher ray")
    from wmbench.report.comparison import verdict
    from wmbench.runtime.train import quiet_libraries
    from wmbench.suite.runner import run_suite

    quiet_libraries()
    trained, baselines, failed = run_suite(
        args.file, args.out, workers=args.workers, launcher=args.launcher, address=args.address,
        gpus_per_run=args.gpus_per_run,
    )
    print(
        "\nFinal evaluation return (deterministic policy; every policy on the same episodes), mean "
        "over seeds [95 % bootstrap CI], against the best trivial baseline:"
    )
    print(trained.to_string(index=False))
    print(verdict(trained))
    print("\nTrivial baselines (untrained agent = every run's evaluation at 0 env frames):")
    print(baselines.to_string(index=False))
    if failed:
        print(
            f"\n{len(failed)} run(s) failed (see status.json in each): {', '.join(failed)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_suite_status(args: argparse.Namespace) -> int:
    from wmbench.suite.plan import progress, status

    runs = status(args.file, args.out)
    shown = runs[["status", "final_return", "error"]].assign(
        final_return=[f"{v:.1f}" if v == v else "—" for v in runs.final_return],  # NaN: none yet
        error=runs.error.fillna("").str.slice(0, 60),
    )
    print(shown.rename_axis("run").to_string())
    print(progress(runs.status.to_dict()))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from wmbench.report.markdown import build

    out = args.out or str(Path(args.suite_dir) / "report")  # reports/ holds curated results
    print(f"wrote {build(args.suite_dir, out, reps=args.reps, seed=args.seed)}")
    return 0


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from wmbench.diagnostics.run import diagnose

    config = DiagnoseConfig(
        episodes=args.episodes,
        test_episodes=args.test_episodes,
        max_steps=args.max_steps,
        context=args.context,
        horizon=args.horizon,
        decoder_steps=args.decoder_steps,
        alphas=args.alpha,
        seed=args.seed,
    )
    results = diagnose(args.run_dir, config)
    r2 = {
        name: "n/a" if v["overall"] is None else f"{v['overall']:.3f}"
        for name, v in results["r2"].items()
    }
    print(
        f"state-probe R² (held out): feat {r2['feat']}, deter {r2['deter']}; "
        f"random init: feat {r2['random_feat']}, deter {r2['random_deter']}"
    )
    print(f"wrote {Path(args.run_dir) / 'diagnostics'} (results.json, metrics.csv, open_loop.png)")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, e.g. 1,10,100; got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wmbench",
        description="Compare world-model representation objectives on one RSSM and one "
        "imagination learner.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "objectives",
        help="list registered objectives (built-in and entry points), or check them",
        description="List every registered objective: where it comes from (built-in, or the "
        "distribution and version of its entry point), its class, and whether it loads.",
    )
    p.set_defaults(func=_cmd_objectives, objectives_command=None)
    check = p.add_subparsers(dest="objectives_command").add_parser(
        "check",
        help="run objectives on fake batches: shapes, finiteness, gradients, config, loss names",
        description="Load each objective through the registry, build it with its default config "
        "at tiny sizes (Gaussian and categorical latents) and run after_update, forward, backward "
        "and decode on a fake batch; print one line per problem with its fix (exit 2), or an ok "
        "line. train and suite run (--dry-run too) run the same check before any env is created.",
    )
    check.add_argument(
        "names", nargs="*", metavar="NAME", help="objectives to check (default: every one)"
    )

    p = sub.add_parser(
        "train",
        help="train one objective on one task with one seed",
        description="Train one run; unset options take the RunConfig defaults "
        "(wmbench/run_config.py): objective reconstruction, task dmc:cartpole-balance, seed "
        "0, the dreamer-v3 preset at its size S. Tasks: dmc:<domain>-<task> (dm_control pixels) or "
        "toy:reach (a tiny pixel task for quick checks).",
    )
    p.add_argument("--objective", help="registered objective name (see `wmbench objectives`)")
    p.add_argument("--task", help="dmc:<domain>-<task> (e.g. dmc:walker-walk) or toy:reach (tests)")
    p.add_argument("--seed", type=int, help="seed of torch, numpy, the env and replay sampling")
    p.add_argument(
        "--mode",
        choices=["sync", "async"],
        help="sync: collect, then update, in one deterministic process (default); async: actor "
        "processes act while the learner trains, at the same train ratio (train.actors, "
        "train.publish_every)",
    )
    p.add_argument("--config", help="YAML file of RunConfig values")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. agent.world_model.rssm.deter=200 (repeatable)")
    p.add_argument("--out", help="parent directory of the run directory (default: runs/train)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last checkpoint, with its config.yaml (no "
        "other options but --set train.accelerator=..., train.compile=..., "
        "train.compile_mode=...: e.g. a GPU run on the CPU)",
    )
    p.set_defaults(func=_cmd_train)

    suite = sub.add_parser("suite", help="run suites of objectives × tasks × seeds").add_subparsers(
        dest="suite_command", required=True
    )
    p = suite.add_parser(
        "run",
        help="run a suite file, then print its comparison table",
        description="Validate a suite file, run every objective x task x seed not finished yet, "
        "and write <out>/<name>/results.csv, comparison.md and curves.png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("file", help="suite YAML file (see suites/smoke.yaml)")
    p.add_argument("--out", default="runs", help="root output directory")
    p.add_argument(
        "--workers", type=_positive_int, default=1, help="runs in parallel, one process each"
    )
    p.add_argument(
        "--launcher",
        choices=["local", "ray"],
        default="local",
        help="local: this machine (see --workers); ray: each run a Ray task (pip install "
        "'wmbench[ray]')",
    )
    p.add_argument(
        "--address",
        help="Ray cluster address for ray.init (e.g. auto); default: start a local Ray instance",
    )
    p.add_argument(
        "--gpus-per-run",
        type=float,
        metavar="F",
        help="share of a GPU each run gets, in (0, 1] (0.25: 4 runs per GPU): local workers each "
        "see one GPU (CUDA_VISIBLE_DEVICES), Ray tasks reserve num_gpus=F; default: no placement",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate, list the runs and their env frames and updates, run nothing",
    )
    p.set_defaults(func=_cmd_suite_run)
    p = suite.add_parser(
        "status",
        help="print done/running/failed/pending per run of a suite",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("file", help="suite YAML file")
    p.add_argument("--out", default="runs", help="root output directory the suite was run with")
    p.set_defaults(func=_cmd_suite_status)

    p = sub.add_parser(
        "report",
        help="write the comparison report of a finished suite",
        description="Read the result store in SUITE_DIR (runs/<suite>) and write report.md with "
        "its figures: final return per task, IQM/mean/median/optimality gap, probability of "
        "improvement, learning curves, performance profiles, cost, configuration and package "
        "versions (95 % stratified-bootstrap CIs, Agarwal et al. 2021).",
    )
    p.add_argument("suite_dir", help="a suite's output directory, e.g. runs/smoke")
    p.add_argument("-o", "--out", help="report directory (default: SUITE_DIR/report)")
    p.add_argument(
        "--reps",
        type=_positive_int,
        default=2000,
        help="bootstrap resamples per confidence interval (default: 2000)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    p.set_defaults(func=_cmd_report)

    d = DiagnoseConfig()
    p = sub.add_parser(
        "diagnose",
        help="state probes and open-loop prediction on a run's checkpoint",
        description="Record episodes with the run's policy, fit ridge state probes (trained and "
        "randomly initialised world model), train a probe decoder on detached features, "
        "predict open-loop; write RUN_DIR/diagnostics/ (results.json, metrics.csv, "
        "open_loop.png).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run_dir", help="run directory with config.yaml and checkpoints/last.ckpt")
    for name, text in [
        ("episodes", "episodes recorded with the agent's policy"),
        ("test_episodes", "of those, held out (R², open loop)"),
        ("max_steps", "agent steps per episode at most"),
        ("context", "k observed frames per open-loop window"),
        ("horizon", "n imagined steps per open-loop window"),
        ("decoder_steps", "Adam steps of the probe decoder"),
    ]:
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name), help=text)
    p.add_argument(
        "--alpha",
        type=_float_list,
        default=d.alphas,
        metavar="A[,A...]",
        help="candidate ridge penalties, comma-separated; each probe takes the best in "
        "leave-one-episode-out cross-validation",
    )
    p.add_argument(
        "--seed", type=int, default=d.seed, help="seed of action sampling and the probe decoder"
    )
    p.set_defaults(func=_cmd_diagnose)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as err:
        print(f"wmbench: error: {err}", file=sys.stderr)
        return 2
    except RunError as err:
        print(f"wmbench: error: {err}", file=sys.stderr)
        return 1
    except RunInterrupted as err:  # a run stopped at a signal (see wmbench.runtime.signals)
        print(f"wmbench: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:  # Ctrl-C outside a run
        print("wmbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
