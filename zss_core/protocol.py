"""Wire format between a client (the Blender add-on) and the generator process.

One JSON object per line: requests on the worker's stdin, events on its stdout.
docs/protocol.md describes the contract; this module is its single source of truth.
Standard library only: Blender's Python imports it and has no torch or numpy.
"""

import dataclasses
import difflib
import json
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from . import defaults, schedule
from .defaults import NOISE_MODELS, SCHEDULERS, SEARCHES

# per_frame is re-exported: the name protocol users have always imported (schedule defines it).
from .schedule import per_frame

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 16 * 1024 * 1024  # a line longer than this is a broken or hostile client
MAX_DEPTH = 32  # lists/objects nested deeper than this (a job needs 4) are a broken or hostile client
MAX_UNKNOWN_KEYS = 20  # unknown fields named one by one in a bad_request; the rest are counted
MAX_KEY_SHOWN = 100  # characters of an unknown field's name that a message repeats
MAX_TEXT = 2000  # prompt and negative prompt
MAX_PATH = 4096  # model, folder and image paths
MAX_LIST = defaults.MAX_FRAMES  # any list in a job (and the frame count)
MAX_LORAS = 8
MAX_LORA_WEIGHT = 4.0

DTYPES = ("auto", "float32", "float16", "bfloat16")
CONTROL_TYPES = ("depth",)
INTERPOLATIONS = defaults.PROMPT_INTERPOLATIONS
# Progress stages of a job, in order: load (the model), encode (the prompt), denoise (step k/N),
# decode (frame f/F), write (MP4, contact sheet, manifest); "download" is a download task's one stage.
STAGES = ("load", "denoise", "decode", "download", "encode", "write")
ERROR_CODES = (
    "bad_request",
    "unknown_job",
    "duplicate_job",
    "model_not_found",
    "model_load_failed",
    "model_incompatible",
    "download_failed",
    "control_image_invalid",
    "output_exists",
    "output_not_writable",
    "out_of_memory",
    "internal",
    "worker_died",
    "worker_stalled",  # the client heard nothing from a busy worker for its stall timeout and stopped it
)

# The id names the job folder, so it must be one plain path component.
JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DEVICE_PATTERN = re.compile(r"auto|cpu|cuda|cuda:[0-9]{1,3}|mps")


