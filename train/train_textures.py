"""Train the built-in texture model (issue 7): VAE → UNet + text encoder → depth ControlNet → classifier.

    python -m train.train_textures vae        --minutes 10
    python -m train.train_textures unet       --minutes 45
    python -m train.train_textures controlnet --minutes 15
    python -m train.train_textures classifier --minutes 3
    python -m train.train_textures export     # → zss_core/builtin/textures, textures-depth, classifier

Every stage is seeded (batch i is drawn from seed ``seed * 1_000_003 + i``, so a resumed run sees the same
data as an uninterrupted one), time-budgeted (``--minutes``: the stage's total training time, resumed time included; it stops,
saves and exits when spent), checkpoints
every ``--ckpt-minutes`` into ``--workdir/<stage>/`` and continues from there with ``--resume``. The
checkpoints are private training state (torch.save); only ``export`` writes the shipped safetensors.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from train.textures import COLOURS, FAMILIES, make_batch, vocabulary

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ROOT / "zss_core" / "builtin"
MAX_TOKENS = 16
SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]  # eos id 3, not 2: CLIP keeps its eos-id pooling path


def log(stage, msg):
    print(f"[{time.strftime('%H:%M:%S')}] {stage}: {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Components


def build_tokenizer():
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + vocabulary())}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=MAX_TOKENS,
    )


def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        sample_size=64,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
    )


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(48, 96),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=4,
        norm_num_groups=16,
    )


def build_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MAX_TOKENS,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            projection_dim=64,
        )
    )


def train_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False
    )


def sample_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def build_controlnet(unet):
    from diffusers import ControlNetModel

    # The conditioning embedding must downsample 64 → 16 (the VAE factor 4): three stages, two strides.
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64))


# ---------------------------------------------------------------------------------------------
# Shared training loop machinery


class Run:
    """Time budget, periodic checkpoints and resume for one stage."""

    def __init__(self, args, stage):
        self.args, self.stage = args, stage
        self.dir = Path(args.workdir) / stage
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ckpt = self.dir / "ckpt.pt"
        self.start = time.time()
        self.last_ckpt = time.time()
        self.step = 0
        self.history: list = []
        self.elapsed_before = 0.0

    def resume(self, modules: dict, optim):
        if not (self.args.resume and self.ckpt.exists()):
            return
        state = torch.load(self.ckpt, map_location="cpu", weights_only=False)
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        optim.load_state_dict(state["optim"])
        self.step, self.history = state["step"], state["history"]
        self.elapsed_before = state.get("elapsed", 0.0)
        log(self.stage, f"resumed at step {self.step} ({self.elapsed_before / 60:.1f} min trained before)")

    def save(self, modules: dict, optim, extra=None):
        state = dict(
            modules={k: m.state_dict() for k, m in modules.items()},
            optim=optim.state_dict(),
            step=self.step,
            history=self.history,
            elapsed=self.elapsed(),
        )
        if extra:
            state.update(extra)
        tmp = self.ckpt.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.ckpt)
        (self.dir / "progress.json").write_text(
            json.dumps(dict(step=self.step, minutes=self.elapsed() / 60, recent=self.history[-5:]), indent=1)
        )
        self.last_ckpt = time.time()

    def elapsed(self):
        return self.elapsed_before + time.time() - self.start

    def done(self):
        out_of_time = self.elapsed() > self.args.minutes * 60  # total for the stage, resumed time included
        return out_of_time or (self.args.max_steps and self.step >= self.args.max_steps)

    def due(self):
        return time.time() - self.last_ckpt > self.args.ckpt_minutes * 60

    def batch_seed(self):
        return self.args.seed * 1_000_003 + self.step


def to_tensor(images):
    """(n, 64, 64, 3) float in [0, 1] → (n, 3, 64, 64) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous() * 2 - 1


def lr_at(step, base, warmup=200):
    return base * min(1.0, (step + 1) / warmup)


def ema_update(ema, model, step, max_decay):
    decay = min(max_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters()):
            pe.lerp_(pm, 1 - decay)


def load_stage_modules(args, stage, names):
    state = torch.load(Path(args.workdir) / stage / "ckpt.pt", map_location="cpu", weights_only=False)
    return state, {n: state["modules"][n] for n in names}


