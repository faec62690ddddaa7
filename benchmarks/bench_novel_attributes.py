"""Attribute accuracy on combinations a model never saw: compositional generalisation (conditioning issue).

For an attribute model of the built-in set: every (archetype, palette, accessory) combination that no
training character has (`evaluation.evaluate.novel_prompts`, seeded), with a seeded action and
direction, asked for as an 8-frame animation through `animate()` (20 DPM++ steps), once with the
pose template and once without; each frame judged by the built-in adherence classifier; printed as
the share of animations whose majority vote shows the requested value, and per frame.

    python benchmarks/bench_novel_attributes.py N CFGS [MODEL] [CHARACTERS]
    python benchmarks/bench_novel_attributes.py 48 2,4                      # the bundled model (24 characters)
    python benchmarks/bench_novel_attributes.py 48 2 runs/chars96 96         # a model trained on 96 characters

CHARACTERS must be the number the model was trained on (it defines which combinations are unseen).
Prints one JSON line per (cfg, pose template) setting.
"""

import json
import sys

import numpy as np
import torch

from spriteforge.animation.animate import animate
from spriteforge.data.builtin import render_builtin
from spriteforge.evaluation.adherence import load_classifier
from spriteforge.evaluation.animation import animation_adherence
from spriteforge.evaluation.evaluate import novel_prompts
from spriteforge.pipeline import load_model

n, cfgs = int(sys.argv[1]), [float(c) for c in sys.argv[2].split(",")]
m = load_model(sys.argv[3] if len(sys.argv) > 3 else "builtin")
data = render_builtin(size=32, characters=int(sys.argv[4]) if len(sys.argv) > 4 else 24)
prompts = novel_prompts(data, n)
vocab = m.attribute_values
req = [{k: vocab[k][j] for k, j in zip(vocab, m.attribute_row(p).tolist()) if j >= 0} for p in prompts]
clf = load_classifier(size=32)
for cfg in cfgs:
    for template in (True, False):
        anims = [torch.from_numpy(np.stack(animate(m, p, frames=8, seed=i, cfg=cfg, pose_template=template)))
                 .permute(0, 3, 1, 2) for i, p in enumerate(prompts)]
        adh = animation_adherence(anims, req, clf)
        print(json.dumps({"model": str(m.path), "cfg": cfg, "pose_template": template, "n": n,
                          "majority": adh["majority"], "frame": adh["frame"]}), flush=True)
