"""ZS² zero-shot video sampling for Stable Diffusion 1.x, 2.x and SDXL (importing this package never imports torch)."""

__version__ = "0.1.0"
