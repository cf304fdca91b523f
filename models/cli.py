"""The `rescale` command: train, pool, eval, demo, downscale, upscale, serve."""

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from PIL import Image

from models import files
from models.evaluation import evaluate, pools, rate_distortion, report
from models.evaluation.bicubic import bicubic_round_trip, modcrop
from models.evaluation.metrics import psnr_y, ssim_y
from models.files.errors import NotRescaledError
from models.files.images import load_rgb
from models.files.photos import BACKGROUND_NAME, TRANSPARENCY, decode_photo
from models.inference import context
from models.inference.devices import pick_device
from models.inference.engine_set import EngineSet
from models.inference.engines import BACKENDS, default_cache_dir
from models.inference.pipeline import downscale_image, upscale_image
from models.inference.tiles import DEFAULT_OVERLAP_LR
from models.networks.rescaler import VARIANTS
from models.store import publish, retire
from models.store.registry import Registry, UnknownWeightsError
from models.training import chain
from models.training import pool as training_pool
from models.training import run as train


def _setup(args: argparse.Namespace) -> tuple[Registry, torch.device]:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return Registry(args.weights, include_shipped=not args.no_shipped), pick_device(args.device)


def _engines(args: argparse.Namespace, registry: Registry) -> EngineSet:
    """The service's engines and tilings, so a file made here has the bytes the service would give."""
    return EngineSet(
        registry,
        backend=args.backend,
        precision=args.precision,
        threads=args.threads,
        cache_dir=default_cache_dir(),
        tile_lr=args.tile,
        overlap_lr=args.overlap,
    )


def _train(args: argparse.Namespace) -> int:
    if not args.chain:
        train.run_training(train.resolve_config(args))
        return 0
    if args.config is None:
        raise ValueError("--chain needs --config: the run whose chain to train")
    return _train_in_order(args, chain.with_prerequisites(args.config))


def _train_set(args: argparse.Namespace) -> int:
    if args.out is not None or args.init_from is not None:
        raise ValueError("--out and --init-from belong to each config, not to the whole set")
    return _train_in_order(args, chain.config_set(args.folder))


def _train_in_order(args: argparse.Namespace, configs: list[Path]) -> int:
    """Each run in turn (a finished one resumes at its end at once); flags apply to every run."""
    print("runs, in order: " + ", ".join(c.stem for c in configs))
    for config in configs:
        train.run_training(train.resolve_config(argparse.Namespace(**vars(args) | {"config": config})))
    return 0


def _pool(args: argparse.Namespace) -> int:
    training_pool.run_pool(args)
    return 0


EXTENSIONS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".avif": "avif"}


def output_format(output: str, given: str | None) -> str:
    """The format an output path asks for: its extension, or --format (which must agree with a known one)."""
    implied = EXTENSIONS.get(Path(output).suffix.lower())
    if given is not None and implied is not None and given != implied:
        raise ValueError(f"--format {given} contradicts the extension of {output} ({implied}); change one of them")
    return given or implied or "png"


def _downscale(args: argparse.Namespace) -> int:
    registry, device = _setup(args)
    fmt = output_format(args.output, args.format)
    variant = args.variant or ("irn-a" if fmt == "png" else "irn")
    entry = registry.find_for_file(variant, args.scale, fmt)
    engines = _engines(args, registry)
    image, composited = decode_photo(  # as the service reads it
        Path(args.input).read_bytes(), max_pixels=files.DEFAULT_MAX_PIXELS, transparency=args.transparency
    )
    if composited:
        print(f"{args.input}: transparent pixels composited on {BACKGROUND_NAME}")
    data = files.encode(
        downscale_image(engines.engine(entry.weights_id, device), image, engines.tiling(entry.weights_id)),
        variant=entry.config.variant,
        scale=entry.config.scale,
        weights_id=entry.weights_id,
        format=fmt,
        quality=args.quality,
    )
    Path(args.output).write_bytes(data)
    print(
        f"{args.input} {image.shape[1]}x{image.shape[0]} -> {args.output} ({entry.label} x{args.scale}, {fmt}, "
        f"{len(data)} bytes, weights {entry.weights_id})"
    )
    return 0


