"""The ``zss`` command line: generate a clip, run the worker, write the tiny test model.

``zss generate`` builds the same ``protocol.Job`` the Blender add-on sends and runs it through the
same ``runner.run_job``, so what works here works in Blender. Bad input exits with status 2 and one
line per problem, before anything is written.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import os
import re
import secrets
import sys

from . import defaults, presets


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x512, got {text!r}") from None
    return width, height


def _number_or_list(text: str):
    """``0.01`` or a comma-separated per-frame list ``0.01,0.02,…``."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or a comma-separated list, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _control_images(spec: str) -> list[str]:
    """A folder (its images, sorted) or a glob pattern."""
    if os.path.isdir(spec):
        names = sorted(n for n in os.listdir(spec) if n.lower().endswith((".png", ".jpg", ".jpeg", ".exr", ".webp")))
        return [os.path.join(spec, n) for n in names]
    return sorted(glob.glob(spec))


def _int_or_text(text: str):
    """A frame number, or the text itself so that validation names the bad value."""
    try:
        return int(text)
    except ValueError:
        return text


def _lora(text: str) -> dict:
    """``FILE[:WEIGHT]`` → ``{"path", "weight"}``; a colon counts only before a number (``C:\\x`` is a path)."""
    path, colon, weight = text.rpartition(":")
    if colon and path and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)", weight.strip()):
        return {"path": path, "weight": float(weight)}
    return {"path": text, "weight": 1.0}


