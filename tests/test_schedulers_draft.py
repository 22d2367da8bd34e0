"""Few-step schedulers (lcm, tcd, ddim-trailing, euler-trailing) in ZS²'s loop, and the draft/turbo presets."""

import json
import subprocess
import sys

import numpy as np
import pytest

from zss_core import defaults, presets, protocol
from zss_core.cli import build_parser, job_from_args
from zss_core.models import load_pipeline, set_scheduler
from zss_core.sampler import sample_video

FEW_STEP = ("lcm", "tcd", "ddim-trailing", "euler-trailing")
CLASSES = {
    "lcm": "LCMScheduler",
    "tcd": "TCDScheduler",
    "ddim-trailing": "DDIMScheduler",
    "euler-trailing": "EulerDiscreteScheduler",
}


def max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def timesteps(pipe, steps=6):
    pipe.scheduler.set_timesteps(steps)
    return [float(t) for t in pipe.scheduler.timesteps]


@pytest.mark.parametrize("name", FEW_STEP)
def test_few_step_names_build_their_scheduler_from_the_models_config(name):
    pipe = load_pipeline("tiny", scheduler=name, device="cpu")
    scheduler = pipe.scheduler
    assert type(scheduler).__name__ == CLASSES[name]
    # the model's noise schedule is kept
    assert (scheduler.config.beta_start, scheduler.config.beta_schedule) == (0.00085, "scaled_linear")
    if name.endswith("-trailing"):
        assert scheduler.config.timestep_spacing == "trailing"
        assert timesteps(pipe)[0] == 999  # trailing: the first step starts at the last training timestep


def test_a_trailing_name_does_not_leak_into_the_next_jobs_scheduler():
    """A warm worker: after a -trailing job, every other name gives what a cold load gives."""
    names = [n for n in defaults.SCHEDULERS if n != "lms"]  # lms needs scipy, which the environment may lack
    cold = {name: timesteps(load_pipeline("tiny", scheduler=name, device="cpu")) for name in names}
    assert cold["ddim"] != cold["ddim-trailing"] and cold["euler"] != cold["euler-trailing"]
    pipe = load_pipeline("tiny", device="cpu")
    for trailing in ("ddim-trailing", "euler-trailing"):
        for name in names:
            set_scheduler(pipe, trailing)
            set_scheduler(pipe, name)
            assert timesteps(pipe) == cold[name], (trailing, name)
            assert pipe.scheduler.config.get("timestep_spacing") == load_pipeline(
                "tiny", scheduler=name, device="cpu"
            ).scheduler.config.get("timestep_spacing")


@pytest.mark.parametrize("name", FEW_STEP)
def test_few_step_schedulers_keep_chunking_exact_without_guidance(name):
    """The draft path: guidance 1 (no negative batch), 6 steps; LCM adds fresh noise every step."""
    pipe = load_pipeline("tiny", scheduler=name, device="cpu")
    common = dict(frames=4, seed=2, width=64, height=64, steps=6, guidance=1.0, output_type="np")
    whole = sample_video(pipe, "a red brick wall", **common).frames
    parts = sample_video(pipe, "a red brick wall", chunk=3, **common).frames
    assert max_diff(whole, parts) < 1e-4
    other = sample_video(pipe, "a red brick wall", **{**common, "seed": 3}).frames
    assert max_diff(whole, other) > 1e-3  # the seed matters: the comparison above can fail


def test_lcm_and_tcd_refuse_more_steps_than_their_schedule_has():
    base = {"id": "j", "prompt": "p", "model": "tiny", "output_dir": "/tmp"}
    for name in defaults.FEW_STEP_SCHEDULERS:
        problems = protocol.validate_job({**base, "scheduler": name, "steps": defaults.FEW_STEP_MAX_STEPS + 1})
        assert [p.field for p in problems] == ["steps"] and name in problems[0].message
        assert protocol.validate_job({**base, "scheduler": name, "steps": defaults.FEW_STEP_MAX_STEPS}) == []
    assert protocol.validate_job({**base, "scheduler": "ddim", "steps": 200}) == []


# ------------------------------------------------------------------------------------------ presets


def cli_job(*args):
    return job_from_args(build_parser().parse_args(["generate", "a wall", "--model", "tiny", *args]))


def test_the_draft_preset_sets_few_steps_lcm_low_guidance_and_the_lora():
    plain = cli_job()
    assert (plain["steps"], plain["guidance"], plain["scheduler"]) == (30, 7.5, "ddim") and "loras" not in plain
    draft = cli_job("--preset", "draft", "--draft-lora", "latent-consistency/lcm-lora-sdv1-5")
    assert (draft["steps"], draft["guidance"], draft["scheduler"]) == (6, 1.0, "lcm")
    assert draft["loras"] == [{"path": "latent-consistency/lcm-lora-sdv1-5", "weight": 1.0}]
    assert protocol.validate_job(draft) == []
    # explicit values inside the preset's ranges are kept (a TCD LoRA wants tcd)
    tuned = cli_job("--preset", "draft", "--steps", "4", "--guidance", "1.5", "--scheduler", "tcd")
    assert (tuned["steps"], tuned["guidance"], tuned["scheduler"]) == (4, 1.5, "tcd")


def test_the_turbo_preset_runs_one_step_without_guidance():
    turbo = cli_job("--preset", "turbo")
    assert (turbo["steps"], turbo["guidance"], turbo["scheduler"]) == (1, 0.0, "euler-trailing")
    assert "loras" not in turbo and protocol.validate_job(turbo) == []


