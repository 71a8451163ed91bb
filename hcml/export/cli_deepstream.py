"""Write the DeepStream configs for a model card (the SDK's 3D action recognition app).

Writes, into --out (default: pipelines/deepstream beside the card's engines/ folder, else
./pipelines/deepstream): the nvdspreprocess config (custom sequence library, NCDHW clip
tensor, the card's window, size and normalization), the nvinfer config (the card's clip ONNX
with input-tensor-from-meta), the app config, and the Triton variant (nvinferserver config, a
model repository entry whose 1/model.onnx links to the card's ONNX, an app config for it).
Every model-dependent value comes from the card; paths are relative to --out. The result is
checked with `hcml check-config` before this command returns. Run the app from --out:

    cd pipelines/deepstream && deepstream-3d-action-recognition \\
        -c deepstream_action_recognition_config.txt
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from hcml.export.deepstream import PRECISIONS, DeepStreamSettings


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared with `hcml export`: the deployment choices the card does not fix."""
    p.add_argument(
        "--ds-batch-size",
        type=int,
        metavar="N",
        default=4,
        help="DeepStream: max windows (sources) in one inference batch",
    )
    p.add_argument(
        "--ds-stride",
        type=int,
        metavar="N",
        default=1,
        help="DeepStream: a window every N sampled frames (the sequence library's stride)",
    )
    p.add_argument(
        "--ds-precision",
        choices=sorted(PRECISIONS),
        default="fp16",
        help="DeepStream: nvinfer network-mode",
    )
    p.add_argument(
        "--ds-uri",
        action="append",
        default=None,
        metavar="URI",
        help="DeepStream: a source for the app config (repeat; default: the SDK's sample_720p)",
    )


def settings_from_args(args: argparse.Namespace) -> DeepStreamSettings:
    kw = {"batch_size": args.ds_batch_size, "stride": args.ds_stride}
    kw["precision"] = args.ds_precision
    if args.ds_uri:
        kw["uris"] = tuple(args.ds_uri)
    return DeepStreamSettings(**kw)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("card", type=Path, help="model card (engines/NAME.json)")
    p.add_argument("--out", type=Path, default=None, help="folder to write (see above)")
    p.add_argument("--no-triton", action="store_true", help="skip the nvinferserver variant")
    add_settings_arguments(p)


def write_and_check(card, out: Path, settings: DeepStreamSettings, prog: str) -> int:
    """Write the configs, check them, print what was written; returns an exit status."""
    from hcml.export.deepstream import APP, APP_TRITON, write_deepstream_configs
    from hcml.export.deepstream_check import check_configs

    written = write_deepstream_configs(card, out, settings)
    apps = [out / APP, *([out / APP_TRITON] if settings.triton else [])]
    report = check_configs(apps, card)  # the app configs name every other file
    for issue in report.issues:  # a bug in the generator: it and the checker disagree
        print(f"{prog}: generated config fails its check: {issue}", file=sys.stderr)
    print(f"wrote DeepStream configs in {out} ({report.keys} keys checked)")
    for path in written:
        print(f"  {path}")
    return 0 if report.ok else 1


def run(args: argparse.Namespace) -> int:
    from hcml.card import ModelCard, ModelCardError
    from hcml.export.deepstream import default_deepstream_dir

    prog = "hcml deepstream-configs"
    if not args.card.is_file():
        print(f"{prog}: card not found: {args.card}", file=sys.stderr)
        return 2
    try:
        card = ModelCard.load(args.card)
        settings = settings_from_args(args)
    except (ModelCardError, ValueError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    if args.no_triton:
        settings = dataclasses.replace(settings, triton=False)
    out = args.out or default_deepstream_dir(card.root) or Path("pipelines/deepstream")
    return write_and_check(card, out, settings, prog)
