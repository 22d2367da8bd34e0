"""GPU fast paths (zss_core/fast.py) give the plain path's frames, within stated tolerances.

Tolerances: channels-last and fused projections reorder float32 sums only (≤ 1e-4 on frames in
[0, 1]); a compiled UNet likewise (≤ 1e-3: Inductor fuses and reorders more); tiled VAE decoding blends
overlapping tiles, so it is bounded on average rather than exactly (see the test), and only used for
frames of a megapixel and more.
"""

import numpy as np
import pytest
import torch

from zss_core import fast
from zss_core.models import load_pipeline
from zss_core.sampler import sample_video

SIZE = dict(width=64, height=64, steps=4)
PROMPT = "a red brick wall"


def frames(pipe, **options):
    clip = dict(frames=4, seed=7, chunk=2, output_type="np", **SIZE)
    clip.update(options)
    return np.stack(sample_video(pipe, PROMPT, **clip).frames)


def test_plan_keeps_cpu_plain():
    assert fast.plan("cpu", enabled=True) == fast.FastPaths()
    assert fast.plan("cuda", enabled=False) == fast.FastPaths()
    on_gpu = fast.plan("cuda", enabled=True)
    assert on_gpu.channels_last and on_gpu.fused_qkv and on_gpu.large_frame_vae


@pytest.mark.parametrize("tma", [True, False])
def test_channels_last_and_fused_projections_match_the_plain_path(tiny_control_pipe, tma):
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    pipe = load_pipeline("tiny", "tiny", device="cpu")
    fast.apply(pipe, fast.FastPaths(channels_last=True, fused_qkv=True))
    assert all(type(p) is FusedAttnProcessor2_0 for p in pipe.unet.attn_processors.values())
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    images = [np.full((64, 64, 3), 40 * i, dtype=np.uint8) for i in range(4)]
    plain = frames(tiny_control_pipe, tma=tma, control_images=images)
    quick = frames(pipe, tma=tma, control_images=images)
    assert float(np.abs(plain - quick).max()) <= 1e-4
    # TMA's own processors use the separate projections and are put back after sampling.
    assert all(type(p) is FusedAttnProcessor2_0 for p in pipe.unet.attn_processors.values())


def test_fused_projections_are_skipped_over_other_processors():
    pipe = load_pipeline("tiny", device="cpu")
    pipe.enable_attention_slicing()
    before = {name: type(p) for name, p in pipe.unet.attn_processors.items()}
    fast.apply(pipe, fast.FastPaths(fused_qkv=True))
    assert {name: type(p) for name, p in pipe.unet.attn_processors.items()} == before


def test_compiled_parts_keep_processors_hooks_and_results(tiny_pipe):
    """The compile plumbing with the eager backend (Inductor on this CPU takes minutes): the parts are
    replaced, attention processors and TMA untouched, forward hooks on the wrappers still fire."""
    pipe = load_pipeline("tiny", device="cpu")
    count = fast.compile_parts(pipe.unet, backend="eager")
    assert count > 0
    assert isinstance(pipe.unet.down_blocks[0].resnets[0], torch._dynamo.eval_frame.OptimizedModule)
    assert pipe.unet.attn_processors.keys() == tiny_pipe.unet.attn_processors.keys()
    calls = []
    handle = pipe.unet.up_blocks[1].resnets[0].register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        quick = frames(pipe, cache_interval=2)
    finally:
        handle.remove()
    assert calls
    assert float(np.abs(frames(tiny_pipe, cache_interval=2) - quick).max()) <= 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.compile with Inductor is a CUDA path in the product")
def test_inductor_compiled_unet_matches_on_cuda():
    plain = load_pipeline("tiny", device="cuda", dtype="float32")
    pipe = load_pipeline("tiny", device="cuda", dtype="float32")
    fast.apply(pipe, fast.plan("cuda", enabled=True))
    assert float(np.abs(frames(plain) - frames(pipe)).max()) <= 1e-3


def test_large_frame_decoding_tiles_and_restores(tiny_pipe):
    vae = tiny_pipe.vae
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))  # 128² frames
    with torch.no_grad():
        plain = vae.decode(latents, return_dict=False)[0]
        with fast.large_frame_decoding(vae, 128, 128, enabled=True, threshold=128 * 128) as on:
            assert on and vae.use_tiling and vae.use_slicing
            tiled = vae.decode(latents, return_dict=False)[0]
        assert not vae.use_tiling and not vae.use_slicing
        with fast.large_frame_decoding(vae, 128, 128, enabled=True) as on:  # below the real threshold
            assert not on and not vae.use_tiling
        sliced = vae.decode(latents[:1], return_dict=False)[0]  # one frame: what slicing decodes alone
    assert float((plain[:1] - sliced).abs().max()) <= 1e-4  # batch vs single-frame convolutions
    # Tiles blend at their seams: on this random tiny VAE (outputs in [-1, 1]) the mean difference is
    # about 0.18; a broken tiling (e.g. tiles misplaced) is far off that.
    assert 0.0 < float((plain - tiled).abs().mean()) <= 0.3
