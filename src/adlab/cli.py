"""The `adlab` command: parses arguments, calls the library, prints. No logic of its own.

Heavy imports happen inside the command functions so `adlab --help` starts instantly.
"""

from __future__ import annotations

import argparse
import sys

EXIT_BAD_INPUT = 2


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=0.01 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adlab", description="Applied Deep Learning lab: one config, one command, a run directory with a report.")
    parser.add_argument("--version", action="version", version=f"adlab {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train and evaluate a model from a YAML config")
    p.add_argument("config", help="YAML config file")
    _add_overrides(p)
    p.add_argument("--out", help="run directory (default: runs/<name>/<timestamp>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary lines")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a trained run on its test set or on other data")
    p.add_argument("run", help="run directory or checkpoint")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="data.KEY=VALUE",
                   help="change the evaluation data, e.g. --set data.root=other/ (repeatable)")
    p.add_argument("--out", help="folder for metrics, predictions and figures (default: RUN/evaluation)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files with a trained run")
    p.add_argument("run", help="run directory or checkpoint")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top", type=int, default=3, help="classes to show per image (default 3)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("fuse", help="late fusion of runs evaluated on the same test set")
    p.add_argument("runs", nargs="+", help="two or more run directories")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--method", choices=["mean_prob", "sum_logits", "vote"], default="mean_prob")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("generate", help="new images from a trained autoencoder (AE / VAE / DAE)")
    p.add_argument("run", help="autoencoder run directory or checkpoint")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--out", default="samples.png", help="PNG file to write (default samples.png)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("config", help="print the fully resolved config (defaults + file + overrides)")
    p.add_argument("config", nargs="?", help="YAML config file (omit for the defaults)")
    _add_overrides(p)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("table", help="Markdown table of metrics from finished runs")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--metrics", default="accuracy,mean_class_accuracy,macro_f1,train_seconds",
                   help="comma-separated metrics.json keys")
    p.set_defaults(func=cmd_table)
    return parser


def cmd_train(args) -> None:
    from adlab.run.train import train

    train(args.config, out=args.out, overwrite=args.overwrite, overrides=args.overrides, verbose=not args.quiet)


def cmd_evaluate(args) -> None:
    from adlab.run.evaluate import evaluate

    evaluate(args.run, overrides=args.overrides, out=args.out)


def cmd_predict(args) -> None:
    from adlab.run.predict import predict

    for path, ranked in predict(args.run, args.images, top=args.top):
        print(f"{path}: " + ", ".join(f"{name} {p:.3f}" for name, p in ranked))


def cmd_fuse(args) -> None:
    from adlab.run.fuse import fuse

    fuse(args.runs, out=args.out, method=args.method, overwrite=args.overwrite)


def cmd_generate(args) -> None:
    from adlab.run.generate import generate

    generate(args.run, n=args.n, out=args.out, seed=args.seed)


def cmd_config(args) -> None:
    import yaml

    from adlab.config import load_config

    print(yaml.safe_dump(load_config(args.config, args.overrides).to_dict(), sort_keys=False), end="")


def cmd_table(args) -> None:
    from adlab.run.table import metrics_table

    print(metrics_table(args.runs, [m.strip() for m in args.metrics.split(",") if m.strip()]))


def _version() -> str:
    from adlab import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from adlab.errors import AdlabError

    try:
        args.func(args)
    except AdlabError as exc:
        print(f"adlab: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("adlab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