class ProtocolError(ValueError):
    """A line or job that does not follow the protocol; `field` names the culprit."""

    def __init__(self, message: str, field: str | None = None, problems: "list[Problem] | None" = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.problems = problems or []


@dataclasses.dataclass
class Problem:
    """One thing wrong with a job, so the add-on can point at the setting to fix."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


# --------------------------------------------------------------------------- job


@dataclasses.dataclass
class Outputs:
    frames: bool = True
    mp4: bool = True
    contact_sheet: bool = True


@dataclasses.dataclass(kw_only=True)
class Control:
    type: str = "depth"
    images: list  # one image path per frame
    scale: float = 1.0


@dataclasses.dataclass(kw_only=True)
class Job:
    """A validated generation request; see docs/protocol.md for each field."""

    id: str
    prompt: str
    model: str
    output_dir: str
    negative_prompt: str = ""
    frames: int = 8
    width: int = 512
    height: int = 512
    steps: int = 30
    guidance: float = 7.5
    seed: int = 0
    lam: float | list = 0.01
    mu: float | list = 0.98
    noise: str = "dependency"
    search: str = "exact"
    candidates: int = 10
    controlnet_model: str | None = None
    control: Control | None = None
    chunk: int | None = None
    scheduler: str = "ddim"
    device: str = "auto"
    dtype: str = "auto"
    outputs: Outputs = dataclasses.field(default_factory=Outputs)
    fps: float = 24.0
    loop: bool = False
    tile_x: bool = False
    tile_y: bool = False
    prompts: list | None = None  # prompt travel: [{"frame": 0-based index, "prompt": str}, ...]
    prompt_interpolation: str = "linear"
    allow_pickle: bool = False  # load .ckpt/.pt/.bin checkpoints (weights-only unpickling)
    attention_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False
    cache_interval: int = 1  # step caching: the full UNet every N steps, shallow blocks between (1: off)
    fast: bool = False  # GPU fast paths (zss_core/fast.py) where the device has them
    init: list | None = None  # restyle: one source image path per frame (video-to-video)
    strength: float = 1.0  # restyle: how much of the denoising is redone (1: text-to-video, 0: the source)
    image_guidance: float | None = None  # instruction editing (InstructPix2Pix models): the image guidance scale
    loras: list | None = None  # [{"path": file, folder or model name, "weight": 1.0}, ...]
    preview_every: int = 5  # a `preview` event every N denoising steps (0: none)

    def prompt_schedule(self) -> list[tuple[int, str]]:
        """[(frame, prompt), …] sorted: the ``prompts`` keys, with ``prompt`` at frame 0 unless a key
        is already there (``schedule.prompt_keys``). Without keys it is the single prompt."""
        return schedule.prompt_keys(self.prompt, self.prompts)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Job":
        """Build a Job from a decoded dict; raises ProtocolError listing every problem."""
        problems = validate_job(d)
        if problems:
            error = error_for_problems(None, problems)
            raise ProtocolError(error.message, problems[0].field, problems)
        kwargs = dict(d)
        for name in ("guidance", "fps", "strength"):
            if name in kwargs:
                kwargs[name] = float(kwargs[name])
        for name in ("lam", "mu"):
            if name in kwargs:
                kwargs[name] = _floats(kwargs[name])
        if kwargs.get("control") is not None:
            c = kwargs["control"]
            kwargs["control"] = Control(
                images=list(c["images"]),
                type=c.get("type", "depth"),
                scale=float(c.get("scale", 1.0)),
            )
        if kwargs.get("image_guidance") is not None:
            kwargs["image_guidance"] = float(kwargs["image_guidance"])
        if kwargs.get("loras") is not None:
            kwargs["loras"] = [{"path": x["path"], "weight": float(x.get("weight", 1.0))} for x in kwargs["loras"]]
        if "outputs" in kwargs:
            kwargs["outputs"] = Outputs(**kwargs["outputs"])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every field; from_dict(to_dict()) gives an equal Job."""
        d = dataclasses.asdict(self)
        for name in ("lam", "mu"):
            d[name] = _floats(d[name])
        return d

    def lam_per_frame(self) -> list[float]:
        """λ for each frame; entry 0 is 0.0 because the first frame has no predecessor."""
        return per_frame(self.lam, self.frames, "lam")

    def mu_per_frame(self) -> list[float]:
        """μ for each frame; entry 0 is 0.0 because the first frame has no predecessor."""
        return per_frame(self.mu, self.frames, "mu")

    def job_dir(self) -> str:
        return os.path.join(self.output_dir, self.id)


def _floats(value: float | list) -> float | list[float]:
    return [float(v) for v in value] if isinstance(value, list) else float(value)


# -------------------------------------------------------------------- validation

_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_JOB_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Job) if f.default is not dataclasses.MISSING}


def _value(d: dict, name: str) -> typing.Any:
    """A field of a raw job, or the Job's default for it when the job leaves it out."""
    return d.get(name, _JOB_DEFAULTS[name])


_REQUIRED = {
    "id": 'a name for the job folder, e.g. "clip-001"',
    "prompt": "the text to generate",
    "model": '"tiny", a diffusers folder, a .safetensors file or a hub id',
    "output_dir": "the folder that receives the job folder",
}


def _show(value: Any, limit: int = 60) -> str:
    """A short JSON-like rendering of a bad value for messages (never the whole 5 MB)."""
    if isinstance(value, str) and len(value) > limit:
        return json.dumps(value[:limit]) + f"… ({len(value)} characters)"
    if isinstance(value, (list, dict)) and len(value) > 8:
        return f"a {'list' if isinstance(value, list) else 'object'} of {len(value)} items"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    kind = " (a boolean)" if isinstance(value, bool) else ""
    return (text if len(text) <= limit else text[:limit] + "…") + kind