def _upscale(args: argparse.Namespace) -> int:
    registry, device = _setup(args)
    decoded = files.decode(Path(args.input).read_bytes(), allow_modified=args.best_effort)
    if decoded.header is not None:
        entry = registry.for_header(decoded.header)
    elif args.best_effort:
        entry = registry.find_for_file(args.variant, args.scale, decoded.format)
    else:
        raise NotRescaledError(
            f"{args.input} has no rescale header (not made by rescale, or its metadata was stripped); "
            "pass --best-effort --scale S [--variant V] to upscale it with z = 0"
        )
    engines = _engines(args, registry)
    engine, tiling = engines.engine(entry.weights_id, device), engines.tiling(entry.weights_id)
    hr = upscale_image(engine, decoded.downscaled(entry.config.scale), tiling)
    Image.fromarray(hr).save(args.output)
    note = f", degraded: {', '.join(decoded.degraded)}" if decoded.degraded else ""
    made_by = f"{entry.config.variant} x{entry.config.scale}{note}"
    print(f"{args.input} -> {args.output} {hr.shape[1]}x{hr.shape[0]} ({made_by})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    registry, device = _setup(args)
    sets = [pools.image_set(source) for source in args.data]
    if args.crop is not None:
        sets = [pools.centre_crops(s, args.crop) for s in sets]
    names = [s.name for s in sets]
    entries = evaluate.select_entries(registry, args.variants, args.scales)
    rows = evaluate.evaluate(
        sets=sets,
        entries=entries,
        registry=registry,
        scales=args.scales,
        device=device,
        limit=args.limit,
        formats=args.formats,
        damaged=args.damaged,
        lossy=args.lossy,
        lossy_variants=args.lossy_variants,
        reusable=evaluate.load_reusable(args.reuse),
        backend=args.backend,
        srmd=args.srmd,
        crop=args.crop,
        # rows are saved as each model finishes: rerun with --reuse <out>/results.json to resume
        on_rows=lambda done: evaluate.write_tables(done, names, Path(args.out)),
    )
    md, js = evaluate.write_tables(rows, names, Path(args.out))
    rd_plot = rate_distortion.rd_plot(rows, names[0], Path(args.out) / "rate_distortion.png")
    if rd_plot is not None:
        print(f"wrote {rd_plot}")
    if args.manifest:
        print(f"manifest eval figures updated for: {', '.join(publish.record_eval(rows)) or 'none'}")
    print(md.read_text())
    print(f"wrote {md} and {js}")
    figure = None
    if args.figure:
        image = Path(args.figure_image) if args.figure_image else sets[0].paths[0]
        figure = evaluate.figure(
            image_path=image, entries=entries, registry=registry, scales=args.scales, device=device, out=Path(args.out)
        )
        print(f"wrote {figure}")
    if args.report:
        ids = {e.weights_id for e in entries}
        path = report.write_report(
            report=Path(args.report),
            rows=rows,
            set_names=names,
            models=[m for m in publish.read_manifest()["models"] if m["weights_id"] in ids],
            figure=figure,
            rd_plot=rd_plot,
            curve_points=Path(args.out) / "learning-curve.json",
            srmd_rows=rows + (json.loads(args.report_srmd.read_text()) if args.report_srmd else []),
            loss_curves={
                f"{e.config.variant} x{e.config.scale}": e.folder / publish.LOSS_PLOT
                for e in entries
                if (e.folder / publish.LOSS_PLOT).is_file()
            },
        )
        print(f"wrote {path}")
    return 0


def _publish(args: argparse.Namespace) -> int:
    if args.context_data is not None:  # checked before anything is written
        missing = [n for n in args.context_photos if not (Path(args.context_data) / f"{n}.png").is_file()]
        if missing:
            raise ValueError(f"--context-photos: no {', '.join(f'{n}.png' for n in missing)} in {args.context_data}")
    entry = publish.publish(
        args.run, name=args.name, dest=args.into, supersedes=args.supersedes, overwrite=args.overwrite
    )
    folder = (args.into or publish.SHIPPED) / entry["name"]
    print(f"published {entry['name']} in {folder}: {entry['bytes']:,} bytes fp16, weights {entry['weights_id']}")
    due = [] if args.into else retire.due()
    if due:
        print(f"superseded twice over, they can leave the shipped set: rescale retire {' '.join(due)}")
    if args.context_data is None:
        print(f"tile context not measured: tiles carry the default {DEFAULT_OVERLAP_LR} LR px (--context-data)")
    else:  # its tiles then carry what it needs, not the default
        registry = Registry([folder], include_shipped=False)
        context.measure_and_record(registry, args.context_data, args.context_photos, backend="torch", write=True)
    return 0


def _retire(args: argparse.Namespace) -> int:
    if not args.names:
        due = retire.due()
        print(f"due to retire: {', '.join(due)}" if due else "no shipped model is due to retire")
        return 0
    for name in args.names:
        before = retire.folder_bytes()
        record = retire.retire(name)
        freed = before - retire.folder_bytes()
        print(f"retired {name} ({record['weights_id']}) to {record['folder']}: {freed:,} bytes out of the shipped set")
    return 0


def _demo(args: argparse.Namespace) -> int:
    registry, device = _setup(args)
    entry = registry.find(args.variant, args.scale)
    model = registry.model(entry.weights_id, device)
    hr = modcrop(load_rgb(args.image), args.scale)
    out, size = evaluate.round_trip_file(model, entry, hr)
    bicubic = bicubic_round_trip(hr, args.scale)
    crop = args.scale
    print(f"{args.image}: {hr.shape[1]}x{hr.shape[0]}, {entry.config.variant} x{args.scale} ({entry.weights_id})")
    print(f"  bicubic          PSNR-Y {psnr_y(hr, bicubic, crop):6.2f} dB  SSIM-Y {ssim_y(hr, bicubic, crop):.4f}")
    print(
        f"  {entry.config.variant:<16} PSNR-Y {psnr_y(hr, out, crop):6.2f} dB  SSIM-Y {ssim_y(hr, out, crop):.4f}"
        f"  (file: {size} bytes, {size / hr.shape[0] / hr.shape[1]:.3f} bytes/px)"
    )
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Image.fromarray(out).save(Path(args.out) / "upscaled.png")
        Image.fromarray(bicubic).save(Path(args.out) / "bicubic.png")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from service.preflight import preflight
    from service.server import serve
    from service.settings import Settings

    settings = Settings()
    preflight(settings)  # weights and graph cache usable, else one line and exit code 2
    serve(settings, host=args.host, port=args.port)
    return 0


def default_backend() -> str:
    """RESCALE_BACKEND, as the service reads it, so that one variable picks the engine for both."""
    return os.environ.get("RESCALE_BACKEND", "auto")


def _tiling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tile", type=int, default=None, help="LR tile side (0: whole image; default: what 1 GiB allows the model)"
    )
    p.add_argument("--overlap", type=int, default=None, help="LR pixels of context around tiles (default: measured)")
    p.add_argument(
        "--backend", choices=BACKENDS, default=default_backend(), help="auto: OpenVINO on the CPU, else PyTorch"
    )
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32", help="bf16 only where native")


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", nargs="*", default=[], help="model folders to use besides the shipped ones")
    p.add_argument("--no-shipped", action="store_true", help="use only the --weights folders")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rescale", description="Invertible image rescaling (IRN, DLV-IRN, -A, -M)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train or resume one model")
    train.add_train_arguments(p)
    p.add_argument(
        "--chain",
        action="store_true",
        help="first train (or resume) the runs this config starts from: configs beside it whose out is its init_from",
    )
    p.set_defaults(func=_train)

    p = sub.add_parser("train-set", help="train or resume every config in a folder, each after the run it starts from")
    p.add_argument("folder", type=Path, help="a folder of configs, e.g. models/configs/gpu")
    train.add_train_arguments(p)
    p.set_defaults(func=_train_set)

    p = sub.add_parser("pool", help="training photos from pinned Debian packages, none close to an eval photo")
    training_pool.add_pool_arguments(p)
    p.set_defaults(func=_pool)

    p = sub.add_parser("downscale", help="HR image -> downscaled file that says what made it")
    p.add_argument("input", help="the photo: PNG, JPEG, WebP or AVIF")
    p.add_argument("output", help="the downscaled file; its extension (.png, .jpg, .webp, .avif) picks the format")
    p.add_argument("--scale", type=int, choices=(2, 4), default=4)
    p.add_argument(
        "--variant",
        choices=VARIANTS,
        default=None,
        help="default: irn-a for PNG, irn for JPEG/WebP/AVIF (the compression-aware model where shipped)",
    )
    p.add_argument(
        "--format",
        choices=files.FORMATS,
        default=None,
        help="jpeg/webp/avif: RGB + EXIF (not for -A); default: from the output's extension, else png",
    )
    p.add_argument("--quality", type=int, default=95, help="jpeg/webp/avif quality, 1..100 (each codec's scale)")
    p.add_argument(
        "--transparency",
        choices=TRANSPARENCY,
        default="composite",
        help="transparent input: composite on white, or refuse it",
    )
    _tiling_options(p)
    _model_options(p)
    p.set_defaults(func=_downscale)

    p = sub.add_parser("upscale", help="downscaled file -> HR PNG at the original size")
    p.add_argument("input", help="a file made by rescale downscale or /downscale (or, with --best-effort, any LR)")
    p.add_argument("output", help="the upscaled image (PNG, or JPEG/WebP by its extension)")
    p.add_argument(
        "--best-effort",
        action="store_true",
        help="upscale a file without header (z = 0; a JPEG/WebP gets the compression-aware model), or one whose "
        "pixels changed since downscaling",
    )
    p.add_argument("--scale", type=int, choices=(2, 4), default=4, help="with --best-effort")
    p.add_argument("--variant", choices=VARIANTS, default="irn", help="with --best-effort")
    _tiling_options(p)
    _model_options(p)
    p.set_defaults(func=_upscale)

    p = sub.add_parser("demo", help="round trip one photo through a file; PSNR against bicubic")
    p.add_argument("image", help="the photo to round-trip")
    p.add_argument("--scale", type=int, choices=(2, 4), default=2)
    p.add_argument("--variant", choices=VARIANTS, default="irn-a")
    p.add_argument("--out", default=None, help="folder for upscaled.png and bicubic.png")
    _model_options(p)
    p.set_defaults(func=_demo)

    p = sub.add_parser("publish", help="ship a trained run: fp16 weights in models/weights + manifest entry")
    p.add_argument("run", help="model folder written by rescale train")
    p.add_argument("--name", default=None, help="folder name under models/weights (default: <variant>-x<scale>)")
    p.add_argument(
        "--into",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="a weights folder of its own (with its manifest) instead of the shipped models/weights; a service "
        "serves a model published there with RESCALE_WEIGHTS_DIRS='[\"FOLDER/NAME\"]'",
    )
    p.add_argument(
        "--supersedes",
        default=None,
        metavar="NAME",
        help="a shipped model of the same variant and scale that these weights replace for new files; it stays "
        "loadable for the files it made",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the weights under --name (files they made stop reading)"
    )
    p.add_argument(
        "--context-data",
        default=context.DEFAULT_DATA if Path(context.DEFAULT_DATA).is_dir() else None,
        metavar="FOLDER",
        help=f"photos to measure the tile context on (default {context.DEFAULT_DATA} where it exists)",
    )
    p.add_argument("--context-photos", nargs="+", default=list(context.DEFAULT_PHOTOS), metavar="NAME")
    p.add_argument("--no-context", dest="context_data", action="store_const", const=None, help="measure no context")
    p.set_defaults(func=_publish)

    p = sub.add_parser(
        "retire",
        help="move shipped models superseded twice over to models/retired (out of the image); the files they "
        "made then name the folder to serve",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="shipped models to retire; none: list those due")
    p.set_defaults(func=_retire)

    p = sub.add_parser("serve", help="run the REST service (settings from RESCALE_* variables)")
    p.add_argument("--host", default=None, help="listen address; default RESCALE_HOST (0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="default RESCALE_PORT (8000)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("eval", help="PSNR/SSIM table (paper's Table 3) through the saved files")
    p.add_argument(
        "--data", nargs="+", required=True, help=f"folders of HR images, or {pools.PYPI} (photos in PyPI packages)"
    )
    p.add_argument("--scales", type=int, nargs="+", default=[2, 4], choices=(2, 4))
    p.add_argument("--variants", nargs="*", choices=VARIANTS, default=None, help="default: every loaded variant")
    p.add_argument("--out", default="runs/eval", help="folder for results.md, results.json, figure.png")
    p.add_argument("--limit", type=int, default=None, help="first N images of each folder")
    p.add_argument("--formats", nargs="+", choices=files.FORMATS, default=["png"], help="file formats, a row each")
    p.add_argument(
        "--backend", choices=BACKENDS, default=default_backend(), help="auto: OpenVINO on the CPU (the product's)"
    )
    p.add_argument("--damaged", action="store_true", help="add rows for stripped metadata / dropped alpha")
    p.add_argument(
        "--lossy",
        nargs="*",
        type=rate_distortion.parse_codec,
        default=[],
        metavar="FORMAT:QUALITY",
        help="real-codec rows, e.g. jpeg:90 webp:75: the --lossy-variants models, the bicubic thumbnail and the "
        "original saved in each (default: none)",
    )
    p.add_argument(
        "--lossy-variants",
        nargs="+",
        choices=[v for v in VARIANTS if not v.endswith("-a")],
        default=["irn"],
        help="variants that get the --lossy rows (default: irn, which includes the compression-aware models)",
    )
    p.add_argument(
        "--srmd",
        action="store_true",
        help="add the bicubic thumbnail upscaled by SRMD, lossless and through each --lossy codec (pip install -e "
        "'.[srmd]' and a Vulkan driver; skipped with one line where either is missing); slow on a CPU: use --crop",
    )
    p.add_argument(
        "--crop",
        type=int,
        default=None,
        metavar="N",
        help="measure every row on the centre NxN HR pixels of each photo (N a multiple of every scale)",
    )
    p.add_argument(
        "--report-srmd",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="results.json of an earlier --srmd run, for the report's SRMD section",
    )
    p.add_argument("--manifest", action="store_true", help="record the shipped models' figures in the manifest")
    p.add_argument("--figure", action="store_true", help="also write a Fig.-2-style crop comparison")
    p.add_argument("--figure-image", default=None, help="image for --figure (default: first of the first folder)")
    p.add_argument("--report", default=None, help="also write the full report (e.g. docs/results.md)")
    p.add_argument(
        "--reuse",
        type=Path,
        nargs="*",
        default=[],
        help="results.json files of earlier runs: rows of the same weights, method and images are not measured again",
    )
    _model_options(p)
    p.set_defaults(func=_eval)
    return parser


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option's help ends with its default, in every subcommand (train's already say theirs)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                show_defaults(sub)
        elif action.option_strings and action.default is not argparse.SUPPRESS and action.dest != "help":
            text = action.help or ""
            if action.required:
                action.help = f"{text} (required)".strip()
            elif "default" not in text:
                action.help = f"{text} (default: %(default)s)".strip()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    show_defaults(parser)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, UnknownWeightsError) as exc:  # bad input or files: one line, exit code 2
        print(f"rescale {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
