"""ovcast convert MODEL OUT_DIR: HuggingFace checkpoint -> parity-checked OpenVINO package."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Convert a PatchTSTForPrediction, PatchTSMixerForPrediction or TinyTimeMixerForPrediction
(granite-tsfm) checkpoint to an OpenVINO model package (model.xml, model.bin, ovcast.json).
Every conversion is checked against PyTorch on fixed windows, with every model input; an
fp32 IR outside tolerance fails with exit code 1.

MODEL is 'default' (the embedded ETTh1 model), a folder written by save_pretrained,
or a hub id (needs network). A granite-tsfm preprocessor_config.json beside the checkpoint
(or --preprocessor) gives the package its channels, targets and fitted scaler(s).

examples:
  ovcast convert default models/default
  ovcast convert ibm-granite/granite-timeseries-patchtst models/granite --repository ovms/
  ovcast convert ./my-checkpoint models/mine-int8 --precision int8 --calibration-data windows.npy
  ovcast convert ibm-granite/granite-timeseries-ttm-r2 models/ttm --revision 1024-96-r2
  ovcast convert ./ttm-finetuned models/ttm --preprocessor ./tsp/preprocessor_config.json
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert a HuggingFace checkpoint to an OpenVINO model package",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="'default', a checkpoint folder or a hub id")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the package to")
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        default="fp32",
        help="fp32 (default, fastest on AVX2), fp16 (half-size weights, f32 compute), "
        "int8 (NNCF PTQ; slower without VNNI)",
    )
    p.add_argument(
        "--calibration-data",
        metavar="FILE",
        help="int8: .npy/.csv/.json series (time, channels) or windows (n, context, "
        "channels), in model space; default: generated windows",
    )
    p.add_argument("--name", help="model name in the manifest and repository (default: from MODEL)")
    p.add_argument("--revision", help="hub revision (branch, tag or commit) for a hub id")
    p.add_argument("--channel-names", help="comma-separated channel names")
    ttm = p.add_argument_group("TinyTimeMixer (TTM) only")
    ttm.add_argument(
        "--preprocessor",
        metavar="FILE",
        help="a granite-tsfm preprocessor_config.json (default: the one beside the checkpoint)",
    )
    ttm.add_argument(
        "--freq-token",
        metavar="TOKEN",
        help="fix the frequency token in the IR: a number or a frequency such as 'h', "
        "'15min' (default: the model takes it as an input)",
    )
    ttm.add_argument(
        "--observed-mask",
        action="store_true",
        help="add the past_observed_mask input, so windows may hold missing values (NaN)",
    )
    ttm.add_argument(
        "--prediction-filter-length",
        type=int,
        metavar="N",
        help="forecast only the first N steps of the model's horizon",
    )
    p.add_argument(
        "--check-bf16",
        action="store_true",
        help="where this CPU has bf16 units, measure bf16 against f32 on the package's windows "
        "and record it: engines then compute in bf16 when it is within tolerance (as 'ovcast "
        "tune' does; tune --data also judges it on a data set)",
    )
    p.add_argument(
        "--no-rewrites",
        action="store_true",
        help="export the model as traced, without the speed rewrites (for comparison)",
    )
    p.add_argument(
        "--repository",
        metavar="DIR",
        help="also write an OVMS/KServe model repository: DIR/<name>/1/model.xml",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..convert import convert
    from ..runtime.inputs import read_array
    from ..runtime.precision import summarize

    calibration = read_array(args.calibration_data) if args.calibration_data else None
    package = convert(
        args.model,
        args.out_dir,
        precision=args.precision,
        calibration_data=calibration,
        name=args.name,
        revision=args.revision,
        channel_names=args.channel_names.split(",") if args.channel_names else None,
        repository=args.repository,
        preprocessor=args.preprocessor,
        freq_token=_freq_token(args.freq_token),
        observed_mask=args.observed_mask,
        prediction_filter_length=args.prediction_filter_length,
        rewrites=not args.no_rewrites,
        check_bf16=args.check_bf16,
    )
    parity = package.manifest.parity["fp32_vs_torch"]
    print(f"wrote {package.path} ({package.manifest.architecture}, {args.precision})")
    print(
        f"parity fp32 vs PyTorch: max abs error {parity['max_abs_error']:.2e}, "
        f"max rel error {parity['max_rel_error']:.2e}"
    )
    other = package.manifest.parity.get(f"{args.precision}_vs_torch")
    if args.precision != "fp32" and other:
        print(f"{args.precision} vs PyTorch: max abs error {other['max_abs_error']:.2e}")
    if len(package.manifest.inputs) > 1:
        print("inputs: " + ", ".join(f"{t.name} {t.shape}" for t in package.manifest.inputs))
    bf16 = package.manifest.runtime_config.get("precision", {}).get("bf16")
    if bf16:
        verdict = "within" if bf16["within_tolerance"] else "outside"
        print(f"{summarize(bf16)}: {verdict} tolerance")
    if args.repository:
        print(f"repository: {args.repository}/{package.manifest.name}/1 (+ config.json for OVMS)")
    return 0


def _freq_token(text: str | None) -> int | str | None:
    """'7' -> 7 (a token); anything else is a frequency name ('h', '15min')."""
    return int(text) if text is not None and text.isdigit() else text