def lone_surrogate_at(text: str) -> int | None:
    """Where `text` holds a lone surrogate (U+D800–U+DFFF: not valid Unicode, not encodable as UTF-8),
    or None when it holds none. JSON's \\ud800 escapes decode to these."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return None


def _is_int(v: Any) -> bool:
    return type(v) is int  # bool is an int subclass, and 8.0 is not an int


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Checker:
    """Collects problems for one raw job dict."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, field: str, message: str) -> None:
        self.problems.append(Problem(field, message))

    def integer(self, field: str, v: Any, lo: int, hi: int, extra: str = "") -> bool:
        if not _is_int(v) or not lo <= v <= hi:
            self.add(field, f"{field} must be an integer from {lo} to {hi}{extra}, got {_show(v)}")
            return False
        return True

    def number(self, field: str, v: Any, lo: float, hi: float) -> bool:
        if not _is_number(v) or not math.isfinite(v) or not lo <= v <= hi:
            self.add(field, f"{field} must be a number from {lo} to {hi}, got {_show(v)}")
            return False
        return True

    def text(self, field: str, v: Any, max_len: int, allow_empty: bool = True) -> bool:
        if not isinstance(v, str):
            self.add(field, f"{field} must be a string, got {_show(v)}")
        elif len(v) > max_len:
            self.add(field, f"{field} must be at most {max_len} characters, got {len(v)}")
        elif not allow_empty and not v.strip():
            self.add(field, f"{field} must not be empty")
        elif "\0" in v:
            self.add(field, f"{field} must not contain NUL characters")
        else:
            return True
        return False

    def prose(self, field: str, v: Any, allow_empty: bool = True) -> None:
        """A prompt: text that must also be valid Unicode (paths may hold the lone surrogates that spell
        a non-UTF-8 file name; a prompt holding one cannot be encoded for the text encoder or the manifest)."""
        if self.text(field, v, MAX_TEXT, allow_empty) and (at := lone_surrogate_at(v)) is not None:
            self.add(
                field,
                f"{field} holds a lone surrogate (U+{ord(v[at]):04X}) at character {at}, which is not "
                "valid Unicode; remove it or type the character again",
            )

    def choice(self, field: str, v: Any, allowed: Sequence[str]) -> None:
        if not isinstance(v, str) or v not in allowed:
            self.add(field, f"{field} must be one of {', '.join(allowed)}; got {_show(v)}")

    def unknown_keys(self, keys: Iterable[Any], allowed: Sequence[str], prefix: str = "") -> None:
        """One problem per unknown key, the first MAX_UNKNOWN_KEYS of them (a typo gets a suggestion):
        100000 junk keys must cost milliseconds, not a minute of difflib in the reader thread."""
        unknown = list(keys)
        for key in unknown[:MAX_UNKNOWN_KEYS]:
            name = str(key)[:MAX_KEY_SHOWN]  # a 1 MB key is named by its start
            close = difflib.get_close_matches(name, allowed, n=1) if len(str(key)) <= MAX_KEY_SHOWN else []
            tip = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
            self.add(prefix + name, f"unknown field {name!r} ({tip})")
        if len(unknown) > MAX_UNKNOWN_KEYS:
            self.add(prefix + "*", f"and {len(unknown) - MAX_UNKNOWN_KEYS} more unknown fields")

    def per_frame(self, field: str, v: Any, frames: int | None, hi: float, allowed: str) -> None:
        """λ or μ: one number, or a list of `frames` or `frames - 1` numbers, each in [0, hi]."""

        def bad(x: Any) -> bool:
            return not _is_number(x) or not math.isfinite(x) or not 0 <= x <= hi

        if not isinstance(v, list):
            if bad(v):
                self.add(field, f"{field} must be {allowed}, or a list of them; got {_show(v)}")
            return
        if len(v) > MAX_LIST:
            self.add(field, f"{field} must have at most {MAX_LIST} entries, got {len(v)}")
            return
        if frames is not None and len(v) not in (frames, frames - 1):
            self.add(
                field,
                f"{field} list must have {frames} entries (one per frame) or "
                f"{frames - 1} (one per frame transition), got {len(v)}",
            )
        for i, item in enumerate(v):
            if bad(item):
                self.add(f"{field}[{i}]", f"{field}[{i}] must be {allowed}, got {_show(item)}")

    def output_dir(self, v: Any) -> None:
        """The folder must be writable, or creatable under a writable parent."""
        if not self.text("output_dir", v, MAX_PATH, allow_empty=False):
            return
        path = os.path.abspath(v)
        if os.path.exists(path):
            if not os.path.isdir(path):
                self.add("output_dir", f"output_dir must be a folder, but {path} is a file")
            elif not os.access(path, os.W_OK | os.X_OK):
                self.add("output_dir", f"output_dir {path} is not writable; choose a folder you can write to")
            return
        parent = os.path.dirname(path)
        while not os.path.exists(parent) and os.path.dirname(parent) != parent:
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            self.add("output_dir", f"output_dir {path} cannot be created: {parent} is a file, not a folder")
        elif not os.access(parent, os.W_OK | os.X_OK):
            self.add("output_dir", f"output_dir {path} cannot be created: {parent} is not writable")

    def prompts(self, keys: Any, frames: int | None) -> None:
        """Prompt travel keys: a list of {"frame": 0-based index, "prompt": text}, frames unique."""
        if not isinstance(keys, list) or not keys:
            self.add(
                "prompts",
                f'prompts must be null or a non-empty list of {{"frame": N, "prompt": "..."}}, got {_show(keys)}',
            )
            return
        if len(keys) > MAX_LIST:
            self.add("prompts", f"prompts must have at most {MAX_LIST} keys, got {len(keys)}")
            return
        seen = set()
        for i, key in enumerate(keys):
            field = f"prompts[{i}]"
            if not isinstance(key, dict):
                self.add(field, f'{field} must be an object {{"frame": N, "prompt": "..."}}, got {_show(key)}')
                continue
            self.unknown_keys([k for k in key if k not in ("frame", "prompt")], ("frame", "prompt"), field + ".")
            hi = frames - 1 if frames is not None else MAX_LIST - 1
            if self.integer(f"{field}.frame", key.get("frame"), 0, hi, extra=" (0-based frame index)"):
                if key["frame"] in seen:
                    self.add(f"{field}.frame", f"{field}.frame: two prompts are keyed at frame {key['frame']}")
                seen.add(key["frame"])
            self.prose(f"{field}.prompt", key.get("prompt"), allow_empty=False)

    def control(self, c: Any, frames: int | None) -> None:
        if not isinstance(c, dict):
            self.add(
                "control",
                f'control must be null or an object {{"type": "depth", "images": [...], "scale": 1.0}}, got {_show(c)}',
            )
            return
        self.unknown_keys(
            [k for k in c if k not in ("type", "images", "scale")], ("type", "images", "scale"), "control."
        )
        self.choice("control.type", c.get("type", "depth"), CONTROL_TYPES)
        self.number("control.scale", c.get("scale", 1.0), 0, 5)
        if "images" not in c:
            self.add("control.images", "control.images is required: one image path per frame")
            return
        self.image_list("control.images", c["images"], frames)

    def image_list(self, field: str, images: Any, frames: int | None) -> None:
        """One readable image file per frame (control images, restyle sources)."""
        if not isinstance(images, list):
            self.add(field, f"{field} must be a list of image paths, got {_show(images)}")
            return
        if len(images) > MAX_LIST:
            self.add(field, f"{field} must have at most {MAX_LIST} entries, got {len(images)}")
            return
        if frames is not None and len(images) != frames:
            self.add(field, f"{field} must have one image per frame ({frames}), got {len(images)}")
        for i, p in enumerate(images):
            item = f"{field}[{i}]"
            if not self.text(item, p, MAX_PATH, allow_empty=False):
                continue
            if not os.path.exists(p):
                self.add(item, f"{item}: file not found: {p}")
            elif not os.path.isfile(p):
                self.add(item, f"{item}: {p} is not a regular file")
            elif not os.access(p, os.R_OK):
                self.add(item, f"{item}: {p} is not readable")

    def loras(self, loras: Any) -> None:
        """LoRAs: a list of {"path": file, folder or model name, "weight": number}."""
        if not isinstance(loras, list):
            self.add("loras", f'loras must be null or a list of {{"path": "...", "weight": 1.0}}, got {_show(loras)}')
            return
        if len(loras) > MAX_LORAS:
            self.add("loras", f"loras must have at most {MAX_LORAS} entries, got {len(loras)}")
            return
        for i, lora in enumerate(loras):
            field = f"loras[{i}]"
            if not isinstance(lora, dict):
                self.add(field, f'{field} must be an object {{"path": "...", "weight": 1.0}}, got {_show(lora)}')
                continue
            self.unknown_keys([k for k in lora if k not in ("path", "weight")], ("path", "weight"), field + ".")
            if "path" not in lora:
                self.add(f"{field}.path", f"{field}.path is required: a LoRA .safetensors file, folder or model name")
            else:
                self.text(f"{field}.path", lora["path"], MAX_PATH, allow_empty=False)
            self.number(f"{field}.weight", lora.get("weight", 1.0), -MAX_LORA_WEIGHT, MAX_LORA_WEIGHT)