@pytest.mark.parametrize(
    "args, field",
    [
        (("--preset", "draft", "--steps", "30"), "steps"),
        (("--preset", "draft", "--guidance", "7.5"), "guidance"),
        (("--preset", "draft", "--scheduler", "dpmpp"), "scheduler"),
        (("--preset", "turbo", "--guidance", "1.0"), "guidance"),
        (("--preset", "turbo", "--draft-lora", "x.safetensors"), "draft_lora"),
        (("--draft-lora", "x.safetensors"), "draft_lora"),
    ],
)
def test_values_that_contradict_the_preset_are_refused(args, field):
    with pytest.raises(presets.PresetError) as info:
        cli_job(*args)
    assert info.value.field == field


def test_a_draft_lora_is_added_to_the_jobs_other_loras():
    job = {"steps": 30, "guidance": 7.5, "scheduler": "ddim", "loras": [{"path": "style.safetensors", "weight": 0.7}]}
    out = presets.expand(job, "draft", draft_lora="lcm.safetensors")
    assert out["loras"] == [{"path": "style.safetensors", "weight": 0.7}, {"path": "lcm.safetensors", "weight": 1.0}]
    assert job["loras"] == [{"path": "style.safetensors", "weight": 0.7}]  # the input is not changed


def test_every_preset_lies_inside_its_own_ranges_and_names_known_schedulers():
    for preset in presets.PRESETS.values():
        assert presets.expand({"steps": 30, "guidance": 7.5, "scheduler": "ddim"}, preset.name)
        assert set(preset.schedulers) <= set(defaults.SCHEDULERS)


@pytest.fixture(scope="module")
def draft_lora(tmp_path_factory):
    """A LoRA for the tiny UNet made with PEFT and saved by diffusers (random weights: the test checks
    the plumbing, not the look)."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from zss_core.models import build_tiny_pipeline

    unet = build_tiny_pipeline().unet
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    folder = tmp_path_factory.mktemp("lora")
    StableDiffusionPipeline.save_lora_weights(
        folder,
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
        weight_name="tiny-lcm-lora.safetensors",
    )
    return folder / "tiny-lcm-lora.safetensors"


def test_the_draft_preset_runs_end_to_end_from_the_cli(tmp_path, draft_lora):
    """With a weighted prompt over 77 tokens, as artists write them."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "zss_core.cli",
            "generate",
            "a (red brick:1.3) wall, [moss], " + "weathered stones, " * 6,  # weighted and over 77 tokens
            "--model",
            "tiny",
            "--preset",
            "draft",
            "--draft-lora",
            str(draft_lora),
            "--frames",
            "3",
            "--size",
            "64x64",
            "--no-mp4",
            "--out",
            str(tmp_path),
            "--id",
            "draft",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "draft" / "job.json").read_text())
    job = manifest["job"]
    assert manifest["status"] == "done" and len(manifest["frames"]) == 3
    assert (job["steps"], job["guidance"], job["scheduler"]) == (6, 1.0, "lcm")
    assert job["loras"] == [{"path": str(draft_lora), "weight": 1.0}]


# --------------------------------------------------------------------- LCM-distilled models


@pytest.fixture(scope="module")
def lcm_model_pipe():
    """The tiny model with an LCM-distilled-style UNet: it takes the guidance scale as an embedding
    (time_cond_proj_dim), like LCM_Dreamshaper, instead of classifier-free guidance."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    from zss_core.models import build_tiny_pipeline

    tiny = build_tiny_pipeline()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        config = {k: v for k, v in tiny.unet.config.items() if not k.startswith("_")}  # _use_default_values too
        unet = UNet2DConditionModel.from_config({**config, "time_cond_proj_dim": 32})
    parts = {k: v for k, v in tiny.components.items() if k != "image_encoder"}
    pipe = StableDiffusionPipeline(**{**parts, "unet": unet, "requires_safety_checker": False})
    assert pipe.unet.config.time_cond_proj_dim == 32
    set_scheduler(pipe, "lcm")
    return pipe


def test_an_lcm_model_gets_its_guidance_embedding_as_the_stock_pipeline_gives_it(lcm_model_pipe):
    import torch

    pipe = lcm_model_pipe
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    common = dict(frames=1, width=64, height=64, steps=4, seed=0, output_type="np")
    ours = sample_video(pipe, "a red brick wall", guidance=8.0, latents=latents, **common).frames
    stock = pipe(
        "a red brick wall",
        width=64,
        height=64,
        num_inference_steps=4,
        guidance_scale=8.0,
        latents=latents.clone(),
        generator=torch.Generator().manual_seed(0),  # LCM's per-step noise, drawn like the sampler draws it
        output_type="np",
    ).images
    assert max_diff(ours, stock) < 1e-5
    other = sample_video(pipe, "a red brick wall", guidance=2.0, latents=latents, **common).frames
    assert max_diff(ours, other) > 1e-3  # the embedding carries the guidance scale


def test_step_caching_passes_the_guidance_embedding_on(lcm_model_pipe):
    common = dict(frames=2, width=64, height=64, steps=1, seed=0, guidance=8.0, output_type="np")
    plain = sample_video(lcm_model_pipe, "a red brick wall", **common).frames
    cached = sample_video(lcm_model_pipe, "a red brick wall", cache_interval=2, **common).frames  # one full step
    assert max_diff(plain, cached) < 1e-5


def test_a_job_made_with_a_preset_is_recognised_as_such():
    default = {"steps": 30, "guidance": 7.5, "scheduler": "ddim"}
    assert presets.matching(default) == "none"
    for name in presets.PRESETS:
        assert presets.matching(presets.expand(default, name)) == name
    assert presets.matching({**presets.expand(default, "draft"), "steps": 4}) == "none"  # tuned: shown as is
