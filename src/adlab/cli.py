"""The `adlab` command: parses arguments, calls the library, prints. No logic of its own.

Heavy imports happen inside the command functions so `adlab --help` starts instantly.
"""

from __future__ import annotations

import argparse
import errno
import re
import sys

EXIT_BAD_INPUT = 2


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.lr=0.01 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adlab", description="Applied Deep Learning lab: one config, one command, a run directory with a report."
    )
    parser.add_argument("--version", action="version", version=f"adlab {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train and evaluate a model from a YAML config")
    p.add_argument("config", nargs="?", help="YAML config file (not with --resume)")
    _add_overrides(p)
    p.add_argument("--out", help="run directory (default: runs/<name>/<timestamp>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="continue an interrupted run from its last checkpoint "
        "(same config and seed: the same final metrics as an uninterrupted run)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary lines")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a trained run on its test set or on other data")
    p.add_argument("run", help="run directory or checkpoint")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="data.KEY=VALUE",
        help="change the evaluation data, e.g. --set data.root=other/ (repeatable)",
    )
    p.add_argument("--out", help="folder for metrics, predictions and figures (default: RUN/evaluation)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation in that folder")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files (or segment them: mask files) with a trained run")
    p.add_argument("run", help="run directory or checkpoint")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top", type=int, default=3, help="classes to show per image (default 3)")
    p.add_argument("--out", help="segmentation runs: the folder for the predicted masks (OUT/<image stem>.png)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier predictions folder in --out")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("fuse", help="late fusion of runs evaluated on the same test set")
    p.add_argument("runs", nargs="+", help="two or more run directories")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--method", default="mean_prob", metavar="METHOD", help="mean_prob (default), sum_logits or vote")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("generate", help="new images from a trained autoencoder (AE / VAE / DAE)")
    p.add_argument("run", help="autoencoder run directory or checkpoint")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--out", default="samples.png", help="PNG file to write (default samples.png)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an image adlab made earlier at --out")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("study", help="run a study: a grid of runs, seeds, fusions, then the report")
    p.add_argument("study", help="study YAML file")
    p.add_argument("--out", help="study folder (default: runs/studies/<name>)")
    p.add_argument("--resume", action="store_true", help="keep finished runs, make the others")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key in every run, after the study's own settings "
        "(repeatable), e.g. --set train.epochs=1",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="the study's quick version (its quick: block: fewer epochs or seeds, some runs), said in the report",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME[,NAME]",
        help="run part of the study: runs, variants or sections by name (and the runs they start from)",
    )
    p.add_argument(
        "--plan",
        action="store_true",
        help="say what the study would do (runs, data, weights, an estimated time) and write nothing",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="N local worker processes sharing the study's queue, each with its share of the CPU threads (or one GPU)",
    )
    p.add_argument(
        "--worker",
        action="store_true",
        help="be one worker of the study in --out (start as many as "
        "you like, on any machine that sees the folder or the --storage)",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="the queue's Optuna storage (default: a journal file in the "
        "study folder); a PostgreSQL or MySQL URL for workers without a shared file system",
    )
    p.add_argument("--status", action="store_true", help="done / running / waiting / failed, per run; writes nothing")
    p.add_argument(
        "--retry-failed", action="store_true", help="queue the runs that failed again (with --workers or --worker)"
    )
    slurm = p.add_argument_group("on a SLURM cluster (docs/cluster.md)")
    slurm.add_argument(
        "--submit",
        choices=["slurm"],
        help="submit the workers as a job array (DIR/slurm/worker.sbatch) "
        "and return; with --plan, print the script only",
    )
    slurm.add_argument("--array", type=int, default=1, metavar="N", help="workers: tasks of the job array (default 1)")
    slurm.add_argument("--partition", help="sbatch --partition")
    slurm.add_argument("--time", help="sbatch --time, per worker (e.g. 4:00:00)")
    slurm.add_argument(
        "--cpus-per-task", type=int, metavar="N", help="sbatch --cpus-per-task (torch threads per worker)"
    )
    slurm.add_argument("--gpus-per-task", metavar="N", help="sbatch --gpus-per-task (e.g. 1 or a100:1)")
    slurm.add_argument("--mem", help="sbatch --mem, per worker (e.g. 16G)")
    slurm.add_argument(
        "--signal",
        metavar="SIG@SECONDS",
        help="have SLURM send SIG (TERM, USR1, USR2) that long "
        "before the time limit: the worker puts its run back in the queue and stops",
    )
    slurm.add_argument("--requeue", action="store_true", help="sbatch --requeue: a preempted task comes back and joins")
    slurm.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="OPTION",
        help="any other sbatch option, e.g. --sbatch=--qos=long (repeatable)",
    )
    slurm.add_argument(
        "--cancel", action="store_true", help="scancel the study's SLURM jobs (their runs go back to the queue)"
    )
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("demo", help="the whole curriculum on offline data, ending in a report (a study file)")
    p.add_argument("--out", default="runs/demo", help="demo folder (default runs/demo; replaced each time)")
    p.add_argument("--quick", action="store_true", help="about 3 minutes on a 2-core CPU (the full demo: about 20)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key in every run of the demo (repeatable)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("search", help="hyperparameter search with Optuna (grid / random / TPE, k-fold CV)")
    p.add_argument("search", help="search YAML file")
    p.add_argument("--out", help="search folder (default: runs/searches/<name>)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("report", help="render a study folder's report again (report.md, report.html)")
    p.add_argument("dir", help="study folder")
    p.set_defaults(func=cmd_report)

    add_data_commands(sub)

    p = sub.add_parser(
        "config",
        help="print the fully resolved config (defaults + file + overrides), or with "
        "--describe the annotated reference of every key",
    )
    p.add_argument("config", nargs="?", help="YAML config file (omit for the defaults)")
    _add_overrides(p)
    p.add_argument(
        "--describe",
        action="store_true",
        help="print every key with its type or choices, default and meaning (with a FILE or --set: "
        "also its resolved value)",
    )
    p.add_argument(
        "--markdown",
        action="store_true",
        help="with --describe: print the reference as Markdown (without FILE or --set: docs/config.md)",
    )
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("table", help="Markdown table of metrics from finished runs")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument(
        "--metrics",
        help="comma-separated metrics.json keys (default: the columns of the runs' tasks' reports); "
        "per_class_accuracy gives a column per class (or per_class_accuracy.Car for one)",
    )
    p.set_defaults(func=cmd_table)
    return parser


def add_data_commands(sub) -> None:
    data = sub.add_parser("data", help="detection data tools: KITTI to YOLO, filter, crops, synthetic scenes")
    tools = data.add_subparsers(dest="tool", required=True, metavar="TOOL")

    p = tools.add_parser("kitti-to-yolo", help="KITTI devkit labels to a YOLO data set")
    p.add_argument("--images", required=True, help="folder of KITTI images")
    p.add_argument("--labels", required=True, help="folder of KITTI label .txt files")
    p.add_argument("--out", required=True, help="new YOLO data set folder")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier data-tool output in --out")
    p.add_argument(
        "--classes", required=True, help="KITTI types to keep, in class-id order, e.g. Car,Pedestrian,Cyclist"
    )
    p.add_argument("--rename", action="append", default=[], metavar="OLD=NEW", help="rename a class (repeatable)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val split (0 to 4294967295)")
    p.add_argument("--skip-bad", action="store_true", help="skip and count malformed lines instead of stopping")
    p.set_defaults(func=cmd_kitti_to_yolo)

    p = tools.add_parser("filter", help="keep some classes of a YOLO data set (ids relabelled)")
    p.add_argument("--data", required=True, help="data.yaml")
    p.add_argument("--keep", required=True, help="class names to keep, comma-separated")
    p.add_argument("--out", required=True)
    p.add_argument("--drop-empty", action="store_true", help="drop images left without objects")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier data-tool output in --out")
    p.set_defaults(func=cmd_filter)

    p = tools.add_parser("crops", help="cut every box into an ImageFolder classification data set")
    p.add_argument("--data", required=True, help="data.yaml")
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=128, help="crop side in pixels (default 128)")
    p.add_argument("--pad", type=float, default=0.0, help="context around each box, as a fraction of its size")
    p.add_argument("--min-size", type=int, default=8, help="skip boxes smaller than this (pixels)")
    p.add_argument("--skip-bad", action="store_true", help="skip and count malformed label lines and unreadable images")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier data-tool output in --out")
    p.set_defaults(func=cmd_crops)

    p = tools.add_parser("synth-scenes", help="KITTI-like synthetic scenes with exact YOLO labels")
    p.add_argument("--out", required=True)
    p.add_argument("--images", type=int, required=True, help="number of images")
    p.add_argument("--classes", help="object classes (Fashion-MNIST or digits class names), comma-separated")
    p.add_argument("--size", default="384x128", help="WIDTHxHEIGHT (default 384x128)")
    p.add_argument("--seed", type=int, default=0, help="0 to 4294967295")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--source", default="auto", choices=["auto", "fashion_mnist", "digits"])
    p.add_argument(
        "--masks",
        action="store_true",
        help="also write masks/ (one class id per pixel) and classes.yaml for task segment",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier data-tool output in --out")
    p.set_defaults(func=cmd_synth_scenes)


def _names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _print_summary(summary: dict, indent: str = "") -> None:
    for key, value in summary.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_summary(value, indent + "  ")
        else:
            print(f"{indent}{key}: {value}")


def cmd_kitti_to_yolo(args) -> None:
    from pathlib import Path

    from adlab.detection.kitti import kitti_to_yolo
    from adlab.errors import AdlabError

    rename = {}
    for item in args.rename:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise AdlabError(f"--rename {item!r}: expected OLD=NEW")
        rename[old.strip()] = new.strip()
    _print_summary(
        kitti_to_yolo(
            Path(args.images),
            Path(args.labels),
            Path(args.out),
            _names(args.classes),
            rename,
            args.val_fraction,
            args.seed,
            args.skip_bad,
            overwrite=args.overwrite,
        )
    )


def cmd_filter(args) -> None:
    from pathlib import Path

    from adlab.detection.tools import filter_classes

    _print_summary(
        filter_classes(Path(args.data), _names(args.keep), Path(args.out), args.drop_empty, overwrite=args.overwrite)
    )


def cmd_crops(args) -> None:
    from pathlib import Path

    from adlab.detection.tools import make_crops

    _print_summary(
        make_crops(
            Path(args.data), Path(args.out), args.size, args.pad, args.min_size, args.skip_bad, overwrite=args.overwrite
        )
    )


def cmd_synth_scenes(args) -> None:
    from adlab.detection.synth import parse_size, synth_scenes

    classes = _names(args.classes) if args.classes else None
    _print_summary(
        synth_scenes(
            args.out,
            args.images,
            classes,
            parse_size(args.size),
            args.seed,
            args.source,
            args.val_fraction,
            overwrite=args.overwrite,
            masks=args.masks,
        )
    )


def cmd_study(args) -> None:
    import json

    from adlab.study.runner import run_study

    _check_slurm_flags(args)
    # --quick and --only travel as the --set items they stand for (adlab.study.spec.study_options): workers,
    # SLURM jobs and --resume carry them as they carry --set
    chosen = ["study.quick=true"] if args.quick else []
    chosen += [f"study.only={json.dumps(text)}" for text in args.only or []]
    args.overrides = chosen + args.overrides
    if args.submit:
        from adlab.study.runner import submit_workers
        from adlab.study.slurm import Options

        options = Options(
            array=args.array,
            partition=args.partition,
            time=args.time,
            cpus_per_task=args.cpus_per_task,
            gpus_per_task=args.gpus_per_task,
            mem=args.mem,
            signal=args.signal,
            requeue=args.requeue,
            extra=args.sbatch,
        )
        submit_workers(
            args.study, options, out=args.out, storage=args.storage, overrides=args.overrides, plan=args.plan
        )
        return
    if args.cancel:
        from adlab.study.runner import cancel_study

        cancel_study(args.study, out=args.out)
        return
    if args.plan:
        from pathlib import Path

        from adlab.study.plan import plan_lines
        from adlab.study.spec import load_study

        study = load_study(args.study, overrides=args.overrides)
        print("\n".join(plan_lines(study, Path(args.out) if args.out else Path("runs") / "studies" / study.name)))
        return
    if args.status:
        from adlab.study.runner import study_status

        print("\n".join(study_status(args.study, args.out, args.storage)))
        return
    if args.workers is not None or args.worker:
        from adlab.study.runner import run_workers

        run_workers(
            args.study,
            out=args.out,
            workers=args.workers,
            worker=args.worker,
            storage=args.storage,
            overrides=args.overrides,
            retry_failed=args.retry_failed,
        )
        return
    if args.retry_failed or args.storage:
        from adlab.errors import ConfigError

        raise ConfigError("--retry-failed and --storage go with --workers N or --worker")
    run_study(args.study, out=args.out, resume=args.resume, overrides=args.overrides)


def _check_slurm_flags(args) -> None:
    """The job array's flags go with --submit slurm; --submit and --cancel with nothing that runs here."""
    from adlab.errors import ConfigError

    given = [
        flag
        for flag, value in (
            ("--array", args.array != 1),
            ("--partition", args.partition),
            ("--time", args.time),
            ("--cpus-per-task", args.cpus_per_task),
            ("--gpus-per-task", args.gpus_per_task),
            ("--mem", args.mem),
            ("--signal", args.signal),
            ("--requeue", args.requeue),
            ("--sbatch", args.sbatch),
        )
        if value
    ]
    if given and not args.submit:
        raise ConfigError(f"{', '.join(given)}: go with --submit slurm")
    if args.submit or args.cancel:
        clash = [
            flag
            for flag, value in (
                ("--workers", args.workers is not None),
                ("--worker", args.worker),
                ("--status", args.status),
                ("--resume", args.resume),
                ("--retry-failed", args.retry_failed),
                ("--cancel", args.cancel and args.submit),
                ("--plan", args.plan and args.cancel),
            )
            if value
        ]
        if clash:
            raise ConfigError(f"{'--submit' if args.submit else '--cancel'} does not go with {', '.join(clash)}")


def cmd_demo(args) -> None:
    from adlab.demo import run_demo

    run_demo(args.out, quick=args.quick, overrides=args.overrides)


def cmd_search(args) -> None:
    from adlab.study.search import run_search

    run_search(args.search, out=args.out)


def cmd_report(args) -> None:
    from adlab.study.report import rerender

    print(f"report: {rerender(args.dir)}")


def cmd_train(args) -> None:
    from adlab.errors import ConfigError
    from adlab.run.train import resume, train

    if args.resume:
        if args.config or args.overrides or args.out or args.overwrite:
            raise ConfigError(
                "--resume RUN continues a run as it was configured: no config file, --set, --out or --overwrite"
            )
        resume(args.resume, verbose=not args.quiet)
    elif not args.config:
        raise ConfigError("train: give a YAML config file (or --resume RUN)")
    else:
        train(args.config, out=args.out, overwrite=args.overwrite, overrides=args.overrides, verbose=not args.quiet)


def cmd_evaluate(args) -> None:
    if _task_of(args.run, "evaluate") == "segment":
        from adlab.tasks.segment.evaluate import evaluate as evaluate_segmenter

        evaluate_segmenter(args.run, overrides=args.overrides, out=args.out, overwrite=args.overwrite)
        return
    from adlab.tasks.classify.evaluate import evaluate

    evaluate(args.run, overrides=args.overrides, out=args.out, overwrite=args.overwrite)


def cmd_predict(args) -> None:
    if _task_of(args.run, "predict") == "segment":
        from adlab.tasks.segment.evaluate import predict as predict_masks

        if not args.out:
            from adlab.errors import ConfigError

            raise ConfigError("predict: a segmentation run writes one mask per image: give --out FOLDER")
        for image, mask, shares in predict_masks(args.run, args.images, args.out, overwrite=args.overwrite):
            classes = ", ".join(f"{name} {share:.0%}" for name, share in shares.items() if share > 0)
            print(f"{image}: {mask} ({classes})")
        return
    if args.out or args.overwrite:
        from adlab.errors import ConfigError

        raise ConfigError("predict: --out and --overwrite are for segmentation runs (their masks)")
    from adlab.tasks.classify.predict import predict

    for path, ranked in predict(args.run, args.images, top=args.top):
        print(f"{path}: " + ", ".join(f"{name} {p:.3f}" for name, p in ranked))


def _task_of(run: str, command: str) -> object:
    """The task a run (folder or checkpoint) was trained for, from its config.yaml or its checkpoint; a task the
    command does not apply to is one line saying what does."""
    from pathlib import Path

    from adlab.errors import AdlabError
    from adlab.io import read_yaml_mapping
    from adlab.models.checkpoints import read_checkpoint, resolve_checkpoint

    config = Path(run) / "config.yaml"
    if Path(run).is_dir() and config.is_file():
        task = read_yaml_mapping(config, "run config").get("task", "classify")
    else:
        task = read_checkpoint(resolve_checkpoint(run))[1].get("task")
    instead = {
        "autoencode": f"{run} is an autoencoder run: its test scores are in its metrics.json and figures/; "
        f"adlab generate {run} draws new images, and a classifier on its encoder (model.name: encoder, "
        f"model.weights: {run}) is what {command} takes",
        "detect": f"{run} is a detection run: its test scores (mAP50, mAP50-95, precision, recall) are in its "
        "metrics.json; ultralytics' own yolo val and yolo predict take its checkpoints/best.pt",
    }
    if task in instead:
        raise AdlabError(instead[str(task)])
    return task


def cmd_fuse(args) -> None:
    from adlab.tasks.classify.fuse import fuse

    fuse(args.runs, out=args.out, method=args.method, overwrite=args.overwrite)


def cmd_generate(args) -> None:
    from adlab.tasks.autoencode.generate import generate

    generate(args.run, n=args.n, out=args.out, seed=args.seed, overwrite=args.overwrite)


def cmd_config(args) -> None:
    import yaml

    from adlab.config import load_config
    from adlab.errors import ConfigError

    if args.markdown and not args.describe:
        raise ConfigError("config: --markdown goes with --describe (adlab config --describe --markdown)")
    config = load_config(args.config, args.overrides)
    if not args.describe:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return
    from adlab.config_reference import render_markdown, render_text

    resolved = config if args.config or args.overrides else None
    print((render_markdown if args.markdown else render_text)(resolved), end="")


def cmd_table(args) -> None:
    from adlab.run.table import metrics_table

    keys = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    print(metrics_table(args.runs, keys))


def _version() -> str:
    from adlab import __version__

    return __version__


def _one_line(exc: BaseException | str) -> str:
    """The message (of an exception, or a line already written) on one line: also when a DataLoader
    worker re-raised it with its traceback attached, or a library's message spans several lines or
    carries terminal colours."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(exc))
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        text = last.split(f"{type(exc).__name__}: ", 1)[-1]
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


# Operating-system refusals that are the user's to fix (a read-only or full disk, permissions),
# told in one line like any other bad input.
USER_OS_ERRORS = {
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.ENAMETOOLONG,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENOENT,
    errno.ELOOP,
    errno.EMFILE,
    errno.EXDEV,
}


def _os_error_line(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else "adlab"
    hints = {
        errno.EROFS: " (choose a writable --out)",
        errno.ENOSPC: " (free some space or choose another --out)",
        errno.EDQUOT: " (free some space or choose another --out)",
    }
    hint = hints.get(exc.errno, "") if exc.errno is not None else ""
    return f"{where}: {exc.strerror or type(exc).__name__}{hint}"


def _out_of_memory(exc: BaseException, config: object) -> str | None:
    """A network, image or batch too large for this machine is the user's to fix: one line, not a
    traceback (torch reports a failed allocation as a RuntimeError)."""
    text = str(exc)
    if not isinstance(exc, MemoryError) and not re.search(r"can't allocate memory|out of memory", text, re.I):
        return None
    asked = re.search(r"allocate (\d+) bytes", text)
    size = f" ({int(asked.group(1)) / 2**30:,.1f} GiB asked for at once)" if asked else ""
    return (
        f"{config + ': ' if isinstance(config, str) else ''}out of memory{size}; "
        "make the network, the images (data.image_size) or train.batch_size smaller"
    )


class _PipeSafeStdout:
    """stdout that outlives its reader: with `adlab ... | head` the job goes on, its output dropped."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop()

    def _drop(self) -> None:
        import os

        devnull = open(os.devnull, "w")
        try:  # also the file descriptor, so the interpreter's own flush at exit finds no broken pipe
            os.dup2(devnull.fileno(), self._stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        self._stream = devnull

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from adlab.errors import AdlabError, Interrupted

    stdout = sys.stdout
    sys.stdout = _PipeSafeStdout(stdout)
    try:
        args.func(args)
    except AdlabError as exc:
        print(f"adlab: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        if exc.errno not in USER_OS_ERRORS or isinstance(exc, BrokenPipeError):
            raise
        print(f"adlab: error: {_one_line(_os_error_line(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Interrupted as exc:
        print(f"adlab: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("adlab: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as exc:
        line = _out_of_memory(exc, getattr(args, "config", None))
        if line is None:
            raise
        print(f"adlab: error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        sys.stdout.flush()
        sys.stdout = stdout
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