def validate_job(d: Any) -> list[Problem]:
    """Every problem of a raw job dict (as decoded from JSON), each naming its field."""
    if not isinstance(d, dict):
        return [Problem("job", f"job must be a JSON object, got {_show(d)}")]
    ck = _Checker()
    for name in _REQUIRED:
        if name not in d:
            ck.add(name, f"{name} is required: {_REQUIRED[name]}")

    if "id" in d:
        v = d["id"]
        if not isinstance(v, str) or not JOB_ID_PATTERN.fullmatch(v):
            ck.add(
                "id",
                "id must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter "
                f"or digit (it names the job folder), got {_show(v)}",
            )
    if "prompt" in d:
        ck.prose("prompt", d["prompt"], allow_empty=False)
    ck.prose("negative_prompt", _value(d, "negative_prompt"))
    if "model" in d:
        ck.text("model", d["model"], MAX_PATH, allow_empty=False)

    frames = _value(d, "frames")
    if not ck.integer("frames", frames, 1, MAX_LIST):
        frames = None  # unknown: skip the checks that depend on it
    lo, hi, multiple = defaults.MIN_SIZE, defaults.MAX_SIZE, defaults.SIZE_MULTIPLE
    for name in ("width", "height"):
        v = _value(d, name)
        if not _is_int(v) or not lo <= v <= hi or v % multiple:
            ck.add(name, f"{name} must be a multiple of {multiple} from {lo} to {hi}, got {_show(v)}")
    ck.integer("steps", _value(d, "steps"), 1, defaults.MAX_STEPS)
    ck.number("guidance", _value(d, "guidance"), 0, defaults.MAX_GUIDANCE)
    ck.integer("seed", _value(d, "seed"), 0, 2**63 - 1)
    ck.per_frame("lam", _value(d, "lam"), frames, math.inf, "a finite number ≥ 0")
    ck.per_frame("mu", _value(d, "mu"), frames, 1, "a number from 0 to 1")
    ck.choice("noise", _value(d, "noise"), NOISE_MODELS)
    ck.choice("search", _value(d, "search"), SEARCHES)
    ck.integer("candidates", _value(d, "candidates"), 1, 1000)
    ck.choice("scheduler", _value(d, "scheduler"), SCHEDULERS)
    steps, scheduler = _value(d, "steps"), _value(d, "scheduler")
    if scheduler in defaults.FEW_STEP_SCHEDULERS and _is_int(steps) and steps > defaults.FEW_STEP_MAX_STEPS:
        ck.add(
            "steps", f"steps must be at most {defaults.FEW_STEP_MAX_STEPS} with the {scheduler} scheduler, got {steps}"
        )
    ck.choice("dtype", _value(d, "dtype"), DTYPES)
    device = _value(d, "device")
    if not isinstance(device, str) or not _DEVICE_PATTERN.fullmatch(device):
        ck.add("device", f"device must be auto, cpu, cuda, cuda:N or mps; got {_show(device)}")
    chunk = d.get("chunk")
    if chunk is not None and chunk != "auto":
        ck.integer("chunk", chunk, 1, MAX_LIST, extra=' (or null for all frames at once, or "auto")')
    ck.number("fps", _value(d, "fps"), 1, 240)

    controlnet = d.get("controlnet_model")
    if controlnet is not None:
        ck.text("controlnet_model", controlnet, MAX_PATH, allow_empty=False)
    if d.get("control") is not None:
        if controlnet is None:
            ck.add(
                "controlnet_model",
                "controlnet_model is required when control is set (a ControlNet folder, .safetensors file or hub id)",
            )
        ck.control(d["control"], frames)

    ck.integer("cache_interval", _value(d, "cache_interval"), 1, defaults.MAX_STEPS)
    for name in ("loop", "tile_x", "tile_y", "allow_pickle", "attention_slicing", "vae_tiling", "cpu_offload", "fast"):
        if not isinstance(d.get(name, False), bool):
            ck.add(name, f"{name} must be true or false, got {_show(d[name])}")
    ck.choice("prompt_interpolation", _value(d, "prompt_interpolation"), INTERPOLATIONS)
    if d.get("init") is not None:
        ck.image_list("init", d["init"], frames)
    if ck.number("strength", _value(d, "strength"), 0, 1) and d.get("init") is None and _value(d, "strength") < 1:
        ck.add("strength", "strength below 1 needs init: the source frames to restyle")
    if d.get("image_guidance") is not None:
        ck.number("image_guidance", d["image_guidance"], 0, defaults.MAX_GUIDANCE)
        if d.get("init") is None:
            ck.add("init", "init is required when image_guidance is set: instruction editing edits source frames")
    if d.get("loras") is not None:
        ck.loras(d["loras"])
    ck.integer("preview_every", _value(d, "preview_every"), 0, defaults.MAX_STEPS)
    if d.get("prompts") is not None:
        ck.prompts(d["prompts"], frames)

    outputs = d.get("outputs", {})
    names = tuple(f.name for f in dataclasses.fields(Outputs))
    if not isinstance(outputs, dict):
        ck.add(
            "outputs",
            f'outputs must be an object like {{"frames": true, "mp4": true, '
            f'"contact_sheet": true}}, got {_show(outputs)}',
        )
    else:
        ck.unknown_keys([k for k in outputs if k not in names], names, "outputs.")
        for name in names:
            if not isinstance(outputs.get(name, True), bool):
                ck.add(f"outputs.{name}", f"outputs.{name} must be true or false, got {_show(outputs[name])}")

    if "output_dir" in d:
        ck.output_dir(d["output_dir"])
    ck.unknown_keys([k for k in d if k not in _JOB_FIELDS], _JOB_FIELDS)
    return ck.problems