# ---------------------------------------------------------------------------------------------
# Stages


def train_vae(args, decoder_only=False):
    """The VAE; ``decoder_only`` (stage ``vae_decoder``): go on training only the decoder from the ``vae``
    stage's weights — the latent space (encoder) stays fixed, so this can run while the UNet trains."""
    stage = "vae_decoder" if decoder_only else "vae"
    run = Run(args, stage)
    torch.manual_seed(args.seed)
    vae = build_vae()
    scaling = None
    if decoder_only:
        state, mods = load_stage_modules(args, "vae", ["vae"])
        vae.load_state_dict(mods["vae"])
        scaling = state["scaling_factor"]
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    optim = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=args.lr or 1e-3, weight_decay=0.0)
    run.resume(dict(vae=vae), optim)
    log("vae", f"{sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M params")
    val = to_tensor(make_batch(10**9 + 7, 128)[0])
    while not run.done():
        x = to_tensor(make_batch(run.batch_seed(), args.batch)[0])
        for g in optim.param_groups:
            g["lr"] = lr_at(run.step, args.lr or 1e-3, 100)
        with torch.set_grad_enabled(not decoder_only):
            post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        rec_loss = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        kl = post.kl().mean() / (4 * 16 * 16)
        loss = rec_loss + 1e-4 * kl
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optim.step()
        run.step += 1
        if run.step % 50 == 0:
            with torch.no_grad():
                vr = vae.decode(vae.encode(val).latent_dist.mode()).sample
                psnr = 10 * math.log10(4 / F.mse_loss(vr.clamp(-1, 1), val).item())
            run.history.append(
                dict(step=run.step, loss=round(loss.item(), 4), kl=round(kl.item(), 3), val_psnr=round(psnr, 2))
            )
            log(stage, run.history[-1] | dict(min=round(run.elapsed() / 60, 1)))
        if run.due():
            run.save(dict(vae=vae), optim, extra=dict(scaling_factor=scaling) if scaling else None)
    if scaling:  # decoder only: the latent space and its scaling are the vae stage's
        run.save(dict(vae=vae), optim, extra=dict(scaling_factor=scaling))
        return
    with torch.no_grad():
        z = torch.cat(
            [vae.encode(to_tensor(make_batch(10**9 + 11 + i, 128)[0])).latent_dist.sample() for i in range(4)]
        )
        scaling = 1.0 / z.std().item()
    log("vae", f"latent std {z.std().item():.3f} → scaling_factor {scaling:.4f}")
    run.save(dict(vae=vae), optim, extra=dict(scaling_factor=scaling))


def _frozen_vae(args):
    finetuned = (Path(args.workdir) / "vae_decoder" / "ckpt.pt").exists()
    state, mods = load_stage_modules(args, "vae_decoder" if finetuned else "vae", ["vae"])
    vae = build_vae()
    vae.load_state_dict(mods["vae"])
    vae.register_to_config(scaling_factor=state["scaling_factor"])
    vae.requires_grad_(False).eval()
    return vae


def _captions(tokenizer, texts, rng, drop=0.1):
    texts = ["" if rng.random() < drop else t for t in texts]
    return tokenizer(texts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt").input_ids


def _noisy(sched, latents, gen):
    noise = torch.randn(latents.shape, generator=gen)
    noise += 0.1 * torch.randn(latents.shape[0], latents.shape[1], 1, 1, generator=gen)  # offset noise
    t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), generator=gen)
    return sched.add_noise(latents, noise, t), noise, t


def _diffusion_step(run, stage, loss, optim, params, emas, max_decay, losses, mods):
    """One optimiser step of a diffusion stage: clip, step, EMA, a loss log every 50 steps, checkpoint.

    ``losses`` collects the losses since the last log line and is emptied in place when it is written.
    """
    optim.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optim.step()
    for ema, model in emas:
        ema_update(ema, model, run.step, max_decay)
    run.step += 1
    losses.append(loss.item())
    if run.step % 50 == 0:
        run.history.append(dict(step=run.step, loss=round(float(np.mean(losses)), 4)))
        losses.clear()
        log(stage, run.history[-1] | dict(min=round(run.elapsed() / 60, 1)))
    if run.due():
        run.save(mods, optim)


