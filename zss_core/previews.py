"""Live previews: a picture of the clip while it is being denoised, at almost no cost.

Decoding a latent with the VAE costs about as much as a denoising step, so a preview every few steps
would slow sampling by tens of percent. A VAE latent is close to a linear code of the colours it
decodes to, at 1/8 (or 1/4) of the resolution: one 4×3 matrix and a bias turn a (4, h, w) latent into
a small RGB picture in microseconds. That map (``LatentRGB``) is

* **published** for the real VAEs (``FAMILY_MAPS``): SD 1.x and SD 2.x share one VAE and one map; SDXL's
  VAE has its own. They were fitted the way ``fit_latent_rgb`` fits (least squares from latents to
  the colours the VAE decodes them to) and are the ones ComfyUI ships (``comfy/latent_formats.py``:
  ``SD15`` and ``SDXL`` ``latent_rgb_factors`` and ``latent_rgb_factors_bias``).
* **fitted** from the VAE itself for any other VAE (the built-in texture model's, the tiny test model's,
  a fine-tune with another architecture): ``fit_latent_rgb`` encodes a small batch of random smooth
  images, decodes the latents and solves least squares from latent channels to the decoded colours,
  pooled to the latent grid. One batch of 8 small images: tens of milliseconds for the built-in
  model; done once per loaded VAE (``latent_rgb_map`` keeps it while the VAE lives).

``PreviewWriter`` is what a job uses: every ``every`` denoising steps it takes the middle frame's
current prediction of the clean latent (``x0``: from the scheduler where its step gives one, else
``predicted_x0`` from the noise prediction), maps it to RGB and writes ``previews/step_XXXX.png`` (at most ``MAX_SIDE`` pixels on
its longest side) into the job folder. Each step's file is kept (a few kB each) so a client that
fetches a preview later (``zss serve``) still finds the one its event names.
"""

from __future__ import annotations

import dataclasses
import io
import math
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

MAX_SIDE = 256  # the longest side of a preview PNG, in pixels
PREVIEW_DIR = "previews"


