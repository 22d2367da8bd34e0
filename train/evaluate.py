"""Measure a (built-in or exported) texture model: prompt following and ControlNet following.

    python -m train.evaluate                         # zss_core/builtin/textures (+ textures-depth)
    python -m train.evaluate --model DIR --controlnet DIR --grid out.png

Prompt following: every family × palette prompt (64), ``--seeds`` images each, single frames from the
stock pipeline (DDIM, ``--steps``, ``--guidance``), labelled by the built-in classifier. ControlNet:
the correlation of the control height map with the generated frame's luminance, against a shuffled map.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from train.textures import COLOURS, FAMILIES, FAMILY_WORDS, control_maps, make_batch
from zss_core.builtin import BUILTIN_MODELS
from zss_core.builtin.classifier import classify, load_classifier


def corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-8))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(BUILTIN_MODELS["textures"][0]))
    p.add_argument("--controlnet", default=str(BUILTIN_MODELS["textures-depth"][0]))
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--grid", default="")
    p.add_argument("--no-controlnet", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from zss_core.models import load_pipeline

    pipe = load_pipeline(args.model, device="cpu", dtype="float32")
    model, config = load_classifier()
    pairs = [(f, c) for f in range(len(FAMILIES)) for c in range(len(COLOURS))]
    prompts = [f"{COLOURS[c]} {FAMILY_WORDS[FAMILIES[f]]}" for f, c in pairs]
    t = time.perf_counter()
    images, fam_ok, col_ok = [], [], []
    for seed in range(args.seeds):
        out = pipe(
            prompts,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            height=64,
            width=64,
            generator=torch.Generator("cpu").manual_seed(seed),
            output_type="np",
        ).images
        fam, col = classify(model, list(out))
        fam_ok += list(fam == [f for f, _ in pairs])
        col_ok += list(col == [c for _, c in pairs])
        images.append(out)
    fam_ok, col_ok = np.array(fam_ok), np.array(col_ok)
    print(
        f"{len(fam_ok)} images in {time.perf_counter() - t:.0f} s; classifier held out: family "
        f"{config.get('held_out_family_accuracy')}, colour {config.get('held_out_colour_accuracy')}"
    )
    print(f"family accuracy {fam_ok.mean():.3f}, colour accuracy {col_ok.mean():.3f}")
    per_f = fam_ok.reshape(args.seeds, len(FAMILIES), len(COLOURS))
    per_c = col_ok.reshape(args.seeds, len(FAMILIES), len(COLOURS))
    print("family acc per family:", {f: round(float(per_f[:, i].mean()), 2) for i, f in enumerate(FAMILIES)})
    print("colour acc per colour:", {c: round(float(per_c[:, :, i].mean()), 2) for i, c in enumerate(COLOURS)})
    if args.grid:
        from PIL import Image

        grid = images[0].reshape(len(FAMILIES), len(COLOURS), 64, 64, 3).transpose(0, 2, 1, 3, 4)
        Image.fromarray((grid.reshape(len(FAMILIES) * 64, len(COLOURS) * 64, 3) * 255).round().astype(np.uint8)).resize(
            (len(COLOURS) * 128, len(FAMILIES) * 128), Image.NEAREST
        ).save(args.grid)
    if args.no_controlnet:
        return
    from zss_core.sampler import sample_video

    cpipe = load_pipeline(args.model, controlnet=args.controlnet, device="cpu", dtype="float32")
    for name, kw in (
        ("per-frame (no TMA, independent noise)", dict(tma=False, noise="independent")),
        ("ZS² defaults", {}),
    ):
        matched, shuffled = [], []
        for k, prompt in enumerate(
            ("blue marble veins", "orange wood rings", "grey voronoi cells", "green fbm clouds")
        ):
            heights = make_batch(100 + k, 8)[1]
            maps = control_maps(heights)
            clip = sample_video(
                cpipe,
                prompt,
                frames=8,
                width=64,
                height=64,
                steps=args.steps,
                guidance=args.guidance,
                control_images=maps,
                seed=k,
                output_type="np",
                **kw,
            )
            luma = [f @ np.array([0.299, 0.587, 0.114]) for f in clip.frames]
            matched += [corr(luma[i], heights[i]) for i in range(8)]
            shuffled += [corr(luma[i], heights[(i + 3) % 8]) for i in range(8)]
        print(
            f"ControlNet, {name}: control/luminance correlation {np.mean(matched):.3f} "
            f"(shuffled maps {np.mean(shuffled):.3f})"
        )


if __name__ == "__main__":
    main()
