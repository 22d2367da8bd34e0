"""ZS² video sampling on diffusers Stable Diffusion 1.x/2.x and SDXL (and their ControlNet) pipelines.

What differs between the families (SDXL's pooled text and size/crop ids, its float32 VAE decoding)
is in ``families``; this loop is the same for all of them.

ZS² = dependency-noise initial latents + temporal momentum attention + the model's own scheduler.
The denoising loop below is the one of ``StableDiffusionPipeline`` / ``StableDiffusionControlNetPipeline``
(same prompt encoding, guidance, scheduler calls and decoding, from the pipeline's own components),
written out so that it can do what the stock ``__call__`` cannot:

* **exact chunking**: within every denoising step the UNet (and ControlNet) see ``chunk`` frames at a
  time, in frame order, while TMA carries each layer's momentum state across chunks. TMA is causal
  over frames and everything else is per frame, so the result equals the unchunked one; the VAE also
  decodes chunk by chunk. Peak memory depends on the chunk, not on the clip length.
* progress, cancellation between chunks, and each frame handed out as soon as it is decoded.

With one frame, or μ = 0 with independent noise, it reproduces the stock pipeline exactly (tested).

The stages follow the pipeline's own seams: ``prepare`` (prompt embeddings, control images, scheduler)
→ ``initial_noise`` (ZS²'s dependency noise or a baseline) → ``ChunkedDenoiser`` (the denoising loop
in chunks, carrying the TMA state) → ``decode``. ``sample`` drives them from one ``SamplingOptions``;
``sample_video`` is the same with the options spelled as keyword arguments.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from . import fast, schedule
from .attention import TemporalState, temporal_momentum_attention
from .families import AddedConditioning, family_of, vae_precision
from .noise import NoiseStats, make_noise
from .previews import predicted_x0
from .step_cache import StepCachedUNet
from .tiling import seamless_tiling

Progress = Callable[[int, int], None]
FrameSink = Callable[[int, object], None]
StageSink = Callable[[str], None]
# After each denoising step: (steps done, total, the clip's latents, the scheduler's prediction of the clean
# latents or None where the scheduler gives none). Live previews (``previews.PreviewWriter``) use it.
LatentsSink = Callable[[int, int, torch.Tensor, torch.Tensor | None], None]
STAGES = ("encode", "denoise", "decode")  # what ``on_stage`` is told, in this order


class SamplingCancelled(Exception):
    """Raised between chunks when ``should_cancel()`` turns true; holds the frames done so far."""


@dataclass(frozen=True)
class SamplingOptions:
    """Every knob of one clip, in one value: built once (``runner`` builds it from a job) and passed on.

    ``prompt``: a string, or a schedule of (frame, prompt) keys (0-based frames) whose text embeddings
    are interpolated per frame (``prompt_interpolation``: ``linear`` or ``slerp``). Weighted (``(word:1.3)``)
    and long prompts go through ``weighted_prompts`` (compel); plain ones through ``encode_prompt``.
    ``lam``/``mu``: a number or per-frame lists (length ``frames``, entry 0 unused, or ``frames − 1``).
    ``noise``: ``dependency`` (ZS²), ``mixed``, ``progressive`` or ``independent``; ``search`` and
    ``candidates`` tune the dependency noise. ``tma=False`` keeps the model's own attention (baselines).
    ``scheduler``: a name of ``models.set_scheduler`` applied first, or None for the pipeline's own.
    ``chunk``: frames per UNet batch (None: all at once; exact either way).
    ``loop``: a seamless loop — closed noise path, cyclic momentum, prompt schedule wrapping back to
    its first key. ``tile_x``/``tile_y``: frames that tile seamlessly on those axes.
    ``control_scale``: the ControlNet's conditioning scale. ``output_type``: ``pil``, ``np`` (float
    arrays (H, W, 3) in [0, 1]) or ``latent``.
    ``cache_interval``: step caching (``step_cache``): the full UNet every that many steps, its shallow
    blocks on the reused deep features in between (1: off); ``cache_branch``: the up-path layers
    recomputed on cached steps (None: ``step_cache.DEFAULT_BRANCH``, the last one). ``fast``: the GPU fast paths of ``fast``
    that depend on the clip (tiled/sliced VAE decoding of large frames) where the device has them.
    ``strength``: restyle (``restyle``): the share of the steps run on the source frames given as
    ``init_images`` (1: text-to-video, the source unused; 0: the source re-encoded).
    ``image_guidance``: instruction editing (``edit``) with an InstructPix2Pix-class model: the prompt
    is the instruction, ``init_images`` the frames to edit, this their guidance scale (None: off).
    """

    prompt: str | Sequence[tuple[int, str]]
    negative_prompt: str = ""
    frames: int = 8
    width: int = 512
    height: int = 512
    steps: int = 30
    guidance: float = 7.5
    seed: int = 0
    lam: float | Sequence[float] = 0.01
    mu: float | Sequence[float] = 0.98
    noise: str = "dependency"
    search: str = "exact"
    candidates: int = 10
    tma: bool = True
    scheduler: str | None = None
    chunk: int | None = None
    loop: bool = False
    tile_x: bool = False
    tile_y: bool = False
    prompt_interpolation: str = "linear"
    control_scale: float = 1.0
    output_type: str = "pil"
    cache_interval: int = 1
    cache_branch: int | None = None
    fast: bool = False
    strength: float = 1.0
    image_guidance: float | None = None

    def __post_init__(self):
        if self.frames < 1:
            raise ValueError(f"frames must be ≥ 1, got {self.frames}")
        if self.cache_interval < 1:
            raise ValueError(f"cache_interval must be ≥ 1 (1: no step caching), got {self.cache_interval}")
        if self.width % 8 or self.height % 8:
            raise ValueError(f"width and height must be multiples of 8, got {self.width}×{self.height}")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {self.strength}")

    def replace(self, **changes) -> SamplingOptions:
        """A copy with some knobs changed (e.g. a smaller chunk after running out of memory)."""
        return dataclasses.replace(self, **changes)


@dataclass
class ClipResult:
    frames: list  # PIL images; float arrays (H, W, 3) in [0, 1] with output_type="np"; latents with "latent"
    noise_stats: NoiseStats
    seed: int
    timings: dict = field(default_factory=dict)


@dataclass
class Conditioning:
    """What ``prepare`` makes of the prompt and control images, on the pipeline's device."""

    prompt_embeds: torch.Tensor  # (1, tokens, width) for one prompt, (frames, tokens, width) for a schedule
    negative_embeds: torch.Tensor | None  # (1, tokens, width) under classifier-free guidance
    control: torch.Tensor | None  # (frames, 3, H, W) in [0, 1] for a ControlNet pipeline
    do_cfg: bool
    # LCM-distilled UNets (time_cond_proj_dim set) take the guidance scale as an embedding (1, dim) instead
    # of classifier-free guidance, as the stock pipeline gives it; None for every other UNet.
    timestep_cond: torch.Tensor | None = None
    added: AddedConditioning | None = None  # SDXL's pooled text and size/crop ids (families)
    image_latents: torch.Tensor | None = None  # (frames, 4, h, w) unscaled: instruction editing (``edit``)