def train_unet(args):
    run = Run(args, "unet")
    torch.manual_seed(args.seed)
    vae = _frozen_vae(args)
    sf = vae.config.scaling_factor
    tokenizer = build_tokenizer()
    unet, text = build_unet(), build_text_encoder(tokenizer)
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text).requires_grad_(False)
    params = list(unet.parameters()) + list(text.parameters())
    lr = args.lr or 5e-4
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    mods = dict(unet=unet, text=text, ema_unet=ema_unet, ema_text=ema_text)
    run.resume(mods, optim)
    sched = train_scheduler()
    log(
        "unet",
        f"unet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M, text encoder "
        f"{sum(p.numel() for p in text.parameters()) / 1e6:.2f} M params, latent scaling {sf:.4f}",
    )
    losses = []
    while not run.done():
        seed = run.batch_seed()
        images, _, texts, _, _ = make_batch(seed, args.batch, fillers=True)
        rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
        with torch.no_grad():
            latents = vae.encode(to_tensor(images)).latent_dist.sample(generator=gen) * sf
        ids = _captions(tokenizer, texts, rng)
        noisy, noise, t = _noisy(sched, latents, gen)
        for g in optim.param_groups:
            g["lr"] = lr_at(run.step, lr)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            emb = text(ids)[0]
            pred = unet(noisy, t, encoder_hidden_states=emb).sample
        loss = F.mse_loss(pred.float(), noise)
        _diffusion_step(run, "unet", loss, optim, params, [(ema_unet, unet), (ema_text, text)], args.ema, losses, mods)
    run.save(mods, optim)


def _trained_unet(args):
    tokenizer = build_tokenizer()
    _, mods = load_stage_modules(args, "unet", ["ema_unet", "ema_text"])
    unet, text = build_unet(), build_text_encoder(tokenizer)
    unet.load_state_dict(mods["ema_unet"])
    text.load_state_dict(mods["ema_text"])
    return tokenizer, unet.requires_grad_(False).eval(), text.requires_grad_(False).eval()


def train_controlnet(args):
    run = Run(args, "controlnet")
    torch.manual_seed(args.seed)
    vae = _frozen_vae(args)
    sf = vae.config.scaling_factor
    tokenizer, unet, text = _trained_unet(args)
    cnet = build_controlnet(unet)
    ema = copy.deepcopy(cnet).requires_grad_(False)
    lr = args.lr or 5e-4
    optim = torch.optim.AdamW(cnet.parameters(), lr=lr, weight_decay=0.0)
    mods = dict(controlnet=cnet, ema_controlnet=ema)
    run.resume(mods, optim)
    sched = train_scheduler()
    log("controlnet", f"{sum(p.numel() for p in cnet.parameters()) / 1e6:.2f} M params")
    losses = []
    last_follow = time.time()
    while not run.done():
        if args.follow_unet and time.time() - last_follow > args.follow_unet * 60:
            # Train alongside the UNet stage: pick up its newest (EMA) weights every few minutes.
            _, fresh_unet, fresh_text = _trained_unet(args)
            unet.load_state_dict(fresh_unet.state_dict())
            text.load_state_dict(fresh_text.state_dict())
            last_follow = time.time()
            log("controlnet", "reloaded the UNet and text encoder from the unet stage's checkpoint")
        seed = run.batch_seed() + 7
        images, heights, texts, _, _ = make_batch(seed, args.batch, fillers=True)
        rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
        cond = torch.from_numpy(heights)[:, None].expand(-1, 3, -1, -1).contiguous()  # [0, 1] like the pipeline
        with torch.no_grad():
            latents = vae.encode(to_tensor(images)).latent_dist.sample(generator=gen) * sf
            emb = text(_captions(tokenizer, texts, rng))[0]
        noisy, noise, t = _noisy(sched, latents, gen)
        for g in optim.param_groups:
            g["lr"] = lr_at(run.step, lr, 100)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            down, mid = cnet(noisy, t, encoder_hidden_states=emb, controlnet_cond=cond, return_dict=False)
            pred = unet(
                noisy,
                t,
                encoder_hidden_states=emb,
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
            ).sample
        loss = F.mse_loss(pred.float(), noise)
        _diffusion_step(run, "controlnet", loss, optim, list(cnet.parameters()), [(ema, cnet)], args.ema, losses, mods)
    run.save(mods, optim)


