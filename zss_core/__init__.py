"""ZS² zero-shot video sampling for Stable Diffusion 1.x (importing this package never imports torch)."""

__version__ = "0.1.0"