def frame_chunks(frames: int, chunk: int | None) -> list[tuple[int, int]]:
    """(start, end) of each chunk, in frame order; no chunk (or a large one) is the whole clip."""
    size = frames if not chunk or chunk >= frames else chunk
    return [(start, min(start + size, frames)) for start in range(0, frames, size)]


def _prepare_control(pipe, images, frames, width, height, device, dtype) -> torch.Tensor:
    """Control images → (frames, 3, H, W) in [0, 1], preprocessed like the stock pipeline does."""
    if images is None:
        raise ValueError("This pipeline has a ControlNet: give one control image per frame")
    if len(images) != frames:
        raise ValueError(f"Got {len(images)} control images for {frames} frames: give exactly one per frame")
    # diffusers reads numpy arrays as floats in [0, 1]: 8-bit arrays become images first, or the
    # ControlNet would see inputs 255 times too strong.
    images = [Image.fromarray(im) if isinstance(im, np.ndarray) and im.dtype == np.uint8 else im for im in images]
    tensor = pipe.control_image_processor.preprocess(images, height=height, width=width)
    return tensor.to(device=device, dtype=dtype)


def prepare(pipe, options: SamplingOptions, control_images: Sequence | None = None) -> Conditioning:
    """Scheduler, prompt embeddings and control images: the stock pipeline's own components and helpers."""
    if options.scheduler is not None:
        from .models import set_scheduler

        set_scheduler(pipe, options.scheduler)
    device = pipe._execution_device
    do_cfg = options.guidance > 1.0 and pipe.unet.config.time_cond_proj_dim is None
    if options.image_guidance is not None:  # InstructPix2Pix guides only with both scales (diffusers)
        do_cfg = do_cfg and options.image_guidance >= 1.0
    keys = schedule.normalize_schedule(options.prompt, options.frames)
    prompt_embeds, negative_embeds, added = family_of(pipe).encode(pipe, keys, options, device, do_cfg)
    control = None
    controlnet = getattr(pipe, "controlnet", None)
    if controlnet is not None:
        control = _prepare_control(
            pipe, control_images, options.frames, options.width, options.height, device, controlnet.dtype
        )
    timestep_cond = None
    proj_dim = pipe.unet.config.time_cond_proj_dim
    if proj_dim is not None:
        scale = torch.tensor([options.guidance - 1.0])
        timestep_cond = pipe.get_guidance_scale_embedding(scale, embedding_dim=proj_dim)
        timestep_cond = timestep_cond.to(device=device, dtype=prompt_embeds.dtype)
    return Conditioning(prompt_embeds, negative_embeds, control, do_cfg, timestep_cond=timestep_cond, added=added)