def new_job_id() -> str:
    """Sortable, unique, safe as a folder name: 20261127-142501-ab12cd."""
    return f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zss", description="ZS² zero-shot video sampling for Stable Diffusion 1.x, 2.x and SDXL"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="sample a clip into a new folder")
    gen.add_argument("prompt", nargs="?", default=None, help="what to make (with --edit: leave it out)")
    gen.add_argument("--negative", default="", help="negative prompt")
    gen.add_argument("--frames", type=int, default=None, help="default: 8, or the --init source's frame count")
    gen.add_argument("--lam", type=_number_or_list, default=0.01, help="noise divergence between frames (or a list)")
    gen.add_argument("--mu", type=_number_or_list, default=0.98, help="attention momentum in [0, 1] (or a list)")
    gen.add_argument(
        "--steps", type=int, default=None, help=f"denoising steps (default: {DEFAULT_STEPS}, or the preset's)"
    )
    gen.add_argument(
        "--guidance", type=float, default=None, help=f"guidance scale (default: {DEFAULT_GUIDANCE:g}, or the preset's)"
    )
    gen.add_argument(
        "--preset",
        choices=presets.NAMES,
        default="none",
        help="draft: few steps with LCM and an LCM-LoRA (--draft-lora); turbo: 1-4 steps for Turbo models "
        "(README: Drafts). Sets steps, guidance and scheduler; explicit values within its range are kept",
    )
    gen.add_argument(
        "--draft-lora",
        default="",
        metavar="FILE|HUB_ID",
        help="the LCM-LoRA the draft preset applies (e.g. latent-consistency/lcm-lora-sdv1-5)",
    )
    gen.add_argument(
        "--size",
        type=_size,
        default=None,
        help="WIDTHxHEIGHT, multiples of 8 (default: 64x64 for the built-in models, else 512x512)",
    )
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument(
        "--model",
        default=defaults.DEFAULT_MODEL,
        help="'builtin:textures' (the shipped texture model), 'tiny' (random weights, for tests), "
        "a diffusers folder, a .safetensors file or a hub id",
    )
    gen.add_argument(
        "--controlnet",
        default=None,
        help="depth ControlNet (folder, file or hub id; default: the built-in model's own)",
    )
    gen.add_argument("--control-depth", default=None, metavar="DIR|GLOB", help="one depth image per frame")
    gen.add_argument("--control-scale", type=float, default=1.0)
    gen.add_argument(
        "--init",
        default=None,
        metavar="DIR|GLOB|VIDEO",
        help="restyle these source frames (a folder of images, a glob or a video file): one frame per frame",
    )
    gen.add_argument(
        "--edit",
        default=None,
        metavar="INSTRUCTION",
        help="instruction editing of the --init frames with an InstructPix2Pix model, e.g. 'make it snowy'",
    )
    gen.add_argument(
        "--image-guidance",
        type=float,
        default=None,
        help=f"with --edit: how closely the result keeps the source frames (default {EDIT_IMAGE_GUIDANCE})",
    )
    gen.add_argument(
        "--strength",
        type=float,
        default=None,
        help=f"restyle: share of the denoising redone on the source, 0-1 (default {RESTYLE_STRENGTH} with --init)",
    )
    gen.add_argument("--chunk", type=int, default=None, help="frames per UNet batch (exact; bounds memory)")
    gen.add_argument("--noise", default=defaults.NOISE_MODELS[0], choices=defaults.NOISE_MODELS)
    gen.add_argument("--search", default=defaults.SEARCHES[0], choices=defaults.SEARCHES)
    gen.add_argument("--scheduler", default=None, choices=defaults.SCHEDULERS, help="default: ddim, or the preset's")
    gen.add_argument("--device", default="auto")
    gen.add_argument("--dtype", default="auto")
    gen.add_argument("--fps", type=float, default=24.0)
    gen.add_argument("--no-mp4", action="store_true")
    gen.add_argument("--out", default="zss-out", help="parent folder; the clip goes into OUT/<job id>/")
    gen.add_argument("--id", default=None, help="job id (default: timestamp + random)")
    gen.add_argument("--loop", action="store_true", help="seamless loop: the last frame flows into the first")
    gen.add_argument("--tile", choices=("x", "y", "xy"), default=None, help="frames tile seamlessly on these axes")
    gen.add_argument(
        "--prompt-at",
        nargs=2,
        action="append",
        metavar=("FRAME", "PROMPT"),
        default=[],
        help="prompt travel key at a 0-based frame (repeatable); PROMPT holds at frame 0",
    )
    gen.add_argument(
        "--prompt-interpolation", choices=defaults.PROMPT_INTERPOLATIONS, default=defaults.PROMPT_INTERPOLATIONS[0]
    )
    gen.add_argument(
        "--cache-interval",
        type=int,
        default=1,
        metavar="N",
        help="step caching: the full UNet every N steps, its shallow blocks on cached deep features between (1: off)",
    )
    gen.add_argument(
        "--lora",
        type=_lora,
        action="append",
        default=[],
        metavar="FILE[:WEIGHT]",
        help="a LoRA (.safetensors file, folder or hub id) and its weight (default 1.0); repeatable",
    )
    gen.add_argument("--fast", action="store_true", help="GPU fast paths: channels-last, torch.compile, fused QKV")
    gen.add_argument(
        "--previews", action="store_true", help="write live previews into OUT/<job id>/previews/ (every 5 steps)"
    )
    gen.add_argument(
        "--preview-every", type=int, default=None, metavar="N", help="a preview every N steps (implies --previews)"
    )

    sub.add_parser("worker", help="run the generator process (JSON lines on stdin/stdout)")
    sub.add_parser("setup-env", help="create, check or repair a generator environment (see --help)", add_help=False)

    from .server.run import add_arguments as add_server_arguments  # stdlib only: FastAPI loads in `serve`

    add_server_arguments(
        sub.add_parser("serve", help="run the generator as an HTTPS server (docs/server.md)"),
        sub.add_parser("token", help="manage the tokens of `zss serve` (token new)"),
    )

    from .batch import add_arguments as add_batch_arguments

    add_batch_arguments(
        sub.add_parser("batch", help="many clips from a JSON lines file via a server or Ray (resumable)")
    )

    tiny = sub.add_parser("make-tiny-model", help="write the tiny random-weight SD (+ ControlNet) model")
    tiny.add_argument("directory")
    tiny.add_argument("--no-controlnet", action="store_true")
    return parser


