"""Draw docs/builtin_showcase.png: six requests to the bundled model, 8 frames each, one row per request.

    python docs/builtin_model/make_showcase.py [MODEL]      # MODEL: builtin (default), a run or a checkpoint

Seeds 0-5, 20 DPM++ steps, cfg 2, the pose template, no clean-up; frames composited on white and
upscaled 3x with nearest neighbour. The same command gives the same picture on the same machine.
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from spriteforge.animation.animate import animate
from spriteforge.pipeline import load_model

REQUESTS = [
    "a red knight with a shield walking right",
    "a blue mage with a staff running left",
    "a green slime jumping toward the camera",
    "a gold skeleton with a sword attacking right",
    "a teal robot with a cape walking left",
    "a purple rogue with a hat standing idle",
]

model = load_model(sys.argv[1] if len(sys.argv) > 1 else "builtin")
rows = [np.concatenate(animate(model, r, frames=8, seed=i, steps=20, cfg=2.0), axis=1) for i, r in enumerate(REQUESTS)]
rgba = np.concatenate(rows, axis=0)
canvas = Image.new("RGBA", (rgba.shape[1], rgba.shape[0]), (255, 255, 255, 255))
canvas.alpha_composite(Image.fromarray(rgba, "RGBA"))
out = Path(__file__).resolve().parents[1] / "builtin_showcase.png"
canvas.convert("RGB").resize((rgba.shape[1] * 3, rgba.shape[0] * 3), Image.NEAREST).save(out)
print(f"wrote {out}")