def latent_shape(pipe, options: SamplingOptions) -> tuple[int, int, int]:
    """(channels, height, width) of one frame's latent (the VAE's channels: an editing UNet takes more)."""
    factor = pipe.vae_scale_factor
    return pipe.vae.config.latent_channels, options.height // factor, options.width // factor


def initial_noise(
    pipe, options: SamplingOptions, generator: torch.Generator, latents: torch.Tensor | None = None
) -> tuple[torch.Tensor, NoiseStats]:
    """The clip's initial latents (frames, C, h, w), drawn on the CPU from ``generator`` so a clip is
    reproducible on any device; or the given ``latents`` (unscaled, like the stock pipeline's)."""
    shape = latent_shape(pipe, options)
    frames = options.frames
    if latents is None:
        return make_noise(
            options.noise,
            frames,
            shape,
            options.lam,
            generator=generator,
            candidates=options.candidates,
            search=options.search,
            loop=options.loop,
            return_stats=True,
        )
    if tuple(latents.shape) != (frames, *shape):
        raise ValueError(f"latents must have shape {(frames, *shape)}, got {tuple(latents.shape)}")
    return latents, NoiseStats(target=[0.0] * frames, alpha=[0.0] * frames, divergence=[0.0] * frames)


class ChunkedDenoiser:
    """The denoising loop over the whole clip, ``chunk`` frames per UNet (and ControlNet) call.

    Every step runs all chunks in frame order, then one scheduler step on the whole clip, so multistep
    and ancestral schedulers see what they would unchunked. The TMA state says which frames the
    current call holds; each TMA processor carries its layer's momentum from one chunk to the next.
    With step caching the kept deep features are keyed by the chunk's frames and the batch layout.
    """

    def __init__(self, pipe, options: SamplingOptions, cond: Conditioning):
        self.pipe, self.options, self.cond = pipe, options, cond
        frames = options.frames
        if not options.tma:
            mu = [0.0] * frames
        else:
            mu = schedule.loop_mu_list(options.mu, frames) if options.loop else schedule.mu_list(options.mu, frames)
        self.state = TemporalState(mu=mu, loop=options.loop)
        self.chunks = frame_chunks(frames, options.chunk)
        editing = cond.image_latents is not None  # [text, image, uncond] (``edit``)
        self.groups = (3 if editing else 2) if cond.do_cfg else 1
        self.step_cache = (
            StepCachedUNet(pipe.unet, options.cache_interval, options.cache_branch)
            if options.cache_interval > 1
            else None
        )

    def predict_noise(self, latent_chunk: torch.Tensor, t, start: int, end: int) -> torch.Tensor:
        """The guided noise prediction for frames ``start:end`` at timestep ``t``."""
        if self.cond.image_latents is not None:
            from .edit import predict_edit_noise

            return predict_edit_noise(self, latent_chunk, t, start, end)
        pipe, cond, groups = self.pipe, self.cond, self.groups
        count = end - start
        self.state.start, self.state.count = start, count
        model_input = torch.cat([latent_chunk] * groups) if cond.do_cfg else latent_chunk
        model_input = pipe.scheduler.scale_model_input(model_input, t)
        if cond.prompt_embeds.shape[0] == 1:
            embeds = cond.prompt_embeds.expand(count, -1, -1)
        else:
            embeds = cond.prompt_embeds[start:end]
        if cond.negative_embeds is not None:  # classifier-free guidance
            embeds = torch.cat([cond.negative_embeds.expand(count, -1, -1), embeds])
        added = cond.added.for_chunk(start, end) if cond.added is not None else None
        residuals = {}
        extra: dict = {}  # an LCM-distilled UNet's guidance embedding, one row per batch entry
        if cond.timestep_cond is not None:
            extra["timestep_cond"] = cond.timestep_cond.expand(model_input.shape[0], -1)
        if cond.control is not None:
            control = cond.control[start:end]
            control = torch.cat([control] * groups) if cond.do_cfg else control
            down, mid = pipe.controlnet(
                model_input,
                t,
                encoder_hidden_states=embeds,
                controlnet_cond=control,
                conditioning_scale=self.options.control_scale,
                guess_mode=False,
                added_cond_kwargs=added,
                return_dict=False,
                **extra,
            )
            residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        pred = self.call_unet(model_input, t, embeds, start, end, added_cond_kwargs=added, **residuals, **extra)
        if cond.do_cfg:
            uncond, text = pred.chunk(2)
            pred = uncond + self.options.guidance * (text - uncond)
        return pred

    def call_unet(self, model_input: torch.Tensor, t, embeds: torch.Tensor, start: int, end: int, **kwargs):
        """The UNet on one chunk's batch (through step caching when it is on); ``kwargs``: ControlNet
        residuals, SDXL's ``added_cond_kwargs``, an LCM UNet's ``timestep_cond``."""
        if self.step_cache is None:
            return self.pipe.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False, **kwargs)[0]
        key = (start, end, model_input.shape[0])  # this chunk's frames, in this batch layout
        return self.step_cache(model_input, t, embeds, key=key, step_index=self.state.step, **kwargs)

    def run(
        self,
        latents: torch.Tensor,
        generator: torch.Generator,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        on_latents: LatentsSink | None = None,
        start_step: int = 0,
    ) -> torch.Tensor:
        """Denoise the initial ``latents`` (unscaled noise) into the clip's final latents.

        ``start_step`` > 0 (restyle): ``latents`` are already noised to that step's timestep
        (``restyle.init_latents``) and only the steps from it on run, as in diffusers' img2img.
        """
        pipe, scheduler = self.pipe, self.pipe.scheduler
        scheduler.set_timesteps(self.options.steps, device=pipe._execution_device)
        timesteps = scheduler.timesteps
        latents = latents.to(device=pipe._execution_device, dtype=self.cond.prompt_embeds.dtype)
        if start_step:
            timesteps = timesteps[start_step * scheduler.order :]
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(start_step * scheduler.order)
        else:
            latents = latents * scheduler.init_noise_sigma
        extra_step_kwargs = pipe.prepare_extra_step_kwargs(generator, 0.0)
        models = [pipe.unet, getattr(pipe, "controlnet", None)] if self.options.tma else []
        with temporal_momentum_attention(models, self.state):
            for step_index, t in enumerate(timesteps):
                self.state.step = step_index
                noise_pred = torch.empty_like(latents)
                for start, end in self.chunks:
                    if cancelled():
                        raise SamplingCancelled(f"cancelled at step {step_index + 1} of {len(timesteps)}")
                    noise_pred[start:end] = self.predict_noise(latents[start:end], t, start, end)
                stepped = scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)
                if on_latents is not None:  # DDIM, Euler, LCM… return their x0 prediction; multistep ones do not
                    x0 = stepped[1] if len(stepped) > 1 else predicted_x0(scheduler, latents, noise_pred, t)
                    on_latents(step_index + 1, len(timesteps), stepped[0], x0)
                latents = stepped[0]
                if progress is not None:
                    progress(step_index + 1, len(timesteps))
        return latents