# ---------------------------------------------------------------------- messages


@dataclasses.dataclass
class Message:
    """Base of requests and events (each a dataclass): to_dict/to_json and the field-type decoding."""

    type: ClassVar[str] = ""
    _choices: ClassVar[dict] = {}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        head = {"type": self.type, "id": d.pop("id")} if "id" in d else {"type": self.type}
        return {**head, **d}

    def to_json(self) -> str:
        """One line of JSON (no newline) that always encodes as UTF-8; raises ValueError for NaN or infinity.

        A lone surrogate (a non-UTF-8 file name as Python spells it, or one echoed from a request) cannot
        be written as UTF-8, so such a message is written all-ASCII, with JSON escapes (\\udce9)."""
        d = self.to_dict()
        text = json.dumps(d, allow_nan=False, ensure_ascii=False)
        if lone_surrogate_at(text) is not None:
            return json.dumps(d, allow_nan=False)
        # json leaves these raw with ensure_ascii=False; str.splitlines() would break the line on them.
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")


@dataclasses.dataclass
class Generate(Message):
    type: ClassVar[str] = "generate"
    job: dict  # kept raw: the worker runs validate_job on it to report every problem


@dataclasses.dataclass
class Cancel(Message):
    type: ClassVar[str] = "cancel"
    id: str


