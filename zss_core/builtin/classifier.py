"""A small texture classifier (family and colour heads): the offline stand-in for a CLIP score.

Trained by ``python -m train.train_textures classifier`` on procedural samples whose seeds no generative
model saw; weights in ``zss_core/builtin/classifier/`` (safetensors + config.json with the label names and
the held-out accuracy). Input: images (n, 3, 64, 64) float in [0, 1].
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

CLASSIFIER_DIR = Path(__file__).resolve().parent / "classifier"


class TextureClassifier(nn.Module):
    def __init__(self, families: int = 8, colours: int = 8):
        super().__init__()
        chans = (3, 32, 48, 64, 96)
        layers = []
        for cin, cout in itertools.pairwise(chans):
            layers += [
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1, stride=2),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]
        self.features = nn.Sequential(*layers)
        self.family = nn.Linear(chans[-1] * 2, families)
        self.colour = nn.Linear(chans[-1] * 2, colours)

    def forward(self, x):
        h = self.features(x)
        h = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)
        return self.family(h), self.colour(h)


def load_classifier(directory: str | Path = CLASSIFIER_DIR):
    """(model in eval mode, config dict with 'families', 'colours', held-out accuracies)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    model = TextureClassifier(len(config["families"]), len(config["colours"]))
    model.load_state_dict(load_file(directory / "model.safetensors"))
    return model.eval(), config


@torch.no_grad()
def classify(model, images) -> tuple[np.ndarray, np.ndarray]:
    """Predicted (family indices, colour indices) for PIL images or float arrays (H, W, 3) in [0, 1]."""
    arrays = [
        np.asarray(im, dtype=np.float32) / (255.0 if not np.issubdtype(np.asarray(im).dtype, np.floating) else 1.0)
        for im in images
    ]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().float()
    if x.shape[-1] != 64 or x.shape[-2] != 64:
        x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    fam, col = model(x)
    return fam.argmax(1).numpy(), col.argmax(1).numpy()
