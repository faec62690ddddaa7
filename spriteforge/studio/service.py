"""`Studio`: the one object the web UI and the HTTP API both call, so they cannot drift apart.

A workspace is an ordinary folder:

    WORKSPACE/
      gallery/       every generation (see gallery.py) and gallery.db
      runs/NAME/     training runs started from the studio (ordinary run folders)
      data/NAME/     your image folders to train on
      models/        extra weights files (.safetensors) to pick in Generate
      uploads/       checked, re-encoded images sent to the studio (init, mask, control)
      compare/       comparison grids
      logs/          the training processes' output
      training.json  which training process belongs to this workspace
"""

from __future__ import annotations

import time
from pathlib import Path

from .gallery import Gallery, Item
from .generation import Generator, GenRequest, list_models
from .jobs import GenerationQueue, Job, TrainingManager
from .safety import StudioError, confine, store_upload

FOLDERS = ("gallery", "runs", "data", "models", "uploads", "compare", "logs")


class Studio:
    def __init__(self, workspace: str | Path, device: str = "cpu"):
        self.workspace = Path(workspace).expanduser().resolve()
        for name in FOLDERS:
            (self.workspace / name).mkdir(parents=True, exist_ok=True)
        self.gallery = Gallery(self.workspace / "gallery")
        self.recovered = self.gallery.recover()
        self.generator = Generator(self.workspace, self.gallery, device)
        self.queue = GenerationQueue()
        self.training = TrainingManager(self.workspace)

    # ----- generation

    def submit(self, req: GenRequest) -> Job:
        """Queue a generation; the job's `step/total/preview` follow the sampler (live preview)."""
        return self.queue.submit(lambda job: self.generator.run(req, progress=job.report))

    def generate(self, req: GenRequest, timeout: float | None = None) -> Item:
        """Queue a generation and wait for its gallery item."""
        return self.queue.run(lambda job: self.generator.run(req, progress=job.report), timeout=timeout)

    def models(self) -> list[str]:
        return list_models(self.workspace)

    def model_info(self, name: str) -> dict:
        """What a model takes (prompts, classes, frames, size): the Generate tab's hint line."""
        m = self.generator.model(name)
        mc = m.config.model
        return {"model": name, "step": m.step, "size": m.shape[1], "channels": m.shape[0],
                "frames": bool(mc.frame_attention), "prompts": bool(mc.text_encoder),
                "classes": list(m.class_names) if mc.num_classes else [],
                "attributes": dict(getattr(m, "attribute_values", {}) or {}) if getattr(mc, "attributes", ()) else {},
                "control": list(getattr(mc, "control", ()) or ())}

    def upload(self, data: bytes, name: str = "upload") -> str:
        """Check and store an uploaded image -> its workspace-relative path (what requests name)."""
        return str(store_upload(self.workspace, data, name).relative_to(self.workspace))

    def reproduce(self, item_id: str) -> GenRequest:
        """A gallery item's settings as a request: generating it again gives the same pixels."""
        return GenRequest.from_dict(self.gallery.get(item_id).settings, where=f"gallery item {item_id}")

    # ----- compare

    def compare(self, model: str, rows: str, cols: str, samplers: str = "", steps: str = "", cfgs: str = "",
                seeds: str = "", n: int = 4, prompt: str = "") -> Path:
        """The `spriteforge compare` grid for a workspace model, through the generation queue."""
        from ..animation.animate import what_to_condition
        from ..evaluation.compare import compare_grid, parse_list
        ckpt_or_run = self._compare_target(model, checkpoint_axis="checkpoint" in (rows, cols))
        out = self.workspace / "compare" / f"compare-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}.png"

        def work(job: Job):
            m = self.generator.model(model)
            cond = what_to_condition(m, prompt.strip()) if prompt.strip() else {}
            compare_grid([ckpt_or_run], rows=rows, cols=cols, samplers=parse_list(samplers or None, str, "samplers"),
                         steps=parse_list(steps or None, int, "steps"), cfgs=parse_list(cfgs or None, float, "cfg"),
                         seeds=parse_list(seeds or None, int, "seeds"), n=int(n), out=out,
                         class_name=cond.get("class_name"), prompt=cond.get("prompt"),
                         progress=lambda done, total: job.report(done, total))
            return out
        return self.queue.run(work, kind="compare")

    def _compare_target(self, model: str, checkpoint_axis: bool) -> str:
        """A run folder when checkpoints are an axis (all its kept checkpoints), else the checkpoint."""
        if checkpoint_axis and model.startswith("runs/"):
            return str(confine(self.workspace, model, "model"))
        return str(self.generator.checkpoint_for(model))

    # ----- files

    def item_file(self, item_id: str, rel: str) -> Path:
        """A file of a gallery item, refused if the name leaves the item's folder."""
        item = self.gallery.get(item_id)
        path = confine(item.folder, rel, "file")
        if not path.is_file():
            raise StudioError(f"gallery item {item_id} has no file {rel!r}")
        return path