@dataclasses.dataclass
class Ping(Message):
    type: ClassVar[str] = "ping"
    id: str | None = None


@dataclasses.dataclass
class Shutdown(Message):
    type: ClassVar[str] = "shutdown"


@dataclasses.dataclass
class Download(Message):
    """Fetch a hub model into the local Hugging Face cache (queued like a job; answered by downloaded)."""

    type: ClassVar[str] = "download"
    id: str
    model: str


@dataclasses.dataclass
class Ready(Message):
    type: ClassVar[str] = "ready"
    protocol: int
    versions: dict
    device: str
    dtype: str
    gpu_free_bytes: int | None
    gpu_total_bytes: int | None
    pid: int
    id: str | None = None


@dataclasses.dataclass
class Accepted(Message):
    type: ClassVar[str] = "accepted"
    id: str
    queue_position: int


@dataclasses.dataclass
class Progress(Message):
    type: ClassVar[str] = "progress"
    _choices: ClassVar[dict] = {"stage": STAGES}
    id: str
    step: int
    total: int
    fraction: float
    elapsed: float
    eta: float | None
    stage: str


@dataclasses.dataclass
class Frame(Message):
    type: ClassVar[str] = "frame"
    id: str
    index: int
    path: str


@dataclasses.dataclass
class Done(Message):
    type: ClassVar[str] = "done"
    id: str
    frames: list[str]
    video: str | None
    contact_sheet: str | None
    manifest: str
    seconds: float
    model_load_seconds: float
    notes: list[str] = dataclasses.field(default_factory=list)  # e.g. an out-of-memory retry that succeeded