DEFAULT_MODEL = defaults.DEFAULT_MODEL  # kept: the name this module has always exported
DEFAULT_STEPS, DEFAULT_GUIDANCE = 30, 7.5
# Options a preset sets unless given on the command line: (job field = argparse dest, default without a preset).
PRESET_OPTIONS = (("steps", DEFAULT_STEPS), ("guidance", DEFAULT_GUIDANCE), ("scheduler", defaults.SCHEDULERS[0]))
DEFAULT_FRAMES = 8
RESTYLE_STRENGTH = 0.6  # --strength when --init is given without it: keeps the source's layout, restyles it
EDIT_IMAGE_GUIDANCE = 1.5  # --image-guidance with --edit (InstructPix2Pix's usual value)


def job_from_args(args, init: list[str] | None = None) -> dict:
    """The job the options describe; a preset is expanded here (``presets.PresetError`` when the
    options contradict it). ``init``: the ``--init`` source's frames."""
    if args.size is None:  # the size the model's family was made for (512², 768² SD2-v, 1024² SDXL)
        from .model_check import local_default_size

        side = local_default_size(args.model)
        args.size = (side, side) if side else defaults.default_size(args.model)
    explicit = [name for name, _ in PRESET_OPTIONS if getattr(args, name) is not None]
    chosen = {name: default if getattr(args, name) is None else getattr(args, name) for name, default in PRESET_OPTIONS}
    frames = args.frames if args.frames is not None else len(init) if init else DEFAULT_FRAMES
    job = {
        "id": args.id or new_job_id(),
        "prompt": args.edit if args.edit is not None else args.prompt,
        "negative_prompt": args.negative,
        "frames": frames,
        "width": args.size[0],
        "height": args.size[1],
        "steps": chosen["steps"],
        "guidance": chosen["guidance"],
        "seed": args.seed,
        "lam": args.lam,
        "mu": args.mu,
        "noise": args.noise,
        "search": args.search,
        "model": args.model,
        "chunk": args.chunk,
        "scheduler": chosen["scheduler"],
        "device": args.device,
        "dtype": args.dtype,
        "output_dir": os.path.abspath(args.out),
        "fps": args.fps,
        "outputs": {"frames": True, "mp4": not args.no_mp4, "contact_sheet": True},
        "loop": args.loop,
        "tile_x": "x" in (args.tile or ""),
        "tile_y": "y" in (args.tile or ""),
        "prompt_interpolation": args.prompt_interpolation,
        "cache_interval": args.cache_interval,
        "fast": args.fast,
        "preview_every": _preview_every(args),
    }
    if args.lora:
        job["loras"] = args.lora
    if args.prompt_at:
        job["prompts"] = [{"frame": _int_or_text(frame), "prompt": text} for frame, text in args.prompt_at]
    if args.control_depth is not None:
        job["control"] = {"type": "depth", "images": _control_images(args.control_depth), "scale": args.control_scale}
        job["controlnet_model"] = args.controlnet or defaults.default_controlnet(args.model) or None
    if init is not None:
        job["init"] = init
    editing = args.edit is not None or args.image_guidance is not None
    if args.strength is not None or init is not None:  # an edit starts from noise unless told otherwise
        job["strength"] = args.strength if args.strength is not None else 1.0 if editing else RESTYLE_STRENGTH
    if editing:
        job["image_guidance"] = args.image_guidance if args.image_guidance is not None else EDIT_IMAGE_GUIDANCE
    return presets.expand(job, args.preset, explicit, args.draft_lora)


def _preview_every(args) -> int:
    """The CLI writes previews only when asked: --previews (the protocol's default rate) or --preview-every N."""
    if args.preview_every is not None:
        return args.preview_every
    from .protocol import PREVIEW_EVERY

    return PREVIEW_EVERY if args.previews else 0


