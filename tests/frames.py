"""Shared helpers of the sampler-level tests: comparing clips and making control images."""

import numpy as np
from PIL import Image


def max_diff(a, b):
    """The largest absolute difference between two clips (sequences of frames), in float32."""
    return max(
        float(np.abs(np.asarray(x, dtype=np.float32) - np.asarray(y, dtype=np.float32)).max()) for x, y in zip(a, b)
    )


def control_images(frames):
    """``frames`` seeded random 64×64 RGB control images (the same on every call)."""
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).convert("RGB") for _ in range(frames)]