@dataclasses.dataclass
class Error(Message):
    type: ClassVar[str] = "error"
    _choices: ClassVar[dict] = {"code": ERROR_CODES}
    code: str
    message: str
    hint: str = ""
    field: str | None = None
    problems: list[dict] | None = None
    id: str | None = None


@dataclasses.dataclass
class Cancelled(Message):
    type: ClassVar[str] = "cancelled"
    id: str
    frames: list[str]
    manifest: str | None = None


@dataclasses.dataclass
class Downloaded(Message):
    type: ClassVar[str] = "downloaded"
    id: str
    model: str
    path: str
    seconds: float


@dataclasses.dataclass
class Pong(Message):
    type: ClassVar[str] = "pong"
    id: str | None = None


@dataclasses.dataclass
class Heartbeat(Message):
    """The worker is alive: sent right after ready and then every `interval` seconds, busy or idle, from a
    thread of its own (a job stuck in one long step still beats; a frozen process does not). `id` is
    always null (it is about the worker, not a job); `running` names the job or download running now."""

    type: ClassVar[str] = "heartbeat"
    interval: float
    running: str | None = None
    queued: int = 0
    id: str | None = None


REQUESTS: dict[str, type[Message]] = {cls.type: cls for cls in (Generate, Cancel, Ping, Shutdown, Download)}
EVENTS: dict[str, type[Message]] = {
    cls.type: cls for cls in (Ready, Accepted, Progress, Frame, Done, Error, Cancelled, Pong, Downloaded, Heartbeat)
}
MESSAGES: dict[str, type[Message]] = {**REQUESTS, **EVENTS}

_TYPE_NAMES = {
    int: "an integer",
    float: "a number",
    str: "a string",
    bool: "true or false",
    dict: "an object",
    list: "a list",
}


def _convert(value: Any, tp: Any, field: str) -> Any:
    """Check a decoded value against a field annotation; ints become floats for float fields."""
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType):  # `X | None`
        return None if value is None else _convert(value, args[0], field)
    base = typing.get_origin(tp) or tp
    ok = {int: _is_int, float: _is_number}.get(base, lambda v: isinstance(v, base))(value)
    if not ok:
        raise ProtocolError(f"{field} must be {_TYPE_NAMES[base]}, got {_show(value)}", field)
    if base is float:
        return float(value)
    if base is list and args:
        return [_convert(item, args[0], f"{field}[{i}]") for i, item in enumerate(value)]
    return value