def _augment(x, gen):
    """Blur, noise and contrast jitter so that the classifier judges VAE-decoded (softer) images fairly."""
    n = x.shape[0]
    sigma = torch.rand(n, generator=gen) * 1.2
    k = torch.arange(-3, 4, dtype=torch.float32)
    out = torch.empty_like(x)
    for i in range(n):
        if sigma[i] < 0.2:
            out[i] = x[i]
            continue
        w = torch.exp(-(k**2) / (2 * sigma[i] ** 2))
        w = w / w.sum()
        xi = F.conv2d(
            F.pad(x[i : i + 1], (3, 3, 0, 0), mode="reflect"), w.view(1, 1, 1, 7).expand(3, 1, 1, 7), groups=3
        )
        out[i] = F.conv2d(F.pad(xi, (0, 0, 3, 3), mode="reflect"), w.view(1, 1, 7, 1).expand(3, 1, 7, 1), groups=3)[0]
    out = out + torch.randn(out.shape, generator=gen) * torch.rand(n, 1, 1, 1, generator=gen) * 0.06
    scale = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.3
    return ((out - 0.5) * scale + 0.5).clamp(0, 1)


def train_classifier(args):
    from zss_core.builtin.classifier import TextureClassifier

    run = Run(args, "classifier")
    torch.manual_seed(args.seed)
    model = TextureClassifier(len(FAMILIES), len(COLOURS))
    lr = args.lr or 2e-3
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    run.resume(dict(classifier=model), optim)
    # Held out from everything else: the generative models use seeds below 10**9.
    val_images, _, _, val_f, val_c = make_batch(3 * 10**9 + 1, 1024)
    val_x = torch.from_numpy(val_images).permute(0, 3, 1, 2).contiguous()
    while not run.done():
        seed = 2 * 10**9 + run.batch_seed()
        images, _, _, fam, col = make_batch(seed, args.batch)
        x = _augment(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.Generator().manual_seed(seed))
        for g in optim.param_groups:
            g["lr"] = lr_at(run.step, lr, 50)
        lf, lc = model(x)
        loss = F.cross_entropy(lf, torch.from_numpy(fam)) + F.cross_entropy(lc, torch.from_numpy(col))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        run.step += 1
        if run.step % 100 == 0:
            model.eval()
            with torch.no_grad():
                vf, vc = model(val_x)
            model.train()
            acc_f = (vf.argmax(1).numpy() == val_f).mean()
            acc_c = (vc.argmax(1).numpy() == val_c).mean()
            run.history.append(
                dict(
                    step=run.step,
                    loss=round(loss.item(), 4),
                    val_family=round(float(acc_f), 4),
                    val_colour=round(float(acc_c), 4),
                )
            )
            log("classifier", run.history[-1] | dict(min=round(run.elapsed() / 60, 1)))
        if run.due():
            run.save(dict(classifier=model), optim)
    run.save(dict(classifier=model), optim)


