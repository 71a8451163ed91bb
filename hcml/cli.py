"""The ``hcml`` command: one subcommand a stage (synth, train, eval, export, run, bench, ...).

Each subcommand lives in its own module that exposes ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them together, so ``hcml --help`` stays the map.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (name, module implementing it or None while not written yet, one-line help, issue for pointers)
SUBCOMMANDS: list[tuple[str, str | None, str, str]] = [
    ("synth", "hcml.data.synth_cli", "render the synthetic motion benchmark to video files", "#3"),
    (
        "train",
        "hcml.training.cli",
        "train a model from a recipe in training/ (flow, progressive, joint)",
        "#5",
    ),
    ("eval", "hcml.training.eval_cli", "evaluate a checkpoint or model card on a dataset", "#5"),
    (
        "calibrate",
        "hcml.training.calibrate_cli",
        "fit a model card's score temperature on held-out clips (softmax(logits / T))",
        "#16",
    ),
    (
        "pretrain",
        "hcml.training.pretrain",
        "self-supervised pretraining (flow, progressive) on a folder of unlabelled videos",
        "#16",
    ),
    (
        "eval-flow",
        "hcml.training.flow_eval",
        "end-point error of a checkpoint's P^0 flow net against ground-truth synthetic flow",
        "#5",
    ),
    (
        "export",
        "hcml.export.cli_export",
        "export a checkpoint to ONNX clip + step graphs and a model card",
        "#6",
    ),
    (
        "build-engine",
        "hcml.export.cli_build",
        "build TensorRT plans for a model card (NVIDIA GPU)",
        "#6",
    ),
    (
        "deepstream-configs",
        "hcml.export.cli_deepstream",
        "write DeepStream configs (nvdspreprocess, nvinfer, Triton) from a model card",
        "#8",
    ),
    (
        "check-config",
        "hcml.export.cli_check_config",
        "check DeepStream configs against the model card, key by key",
        "#8",
    ),
    (
        "run",
        "hcml.gst.run_cli",
        "run hcmlaction on a file, URI, camera, RTP port or pipeline file",
        "#8",
    ),
    (
        "game-server",
        "hcml.gst.game_server",
        "stream a synthetic motion game over RTP/H.264 with its ground-truth schedule",
        "#8",
    ),
    (
        "game-score",
        "hcml.stream.game_score",
        "score hcml run's predictions on a game stream: accuracy and latency",
        "#8",
    ),
    (
        "serve",
        "hcml.serve.cli",
        "serve model cards from a Triton Inference Server (gRPC, HTTP health, metrics)",
        "#19",
    ),
    (
        "bench",
        "hcml.bench",
        "benchmarks: streaming, element, latency, backends, model, train",
        "#9",
    ),
]


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the command docstrings' own layout; shows defaults only where there is one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in (
            action.help or ""
        ):
            return action.help or ""
        return super()._get_help_string(action)


def _not_implemented(name: str, issue: str):
    def run(_args: argparse.Namespace) -> int:
        print(
            f"hcml {name}: not implemented yet (tracked in issue {issue}; see README.md).",
            file=sys.stderr,
        )
        return 2

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hcml",
        description="Motion-aware action recognition (HCML) for live video pipelines.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `hcml <command> --help` for each command's options.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name, module_name, help_text, issue in SUBCOMMANDS:
        if module_name is None:
            p = sub.add_parser(
                name, help=f"{help_text} [not implemented yet]", description=help_text
            )
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            p.set_defaults(func=_not_implemented(name, issue))
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text).strip(),
            formatter_class=_HelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def _version() -> str:
    from hcml import __version__

    return f"hcml {__version__}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