def message_from_dict(d: Any, expect: str | None = None) -> Message:
    """Decode a message dict; `expect` "request" or "event" rejects the other direction."""
    if not isinstance(d, dict):
        raise ProtocolError(f"a message must be a JSON object, got {_show(d)}")
    tables: dict[str | None, dict[str, type[Message]]] = {"request": REQUESTS, "event": EVENTS, None: MESSAGES}
    table = tables[expect]
    kind = d.get("type")
    if not isinstance(kind, str) or kind not in table:
        what = f"{expect} " if expect else ""
        raise ProtocolError(f"unknown {what}type {_show(kind)}; expected one of {', '.join(table)}", "type")
    cls = table[kind]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    extra = [k for k in d if k != "type" and k not in fields]
    if extra:
        raise ProtocolError(f"unknown field {extra[0]!r} in {kind}; allowed: {', '.join(fields)}", extra[0])
    kwargs = {}
    for name, f in fields.items():
        if name not in d:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{kind} is missing the field {name!r}", name)
            continue
        kwargs[name] = _convert(d[name], f.type, name)
        allowed = cls._choices.get(name)
        if allowed and kwargs[name] not in allowed:
            raise ProtocolError(f"{name} must be one of {', '.join(allowed)}; got {_show(d[name])}", name)
        value = kwargs[name]
        if REQUESTS.get(kind) is cls and isinstance(value, str) and (at := lone_surrogate_at(value)) is not None:
            raise ProtocolError(
                f"{name} holds a lone surrogate (U+{ord(value[at]):04X}) at character {at}, which is not valid "
                "Unicode; send text that encodes as UTF-8",
                name,
            )
    return cls(**kwargs)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists/objects nest more than `limit` levels in a decoded JSON value (without recursing)."""
    containers = (list, dict)
    level: list[Any] = [value] if isinstance(value, containers) else []  # the containers at one depth
    for _ in range(limit):
        level = [
            item
            for container in level
            for item in (container.values() if isinstance(container, dict) else container)
            if isinstance(item, containers)
        ]
        if not level:
            return False
    return True


def message_from_json(line: str | bytes, expect: str | None = None) -> Message:
    """Decode one line (str, or bytes that must be UTF-8); raises ProtocolError for anything malformed:
    over MAX_LINE_BYTES, not UTF-8, not JSON, nested deeper than MAX_DEPTH, or not a known message."""
    size = len(line) if isinstance(line, bytes) else len(line.encode("utf-8", "surrogatepass"))
    if size > MAX_LINE_BYTES:
        raise ProtocolError(f"line is {size} bytes; the limit is {MAX_LINE_BYTES}")
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(
                f"line is not valid UTF-8: byte 0x{e.object[e.start]:02x} at offset {e.start} ({e.reason})"
            ) from None
    try:
        d = json.loads(line)
    except RecursionError:
        raise ProtocolError(f"line is nested too deeply; the limit is {MAX_DEPTH} levels") from None
    except ValueError as e:  # JSONDecodeError
        raise ProtocolError(f"line is not valid JSON: {e}") from None
    # Brackets counted first: a line with few of them cannot nest deeply, so most lines skip the walk.
    if line.count("[") + line.count("{") > MAX_DEPTH and _deeper_than(d, MAX_DEPTH):
        raise ProtocolError(f"line nests lists or objects more than {MAX_DEPTH} levels deep (the limit)")
    return message_from_dict(d, expect)


def error_for_problems(job_id: str | None, problems: list[Problem]) -> Error:
    """The bad_request event for a failed validate_job: every problem, field of the first."""
    listing = "; ".join(f"{p.field}: {p.message}" for p in problems)
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return Error(
        id=job_id,
        code="bad_request",
        message=f"{count}: {listing}",
        hint="Fix the listed fields and send the job again.",
        field=problems[0].field if problems else None,
        problems=[p.to_dict() for p in problems],
    )