def _shown(text: str) -> str:
    """``text`` as it can always be printed: what is not UTF-8 shows as a \\u escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _not_utf8(text: str) -> bool:
    """A path the OS gave with bytes that are not UTF-8 (Python keeps them as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _fail(lines) -> int:
    for line in lines:
        print(f"zss: error: {line}", file=sys.stderr)
    return 2


def cmd_generate(args) -> int:
    """``zss generate``; with ``--init``, a video source's frames live in a temporary folder for the run."""
    if args.init is None:
        return _generate(args, None)
    from .init_frames import InitSourceError, source_frames

    try:
        with source_frames(args.init) as init:
            if args.frames is not None and args.frames != len(init):
                return _fail(
                    [
                        f"init: the source '{_shown(args.init)}' has {len(init)} frames but --frames is "
                        f"{args.frames}; leave --frames out (it defaults to the source's count) or give "
                        "a source with that many frames"
                    ]
                )
            return _generate(args, init)
    except InitSourceError as exc:
        return _fail([f"init: {_shown(str(exc))}"])


def _generate(args, init: list[str] | None) -> int:
    from . import protocol

    if (args.prompt is None) == (args.edit is None):
        return _fail(
            ["prompt: give a prompt, or with --edit the instruction alone (--edit 'make it snowy' --init FRAMES)"]
        )
    if _not_utf8(args.out):
        return _fail(
            [
                f"out: the folder name '{_shown(args.out)}' is not valid UTF-8; job folders are recorded in "
                "job.json as UTF-8 text. Rename the folder or choose another one."
            ]
        )
    try:
        raw = job_from_args(args, init)
    except presets.PresetError as exc:
        return _fail([f"{exc.field.replace('_', '-')}: {exc.message}"])
    if args.preset == "draft" and not args.draft_lora:
        print(
            f"zss: note: the draft preset without --draft-lora needs a model that is LCM-distilled already; "
            f"otherwise it needs {presets.PRESETS['draft'].needs}",
            file=sys.stderr,
        )
    if args.control_depth is not None and not raw["control"]["images"]:
        return _fail([f"control-depth: no images found at '{_shown(args.control_depth)}'"])
    problems = protocol.validate_job(raw)
    if problems:
        return _fail(f"{p.field}: {p.message}" for p in problems)
    job = protocol.Job.from_dict(raw)

    from tqdm import tqdm

    from .export import ignore_file_size_signal
    from .models import ModelError, load_pipeline
    from .restyle import denoise_steps
    from .runner import JobCallbacks, JobError, check_memory, run_job

    ignore_file_size_signal()
    try:
        check_memory(job)  # a job that cannot fit is refused before the model loads
        print(f"loading model '{job.model}'…", file=sys.stderr)
        pipe = load_pipeline(
            job.model,
            job.controlnet_model if job.control else None,
            device=job.device,
            dtype=job.dtype,
            scheduler=job.scheduler,
            edit=job.image_guidance is not None,
        )
        steps = denoise_steps(job.steps, job.strength) if job.init is not None else job.steps
        with tqdm(total=steps, desc="denoising", unit="step", file=sys.stderr) as bar:
            callbacks = JobCallbacks(
                progress=lambda step, total: bar.update(step - bar.n),
                preview=lambda p: bar.set_postfix_str(f"preview {os.path.basename(p.path)}"),
            )
            outcome = run_job(job, pipe, callbacks)
    except (ModelError, JobError) as exc:
        where = f"{exc.field}: " if exc.field else ""
        return _fail([_shown(where + exc.message + (f" ({exc.hint})" if exc.hint else ""))])
    except KeyboardInterrupt:
        print("zss: interrupted", file=sys.stderr)
        return 130
    print(outcome.job_dir)
    print(f"{len(outcome.frames)} frames, video: {outcome.video}, {outcome.seconds:.1f} s", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["setup-env"]:  # stdlib-only module with its own options
        from .setup_env import main as setup_main

        return setup_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "generate":
        return cmd_generate(args)
    if args.command == "worker":
        from .worker import main as worker_main

        return worker_main()
    if args.command in ("serve", "token"):
        from .server import run as server_run

        return server_run.cmd_serve(args) if args.command == "serve" else server_run.cmd_token(args)
    if args.command == "batch":
        from .batch import cmd_batch

        return cmd_batch(args)
    if args.command == "make-tiny-model":
        from .models import save_tiny_model

        print(save_tiny_model(args.directory, controlnet=not args.no_controlnet))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