def decode(
    pipe,
    latents: torch.Tensor,
    options: SamplingOptions,
    cancelled: Callable[[], bool] = lambda: False,
    on_frame: FrameSink | None = None,
) -> list:
    """Decode chunk by chunk (the VAE is per frame, so this is exact), handing frames out as they come."""
    if options.output_type == "latent":
        return list(latents)
    out = []
    large = fast.plan(pipe._execution_device, options.fast).large_frame_vae
    for start, end in frame_chunks(options.frames, options.chunk):
        if cancelled():
            raise SamplingCancelled("cancelled while decoding")
        with fast.large_frame_decoding(pipe.vae, options.width, options.height, large), vae_precision(pipe) as dtype:
            scaled = latents[start:end].to(dtype) / pipe.vae.config.scaling_factor  # SDXL: float32 (families)
            images = pipe.vae.decode(scaled, return_dict=False)[0]
        images = pipe.image_processor.postprocess(
            images, output_type=options.output_type, do_denormalize=[True] * (end - start)
        )
        for offset, image in enumerate(images):
            out.append(np.asarray(image) if options.output_type == "np" else image)
            if on_frame is not None:
                on_frame(start + offset, image)
    return out


@torch.no_grad()
def sample(
    pipe,
    options: SamplingOptions,
    *,
    control_images: Sequence | None = None,
    init_images: Sequence | None = None,
    latents: torch.Tensor | None = None,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_frame: FrameSink | None = None,
    on_stage: StageSink | None = None,
    on_latents: LatentsSink | None = None,
) -> ClipResult:
    """Sample a clip with ZS²: prepare → initial noise → chunked denoising → decode.

    ``control_images``: one per frame for a ControlNet pipeline. ``latents``: initial noise
    (frames, 4, H/8, W/8) to use instead of drawing it. ``init_images``: one source frame per frame
    to restyle at ``options.strength`` (``restyle``: that noise is added to them). ``progress(step,
    total)`` is called after each denoising step (the steps run); ``should_cancel()`` is checked
    before every chunk; ``on_frame(index, frame)``
    receives each frame as soon as it is decoded; ``on_stage(name)`` hears each stage of ``STAGES``
    as it starts ("decode" is skipped for latent output); ``on_latents(step, total, latents, x0)`` sees
    the latents after each denoising step (live previews).
    """
    from . import edit, restyle  # both build on this module's stages

    timings: dict[str, float] = {}
    started = time.perf_counter()
    cancelled = should_cancel or (lambda: False)
    stage = on_stage or (lambda name: None)

    stage("encode")
    cond = prepare(pipe, options, control_images)
    timings["prepare_seconds"] = time.perf_counter() - started

    t0 = time.perf_counter()
    generator = torch.Generator("cpu").manual_seed(int(options.seed))
    latents, stats = initial_noise(pipe, options, generator, latents)
    timings["noise_seconds"] = time.perf_counter() - t0

    # Tiling (circular padding) stays on through decoding: the VAE's convolutions must wrap too.
    with seamless_tiling([pipe.unet, getattr(pipe, "controlnet", None), pipe.vae], options.tile_x, options.tile_y):
        first_step = 0
        source = restyle.source_of(options, init_images)
        if source is not None:
            t0 = time.perf_counter()
            latents, first_step = restyle.init_latents(pipe, options, source, latents, cancelled)
            timings["source_seconds"] = time.perf_counter() - t0
        if options.image_guidance is not None or pipe.unet.config.in_channels == edit.EDIT_CHANNELS:
            cond.image_latents = edit.image_latents(pipe, options, init_images, cancelled)
        stage("denoise")
        t0 = time.perf_counter()
        latents = ChunkedDenoiser(pipe, options, cond).run(
            latents, generator, progress, cancelled, on_latents=on_latents, start_step=first_step
        )
        timings["denoise_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if options.output_type != "latent":
            stage("decode")
        frames = decode(pipe, latents, options, cancelled, on_frame)
    timings["decode_seconds"] = time.perf_counter() - t0
    timings["total_seconds"] = time.perf_counter() - started
    return ClipResult(frames=frames, noise_stats=stats, seed=int(options.seed), timings=timings)


def sample_video(
    pipe,
    prompt: str | Sequence[tuple[int, str]],
    *,
    control_images: Sequence | None = None,
    init_images: Sequence | None = None,
    latents: torch.Tensor | None = None,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_frame: FrameSink | None = None,
    on_stage: StageSink | None = None,
    on_latents: LatentsSink | None = None,
    **options,
) -> ClipResult:
    """``sample`` with the ``SamplingOptions`` fields as keyword arguments (frames=…, steps=…, mu=…).

    Frames, width, height, steps, guidance, negative_prompt, seed, lam, mu, noise, search, candidates,
    tma, scheduler, chunk, loop, tile_x, tile_y, prompt_interpolation, control_scale, output_type and
    strength are those of ``SamplingOptions``; the rest are those of ``sample``.
    """
    return sample(
        pipe,
        SamplingOptions(prompt=prompt, **options),
        control_images=control_images,
        init_images=init_images,
        latents=latents,
        progress=progress,
        should_cancel=should_cancel,
        on_frame=on_frame,
        on_stage=on_stage,
        on_latents=on_latents,
    )
