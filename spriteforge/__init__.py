"""spriteforge: train a small image diffusion model on your own sprites, on a laptop CPU."""

__version__ = "0.1.0"