@torch.no_grad()
def _calibrate_batchnorm(model, batches=24, batch=64):
    """Recompute the BatchNorm statistics as a plain average over clean and augmented samples.

    The running averages collected during training (momentum 0.1, changing weights) left the eval-mode
    classifier at ~84 % family accuracy while train-mode statistics gave ~97 %; this closes the gap.
    Returns the held-out (family, colour) accuracy afterwards."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    for i in range(batches):
        images = make_batch(4 * 10**9 + i, batch)[0]
        x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        if i % 2:
            x = _augment(x, torch.Generator().manual_seed(i))
        model(x)
    model.eval()
    images, _, _, fam, col = make_batch(3 * 10**9 + 1, 1024)
    lf, lc = model(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    acc_f = float((lf.argmax(1).numpy() == fam).mean())
    acc_c = float((lc.argmax(1).numpy() == col).mean())
    log("classifier", f"BatchNorm recalibrated: held-out family {acc_f:.4f}, colour {acc_c:.4f}")
    return round(acc_f, 4), round(acc_c, 4)


def export(args):
    """Write the shipped diffusers folders (safetensors) from the stage checkpoints."""
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    from zss_core.builtin.classifier import TextureClassifier

    BUILTIN = Path(args.out)
    vae = _frozen_vae(args)
    tokenizer, unet, text = _trained_unet(args)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sample_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out = BUILTIN / "textures"
    pipe.save_pretrained(out, safe_serialization=True)
    # transformers 5 records the tokenizer as "TokenizersBackend", a name transformers 4 lacks; name it by
    # the class both have (PreTrainedTokenizerFast) so that the folder loads with either.
    for path, key in (
        (out / "model_index.json", None),
        (out / "tokenizer" / "tokenizer_config.json", "tokenizer_class"),
    ):
        data = json.loads(path.read_text())
        if key:
            data[key] = "PreTrainedTokenizerFast"
        else:
            data["tokenizer"] = ["transformers", "PreTrainedTokenizerFast"]
        path.write_text(json.dumps(data, indent=2) + "\n")
    log("export", f"pipeline → {out}")
    cpath = Path(args.workdir) / "controlnet" / "ckpt.pt"
    if cpath.exists():
        cnet = build_controlnet(unet)
        cnet.load_state_dict(torch.load(cpath, map_location="cpu", weights_only=False)["modules"]["ema_controlnet"])
        cnet.save_pretrained(BUILTIN / "textures-depth", safe_serialization=True)
        log("export", f"controlnet → {BUILTIN / 'textures-depth'}")
    kpath = Path(args.workdir) / "classifier" / "ckpt.pt"
    if kpath.exists():
        state = torch.load(kpath, map_location="cpu", weights_only=False)
        model = TextureClassifier(len(FAMILIES), len(COLOURS))
        model.load_state_dict(state["modules"]["classifier"])
        acc_f, acc_c = _calibrate_batchnorm(model)
        state["history"].append(dict(step=state["step"], val_family=acc_f, val_colour=acc_c, bn_recalibrated=True))
        (BUILTIN / "classifier").mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()}, BUILTIN / "classifier" / "model.safetensors"
        )
        last = state["history"][-1] if state["history"] else {}
        (BUILTIN / "classifier" / "config.json").write_text(
            json.dumps(
                dict(
                    families=list(FAMILIES),
                    colours=list(COLOURS),
                    steps=state["step"],
                    held_out_family_accuracy=last.get("val_family"),
                    held_out_colour_accuracy=last.get("val_colour"),
                    held_out_seed=3 * 10**9 + 1,
                    held_out_samples=1024,
                ),
                indent=1,
            )
        )
        log("export", f"classifier → {BUILTIN / 'classifier'}")
    # Training record next to the weights: steps, minutes, final losses.
    record = {}
    for stage in ("vae", "vae_decoder", "unet", "controlnet", "classifier"):
        p = Path(args.workdir) / stage / "ckpt.pt"
        if p.exists():
            s = torch.load(p, map_location="cpu", weights_only=False)
            record[stage] = dict(
                steps=s["step"],
                minutes=round(s.get("elapsed", 0) / 60, 1),
                last=s["history"][-3:],
                **({"scaling_factor": s["scaling_factor"]} if "scaling_factor" in s else {}),
            )
    (BUILTIN / "training.json").write_text(json.dumps(record, indent=1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["vae", "vae_decoder", "unet", "controlnet", "classifier", "export"])
    parser.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        help="the stage's total time budget (minutes trained before a --resume count)",
    )
    parser.add_argument("--max-steps", type=int, default=0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.0, help="0: the stage's default")
    parser.add_argument("--ema", type=float, default=0.998, help="maximum EMA decay (UNet, ControlNet)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="fp32 instead of bf16 autocast")
    parser.add_argument("--resume", action="store_true", help="continue from --workdir/<stage>/ckpt.pt")
    parser.add_argument(
        "--follow-unet",
        type=float,
        default=0.0,
        help="controlnet: reload the UNet stage's latest weights every N minutes (0: never), "
        "to train the ControlNet while the UNet is still training",
    )
    parser.add_argument("--ckpt-minutes", type=float, default=3.0)
    parser.add_argument("--out", default=str(BUILTIN), help="export: where the shipped folders go")
    parser.add_argument("--workdir", default=str(ROOT / "train" / "runs"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dict(
        vae=train_vae,
        vae_decoder=lambda a: train_vae(a, decoder_only=True),
        unet=train_unet,
        controlnet=train_controlnet,
        classifier=train_classifier,
        export=export,
    )[args.stage](args)


if __name__ == "__main__":
    main()