@dataclasses.dataclass(frozen=True)
class LatentRGB:
    """rgb = latent · ``matrix`` + ``bias``, per pixel: ``matrix`` has one row per latent channel and
    one column per colour (R, G, B); latents are in the sampler's (scaled) space; rgb is in [-1, 1]."""

    matrix: tuple[tuple[float, ...], ...]  # (channels, 3)
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    source: str = ""  # where the numbers come from (published family constants, or "fitted …")

    def apply(self, latent: torch.Tensor) -> torch.Tensor:
        """(C, h, w) or (N, C, h, w) latents → the same shape with 3 channels, in [-1, 1] (clamped)."""
        matrix = torch.tensor(self.matrix, dtype=torch.float32, device=latent.device)
        bias = torch.tensor(self.bias, dtype=torch.float32, device=latent.device)
        channels = -3
        rgb = torch.tensordot(latent.float().movedim(channels, -1), matrix, dims=1) + bias
        return rgb.movedim(-1, channels).clamp(-1.0, 1.0)

    def to_image(self, latent: torch.Tensor, max_side: int = MAX_SIDE, size: tuple[int, int] | None = None):
        """One (C, h, w) latent → a PIL RGB image, resized to ``size`` (width, height) when given, else
        scaled up bilinearly to at most ``max_side`` pixels on its longest side (never down)."""
        rgb = self.apply(latent)
        pixels = ((rgb + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
        if size is None:
            size = preview_size(image.width, image.height, max_side)
        return image if image.size == size else image.resize(size, Image.Resampling.BILINEAR)


# The published maps (ComfyUI comfy/latent_formats.py, fitted on the real VAEs as fit_latent_rgb does).
_SD_VAE = LatentRGB(
    matrix=(
        (0.3512, 0.2297, 0.3227),
        (0.3250, 0.4974, 0.2350),
        (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177),
    ),
    source="published SD 1.x/2.x VAE map (ComfyUI latent_formats SD15)",
)
FAMILY_MAPS: dict[str, LatentRGB] = {
    "sd1": _SD_VAE,
    "sd2": _SD_VAE,  # SD 2.x kept SD 1.x's VAE (same weights, same scaling factor 0.18215)
    "sdxl": LatentRGB(
        matrix=(
            (0.3651, 0.4232, 0.4341),
            (-0.2533, -0.0042, 0.1068),
            (0.1076, 0.1111, -0.0362),
            (-0.3165, -0.2492, -0.2188),
        ),
        bias=(0.1084, -0.0175, -0.0011),
        source="published SDXL VAE map (ComfyUI latent_formats SDXL)",
    ),
}
# The real VAEs' architecture and scaling factor, which tell which published map a VAE takes.
_SD_VAE_BLOCKS = [128, 256, 512, 512]
_FAMILY_SCALING = {"sd1": 0.18215, "sdxl": 0.13025}


def vae_family(vae) -> str | None:
    """ "sd1" (also SD 2.x) or "sdxl" when ``vae`` is the real VAE of that family (its architecture
    and scaling factor), else None (the built-in and tiny models, other architectures: fit those)."""
    config = vae.config
    if config.latent_channels != 4 or list(config.block_out_channels) != _SD_VAE_BLOCKS:
        return None
    if getattr(config, "shift_factor", None) or getattr(config, "latents_mean", None):
        return None
    for family, scaling in _FAMILY_SCALING.items():
        if math.isclose(float(config.scaling_factor), scaling, rel_tol=1e-3):
            return family
    return None


def smooth_images(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` random smooth RGB images (n, 3, size, size) in [-1, 1]: random colours on a 4×4 grid
    interpolated bicubically (clamped), the kind of low-frequency content a linear map must get right."""
    coarse = torch.rand(n, 3, 4, 4, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True).clamp(-1, 1)


@torch.no_grad()
def encode_decode(vae, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 3, H, W) in [-1, 1] → (latents in the sampler's scaled space (n, C, h, w), the VAE's
    decoding of those latents pooled to the latent grid (n, 3, h, w)), on the CPU in float32."""
    param = next(vae.parameters())
    scaling = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    posterior = vae.encode(images.to(device=param.device, dtype=param.dtype)).latent_dist
    raw = posterior.mean
    decoded = vae.decode(raw, return_dict=False)[0].float().clamp(-1, 1)
    latents = ((raw.float() - shift) * scaling).cpu()
    pooled = torch.nn.functional.adaptive_avg_pool2d(decoded.cpu(), latents.shape[-2:])
    return latents, pooled


def solve_map(latents: torch.Tensor, rgb: torch.Tensor, source: str = "fitted") -> LatentRGB:
    """Least squares rgb ≈ latents · M + b over every pixel of (n, C, h, w) latents and (n, 3, h, w) rgb."""
    x = latents.movedim(1, -1).reshape(-1, latents.shape[1]).double()
    y = rgb.movedim(1, -1).reshape(-1, 3).double()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution  # (C + 1, 3)
    matrix = tuple(tuple(float(v) for v in row) for row in solution[:-1].tolist())
    bias = tuple(float(v) for v in solution[-1].tolist())
    return LatentRGB(matrix=matrix, bias=(bias[0], bias[1], bias[2]), source=source)


def fit_latent_rgb(vae, n: int = 8, size: int | None = None, seed: int = 0) -> LatentRGB:
    """Fit a latent → RGB map to ``vae``: encode ``n`` random smooth images, decode their latents, and
    solve least squares from latent channels to the decoded colours on the latent grid (``solve_map``).

    ``size``: the images' side in pixels (default: 16 latent pixels). Deterministic for a seed.
    """
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    size = size or 16 * factor
    generator = torch.Generator("cpu").manual_seed(seed)
    latents, rgb = encode_decode(vae, smooth_images(n, size, generator))
    return solve_map(latents, rgb, source=f"fitted from this VAE ({n} smooth {size}² images)")


# Fitted maps of the VAEs loaded in this process, kept while each VAE lives: the warm worker fits its
# model once, and a released model takes its map with it.
_FITTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def latent_rgb_map(vae) -> LatentRGB:
    """The map for ``vae``: its family's published one (``FAMILY_MAPS``), else one fitted from it once."""
    family = vae_family(vae)
    if family is not None:
        return FAMILY_MAPS[family]
    found = _FITTED.get(vae)
    if found is None:
        found = _FITTED[vae] = fit_latent_rgb(vae)
    return found


def predicted_x0(scheduler, sample: torch.Tensor, model_output: torch.Tensor, t) -> torch.Tensor | None:
    """The clean latents that ``model_output`` at timestep ``t`` predicts for ``sample``, for a scheduler
    whose ``step`` does not return them (DPM-Solver++, UniPC, PNDM): the DDIM formula on its
    ``alphas_cumprod``. None where it does not apply (a sigma-scaled scheduler, another prediction type)."""
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None or float(scheduler.init_noise_sigma) != 1.0:
        return None
    alpha = alphas[int(t)].to(device=sample.device, dtype=sample.dtype)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return (sample - (1 - alpha) ** 0.5 * model_output) / alpha**0.5
    if kind == "v_prediction":
        return alpha**0.5 * sample - (1 - alpha) ** 0.5 * model_output
    if kind == "sample":
        return model_output
    return None


def preview_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """A picture's size scaled so its longest side is ``max_side`` at most (never below 1 pixel)."""
    scale = max_side / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


@dataclasses.dataclass(frozen=True)
class Preview:
    """One written preview: what a ``preview`` event says (``protocol.Preview``)."""

    step: int  # denoising steps done (1-based)
    steps: int  # of how many
    frame: int  # the 0-based frame shown
    path: str  # the PNG
    width: int
    height: int


PreviewSink = Callable[[Preview], None]


class PreviewWriter:
    """Writes a preview PNG every ``every`` steps into ``<job_dir>/previews/`` and hands each one on.

    Called by the sampler after every denoising step with the clip's latents and its prediction of the
    clean latents (``x0``): the preview shows ``x0`` (the picture the step is heading to), or the
    current latent where no prediction could be had (None). The picture is the middle frame at the clip's aspect
    ratio, its longest side ``min(MAX_SIDE, the frame's)``. The VAE's map is found (or fitted) when the
    writer is made, before sampling starts.
    """

    def __init__(
        self,
        vae,
        job_dir: str | Path,
        every: int,
        frames: int,
        width: int,
        height: int,
        sink: PreviewSink = lambda preview: None,
    ):
        if every < 1:
            raise ValueError(f"preview every must be ≥ 1 step, got {every} (leave the writer out for none)")
        self.every, self.sink = every, sink
        # Now, not at the first preview: fitting a VAE's map (once per VAE) must not stall a denoising step.
        self.map = latent_rgb_map(vae)
        self.folder = Path(job_dir) / PREVIEW_DIR
        self.frame = frames // 2
        self.size = preview_size(width, height, min(MAX_SIDE, max(width, height)))
        self.written: list[Preview] = []
        Image.new("RGB", (1, 1)).save(io.BytesIO(), format="PNG")  # load the PNG encoder now, not in step k

    def __call__(self, step: int, steps: int, latents: torch.Tensor, x0: torch.Tensor | None) -> None:
        if step % self.every:
            return
        source = x0 if x0 is not None else latents
        image = self.map.to_image(source[self.frame].detach(), size=self.size)
        self.folder.mkdir(exist_ok=True)
        path = self.folder / f"step_{step:04d}.png"
        image.save(path, format="PNG", compress_level=1)  # fast: these are small and short-lived
        preview = Preview(step, steps, self.frame, str(path), image.width, image.height)
        self.written.append(preview)
        self.sink(preview)
