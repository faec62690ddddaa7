"""`spriteforge studio`: the Gradio web UI (Generate, Gallery, Compare, Train) and the server.

The UI is a thin layer: every button calls a `Studio` method (service.py), the same ones the HTTP
API (api.py) calls. Both are served by one FastAPI app: the API under /api/v1, the UI at /.
Binding to anything but localhost needs credentials (`--auth user:pass` or the
SPRITEFORGE_STUDIO_AUTH environment variable): the studio can start processes and write files.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np

from ..config import PRESETS, SAMPLERS
from ..data.dataset import DataError
from ..training.checkpoint import CheckpointError
from .generation import MAX_SEED, GenRequest, split_attr_guidance
from .jobs import TrainRequest
from .safety import MAX_FRAMES, MAX_PROMPT_CHARS, MAX_STEPS, MAX_UPLOAD_BYTES, StudioError
from .service import Studio

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # nothing leaves the machine
try:
    import gradio as gr
except ImportError:  # gradio comes with the `studio` extra
    raise StudioError("the studio needs Gradio: pip install 'spriteforge[studio]'") from None

AUTH_ENV = "SPRITEFORGE_STUDIO_AUTH"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_USER_ERRORS = (StudioError, DataError, CheckpointError, ValueError, KeyError, FileNotFoundError)
COMPARE_AXES = ("sampler", "steps", "cfg", "seed", "checkpoint")
CSS = """
#sheet img, #gif img, #detail-gif img, #gallery-grid img, #compare-grid img, #train-sample img { image-rendering: pixelated; }
"""


# --------------------------------------------------------------------------- the server

def resolve_auth(host: str, auth: str | None) -> tuple[str, str] | None:
    """`--auth user:pass` (or $SPRITEFORGE_STUDIO_AUTH) -> (user, pass); refuses a non-local host
    without credentials, and warns when exposing the studio with them."""
    auth = auth or os.environ.get(AUTH_ENV) or None
    pair = None
    if auth is not None:
        user, sep, password = auth.partition(":")
        if not sep or not user or not password:
            raise StudioError(f"`--auth` (or {AUTH_ENV}) must look like user:password, both non-empty")
        pair = (user, password)
    local = host in LOCAL_HOSTS or host.startswith("127.")
    if not local:
        if pair is None:
            raise StudioError(f"`--host {host}` makes the studio reachable from other machines, and the studio can "
                              f"run training jobs and write files: pass --auth user:password (or set {AUTH_ENV})")
        print(f"warning: the studio listens on {host}, reachable from other machines; anyone with the "
              f"credentials can generate, delete gallery items and start training. Plain HTTP: use it on "
              f"a trusted network only.", file=sys.stderr)
    return pair


def create_app(workspace: str | Path, auth: tuple[str, str] | None = None, device: str = "cpu"):
    """The FastAPI app: /api/v1 (api.py) plus the Gradio UI at /."""
    from fastapi import FastAPI

    from .api import make_router
    studio = Studio(workspace, device)
    app = FastAPI(title="spriteforge studio API", docs_url="/api/docs", openapi_url="/api/openapi.json",
                  redoc_url=None)
    app.include_router(make_router(studio, auth))
    demo = build_ui(studio)
    demo.queue(default_concurrency_limit=8)   # UI events wait on the studio's own one-at-a-time queue
    ws = studio.workspace
    app = gr.mount_gradio_app(app, demo, path="/", auth=auth, ssr_mode=False, footer_links=["api"],
                              allowed_paths=[str(ws / "gallery"), str(ws / "runs"), str(ws / "compare")],
                              max_file_size=MAX_UPLOAD_BYTES, css=CSS, show_error=True)
    app.state.studio = studio
    return app


def serve(workspace: str | Path, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None,
          device: str = "cpu") -> None:
    import uvicorn
    pair = resolve_auth(host, auth)
    app = create_app(workspace, pair, device)
    studio = app.state.studio
    if studio.recovered["removed_partial"] or studio.recovered["indexed"]:
        print(f"gallery: removed {len(studio.recovered['removed_partial'])} half-written item(s), "
              f"indexed {len(studio.recovered['indexed'])} item(s) a crash had left out")
    shown = f"[{host}]" if ":" in host else host
    print(f"spriteforge studio on http://{shown}:{port}/  (workspace {studio.workspace}; API: /api/v1, docs /api/docs)",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


# --------------------------------------------------------------------------- the UI

def build_ui(studio: Studio):
    def ui_error(e: BaseException):
        if isinstance(e, _USER_ERRORS):
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            return gr.Error(str(msg))
        return e

    models = studio.models()
    with gr.Blocks(title="spriteforge studio", delete_cache=(3600, 24 * 3600)) as demo:
        gr.Markdown(f"### spriteforge studio &nbsp; <small>workspace `{studio.workspace}`</small>")
        with gr.Tabs(selected="generate") as tabs:
            # ------------------------------------------------------------- Generate
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column(scale=1):
                        with gr.Row():
                            model = gr.Dropdown(models, value=models[0] if models else None, label="Model",
                                                elem_id="model", scale=4)
                            refresh_models = gr.Button("↻", elem_id="refresh-models", scale=0, min_width=40)
                        model_hint = gr.Markdown(elem_id="model-hint")
                        prompt = gr.Textbox(label="Prompt or class", elem_id="prompt", max_length=MAX_PROMPT_CHARS,
                                            placeholder="a red knight walking right  /  knight")
                        negative = gr.Textbox(label="Negative prompt (text models)", elem_id="negative",
                                              max_length=MAX_PROMPT_CHARS)
                        with gr.Row():
                            frames = gr.Slider(1, MAX_FRAMES, 8, step=1, label="Frames", elem_id="frames")
                            sampler = gr.Dropdown(list(SAMPLERS), value="dpmpp-2m", label="Sampler", elem_id="sampler")
                        with gr.Row():
                            steps = gr.Slider(1, MAX_STEPS, 20, step=1, label="Steps", elem_id="steps")
                            cfg = gr.Slider(0, 10, 2.0, step=0.1, label="Guidance (cfg)", elem_id="cfg")
                        with gr.Row():
                            attr_g = gr.Slider(0, 4, 0.0, step=0.1, label="Attribute guidance (attribute models)",
                                               elem_id="attr-guidance",
                                               info="Pushes each requested attribute on its own; 0 = off. Slower.")
                            attr_w = gr.Textbox(label="Per attribute (optional)", placeholder="action=2",
                                                elem_id="attr-weights", max_length=200,
                                                info="name=weight, ...: overrides the slider for the attributes named")
                        with gr.Row():
                            seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", elem_id="seed",
                                             scale=4)
                            dice = gr.Button("Random", elem_id="dice", scale=0, min_width=80)
                        with gr.Accordion("Image inputs: init + strength, mask, control", open=False):
                            with gr.Row():
                                init = gr.Image(type="filepath", image_mode="RGBA", format="png", sources=["upload"],
                                                label="Init image", elem_id="init")
                                mask = gr.Image(type="filepath", image_mode="RGBA", format="png", sources=["upload"],
                                                label="Mask (white = regenerate)", elem_id="mask")
                                control = gr.Image(type="filepath", image_mode="RGBA", format="png", sources=["upload"],
                                                   label="Control (pose map / reference)", elem_id="control")
                            strength = gr.Slider(0.05, 1.0, 0.6, step=0.05, label="Init strength", elem_id="strength")
                        with gr.Accordion("Pixel clean-up", open=False):
                            palette = gr.Slider(0, 64, 0, step=1, label="Shared palette colours (0 = off)")
                            alpha = gr.Slider(0, 255, 0, step=1, label="Alpha threshold (0 = off)")
                        go = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                    with gr.Column(scale=1):
                        gen_status = gr.Markdown("", elem_id="gen-status")
                        sheet = gr.Image(label="Sheet (live preview while sampling)", format="png", elem_id="sheet",
                                         interactive=False, height=160)
                        gif = gr.Image(label="Animated preview", elem_id="gif", interactive=False, height=200)
                        bundle = gr.File(label="Export bundle: sheet, frames, GIF/APNG/WebP, Aseprite JSON, Godot .tres",
                                         elem_id="bundle", interactive=False)
                        params = gr.Textbox(label="Parameters (AUTOMATIC1111 format)", lines=3, elem_id="params",
                                            interactive=False)
            # ------------------------------------------------------------- Gallery
            with gr.Tab("Gallery", id="gallery"):
                with gr.Row():
                    search = gr.Textbox(label="Search prompts", elem_id="search", scale=3)
                    model_filter = gr.Dropdown(["all"], value="all", label="Model", elem_id="model-filter", scale=2)
                    order = gr.Radio(["newest", "oldest"], value="newest", label="Sort by date", elem_id="order", scale=2)
                    refresh = gr.Button("Refresh", elem_id="gallery-refresh", scale=1)
                count = gr.Markdown(elem_id="gallery-count")
                grid = gr.Gallery(columns=8, height=360, allow_preview=False, fit_columns=False, object_fit="contain",
                                  elem_id="gallery-grid", label="Gallery")
                ids = gr.State([])
                with gr.Row():
                    selected = gr.Textbox(label="Selected item", interactive=False, elem_id="selected-id", scale=2)
                    reproduce = gr.Button("Reproduce in Generate", elem_id="reproduce-btn", scale=1)
                    delete = gr.Button("Delete", variant="stop", elem_id="delete-btn", scale=1)
                with gr.Row():
                    detail_gif = gr.Image(label="Preview", interactive=False, elem_id="detail-gif", height=220)
                    with gr.Column():
                        detail_params = gr.Textbox(label="Parameters", lines=4, interactive=False, elem_id="detail-params")
                        detail_zip = gr.File(label="Export bundle", interactive=False)
            # ------------------------------------------------------------- Compare
            with gr.Tab("Compare", id="compare"):
                with gr.Row():
                    c_model = gr.Dropdown(models, value=models[0] if models else None, label="Model", elem_id="c-model")
                    c_rows = gr.Dropdown(list(COMPARE_AXES), value="sampler", label="Rows")
                    c_cols = gr.Dropdown(list(COMPARE_AXES), value="steps", label="Columns")
                    c_n = gr.Slider(1, 8, 4, step=1, label="Samples per cell")
                with gr.Row():
                    c_samplers = gr.Textbox("euler,heun,dpmpp-2m", label="Samplers")
                    c_steps = gr.Textbox("5,10,20", label="Steps")
                    c_cfgs = gr.Textbox("", label="Guidance scales", placeholder="1,2,4")
                    c_seeds = gr.Textbox("", label="Seeds", placeholder="0,1,2")
                    c_prompt = gr.Textbox("", label="Prompt or class", elem_id="c-prompt")
                c_go = gr.Button("Compare", variant="primary", elem_id="compare-btn")
                c_img = gr.Image(label="Comparison grid", format="png", interactive=False, elem_id="compare-grid")
            # ------------------------------------------------------------- Train
            with gr.Tab("Train", id="train"):
                with gr.Row():
                    with gr.Column(scale=1):
                        t_data = gr.Dropdown(_data_choices(studio), value="builtin", allow_custom_value=True,
                                             label="Data: builtin, or a folder in the workspace (data/NAME)",
                                             elem_id="t-data")
                        t_name = gr.Textbox(label="Run name (runs/NAME)", elem_id="t-name", placeholder="my-sprites")
                        t_preset = gr.Radio(list(PRESETS), value="tiny", label="Model size", elem_id="t-preset")
                        with gr.Row():
                            t_minutes = gr.Number(5, label="Minutes", minimum=0, elem_id="t-minutes")
                            t_steps = gr.Number(0, precision=0, minimum=0, label="Steps (0 = no limit)", elem_id="t-steps")
                        t_frames = gr.Slider(0, 16, 8, step=1, label="Frames per set (animation model; 0 = single images)")
                        t_prompts = gr.Checkbox(False, label="Prompts (MiniLM text encoder)")
                        t_extra = gr.Textbox(lines=3, label="More settings: section.key=value, one per line",
                                             placeholder="train.batch_size=16\ndata.size=16", elem_id="t-extra")
                        with gr.Row():
                            t_start = gr.Button("Start", variant="primary", elem_id="t-start")
                            t_stop = gr.Button("Stop", variant="stop", elem_id="t-stop")
                            t_resume = gr.Button("Resume", elem_id="t-resume")
                    with gr.Column(scale=1):
                        t_status = gr.Markdown(elem_id="t-status")
                        t_plot = gr.LinePlot(x="step", y="loss", color="series", label="Loss", elem_id="t-plot",
                                             height=300)
                        t_sample = gr.Image(label="Latest sample grid", interactive=False, elem_id="train-sample", height=260)
                timer = gr.Timer(2.0)

        gen_inputs = [model, prompt, negative, frames, sampler, steps, cfg, attr_g, attr_w, seed, init, strength, mask, control,
                      palette, alpha]

        # ----------------------------------------------------------------- Generate handlers
        def on_generate(model_, prompt_, negative_, frames_, sampler_, steps_, cfg_, attr_g_, attr_w_, seed_, init_, strength_,
                        mask_, control_, palette_, alpha_):
            try:
                uploads = {k: (studio.upload(Path(v).read_bytes(), k) if v else None)
                           for k, v in (("init", init_), ("mask", mask_), ("control", control_))}
                req = GenRequest(model=model_ or "", prompt=prompt_, negative_prompt=negative_, frames=frames_,
                                 sampler=sampler_, steps=steps_, cfg=cfg_,
                                 attr_guidance=f"{attr_g_ or 0.0},{attr_w_}" if (attr_w_ or "").strip() else attr_g_ or 0.0,
                                 seed=seed_ or 0, strength=strength_,
                                 palette_colors=palette_, alpha_threshold=alpha_, **uploads)
            except _USER_ERRORS as e:
                raise ui_error(e) from None
            job = studio.submit(req)
            skip = gr.skip()
            while not job.done.wait(0.3):
                pos = studio.queue.position(job)
                text = (f"queued: {pos} request(s) ahead" if pos else
                        f"sampling: step {job.step} / {job.total or req.steps}")
                yield text, (job.preview if job.preview is not None else skip), skip, skip, skip
            if job.error is not None:
                raise ui_error(job.error) from None
            item = job.result
            yield (f"done: gallery item `{item.id}`", _upscaled_sheet(item.sheet), str(item.preview), str(item.bundle),
                   _params(item))

        dice.click(lambda: random.randint(0, MAX_SEED), None, seed, api_visibility="undocumented", queue=False)

        def on_model(name):
            if not name:
                return "No model yet: train one in the Train tab" + (
                    "" if studio.models() else ", or install the bundled model (`builtin`).")
            try:
                info = studio.model_info(name)
            except _USER_ERRORS as e:
                return f"cannot load {name}: {e}"
            attrs = "; ".join(f"{k}: {'/'.join(v)}" for k, v in info["attributes"].items())
            what = ("takes a **prompt**" if info["prompts"] else
                    f"takes a **prompt** read as attributes ({attrs})" if attrs else
                    f"takes a **class**: {', '.join(info['classes'])}" if info["classes"] else "is unconditional")
            kind = "animation model" if info["frames"] else "single-image model (set frames to 1)"
            ctl = f"; control maps: {', '.join(info['control'])}" if info["control"] else ""
            return f"{info['size']}px {kind}, step {info['step']}; {what}{ctl}"

        model.change(on_model, model, model_hint, api_visibility="undocumented")

        def on_refresh_models(current, current_c):
            names = studio.models()
            pick = lambda cur: cur if cur in names else (names[0] if names else None)  # noqa: E731
            return gr.Dropdown(choices=names, value=pick(current)), gr.Dropdown(choices=names, value=pick(current_c))

        refresh_models.click(on_refresh_models, [model, c_model], [model, c_model], api_visibility="undocumented")

        # ----------------------------------------------------------------- Gallery handlers
        def on_gallery(text, model_name, order_):
            try:
                items = studio.gallery.search(text or "", "" if model_name in (None, "all") else model_name,
                                              order_ or "newest", limit=500)
            except _USER_ERRORS as e:
                raise ui_error(e) from None
            shown = [(str(i.preview), f"{i.prompt or '(no prompt)'} · seed {i.seed}") for i in items]
            choices = ["all"] + studio.gallery.models()
            total = studio.gallery.count()
            label = f"{len(items)} of {total} item{'s' if total != 1 else ''}"
            return shown, [i.id for i in items], label, gr.Dropdown(choices=choices, value=model_name or "all")

        gallery_outputs = [grid, ids, count, model_filter]
        for trigger in (refresh.click, search.submit, order.change, model_filter.input):
            trigger(on_gallery, [search, model_filter, order], gallery_outputs, api_visibility="undocumented")
        # a new generation shows up in the Gallery tab at once
        go.click(on_generate, gen_inputs, [gen_status, sheet, gif, bundle, params], api_name="generate",
                 show_progress="minimal").success(
            on_gallery, [search, model_filter, order], gallery_outputs, api_visibility="undocumented")

        def on_select(ids_, evt: gr.SelectData):
            try:
                item = studio.gallery.get(ids_[evt.index])
            except (IndexError, KeyError, TypeError):
                return "", None, "", None
            return item.id, str(item.preview), _params(item), str(item.bundle)

        grid.select(on_select, ids, [selected, detail_gif, detail_params, detail_zip], api_visibility="undocumented")

        def on_reproduce(item_id):
            if not item_id:
                raise gr.Error("select a gallery item first")
            try:
                req = studio.reproduce(item_id)
            except _USER_ERRORS as e:
                raise ui_error(e) from None
            names = studio.models()
            if req.model not in names:
                gr.Warning(f"model {req.model} is not in this workspace any more")
            image = lambda rel: str(studio.workspace / rel) if rel else None  # noqa: E731
            return (gr.Dropdown(choices=sorted(set(names) | {req.model}), value=req.model), req.prompt,
                    req.negative_prompt, req.frames, req.sampler, req.steps, req.cfg, *split_attr_guidance(req.attr_guidance),
                    req.seed,
                    image(req.init),
                    req.strength, image(req.mask), image(req.control), req.palette_colors, req.alpha_threshold,
                    gr.Tabs(selected="generate"), f"settings of `{item_id}` loaded: press Generate")

        reproduce.click(on_reproduce, selected, gen_inputs + [tabs, gen_status], api_name="reproduce")

        def on_delete(item_id, text, model_name, order_):
            if not item_id:
                raise gr.Error("select a gallery item first")
            try:
                studio.gallery.delete(item_id)
            except _USER_ERRORS as e:
                raise ui_error(e) from None
            return ("", None, "", None, *on_gallery(text, model_name, order_))

        delete.click(on_delete, [selected, search, model_filter, order],
                     [selected, detail_gif, detail_params, detail_zip] + gallery_outputs, api_visibility="undocumented")

        # ----------------------------------------------------------------- Compare handler
        def on_compare(model_, rows, cols, n, samplers, steps_, cfgs, seeds, prompt_):
            if not model_:
                raise gr.Error("pick a model first")
            try:
                return str(studio.compare(model_, rows, cols, samplers, steps_, cfgs, seeds, int(n), prompt_))
            except _USER_ERRORS as e:
                raise ui_error(e) from None

        c_go.click(on_compare, [c_model, c_rows, c_cols, c_n, c_samplers, c_steps, c_cfgs, c_seeds, c_prompt], c_img,
                   api_name="compare")

        # ----------------------------------------------------------------- Train handlers
        def train_view(shown=None):
            """Status text always; the plot and the sample grid only when they changed (the timer
            ticks every 2 s, and re-sending an unchanged plot makes it flicker)."""
            st = studio.training.status()
            sig = [st.get("run"), len(st.get("loss_points", [])), len(st.get("val_points", [])), st.get("sample")]
            if shown == sig:
                return _train_markdown(st), gr.skip(), gr.skip(), sig
            return _train_markdown(st), _loss_frame(st), (st.get("sample") or None), sig

        t_shown = gr.State(None)
        train_outputs = [t_status, t_plot, t_sample, t_shown]

        def on_start(data, name, preset, minutes, steps_, frames_, prompts_, extra):
            try:
                studio.training.start(TrainRequest(data=data or "builtin", name=name or "", preset=preset,
                                                   minutes=minutes or 0, steps=steps_ or 0, frames=frames_,
                                                   prompts=bool(prompts_), overrides=extra or ""))
            except _USER_ERRORS as e:
                raise ui_error(e) from None
            return train_view()

        t_start.click(on_start, [t_data, t_name, t_preset, t_minutes, t_steps, t_frames, t_prompts, t_extra],
                      train_outputs, api_name="train_start")

        def on_stop():
            try:
                studio.training.stop()
            except _USER_ERRORS as e:
                raise ui_error(e) from None
            return train_view()

        t_stop.click(on_stop, None, train_outputs, api_name="train_stop")

        def on_resume(minutes, steps_):
            try:
                studio.training.resume(None, minutes or None, steps_ or None)
            except _USER_ERRORS as e:
                raise ui_error(e) from None
            return train_view()

        t_resume.click(on_resume, [t_minutes, t_steps], train_outputs, api_name="train_resume")
        timer.tick(train_view, t_shown, train_outputs, api_name="train_status", show_progress="hidden")

        # ----------------------------------------------------------------- page load
        def on_load(current):
            names = studio.models()
            value = current if current in names else (names[0] if names else None)
            return (gr.Dropdown(choices=names, value=value), gr.Dropdown(choices=names, value=value),
                    gr.Dropdown(choices=_data_choices(studio)), on_model(value), *on_gallery("", "all", "newest"))

        demo.load(on_load, model, [model, c_model, t_data, model_hint] + gallery_outputs, api_visibility="undocumented")
    return demo


# --------------------------------------------------------------------------- view helpers

def _data_choices(studio: Studio) -> list[str]:
    return ["builtin"] + [f"data/{p.name}" for p in sorted((studio.workspace / "data").iterdir()) if p.is_dir()]


def _params(item) -> str:
    from .gallery import format_parameters
    return format_parameters(item.settings)


def _upscaled_sheet(path: Path) -> np.ndarray:
    """The sheet at a size a person can see (nearest neighbour; the file itself stays 1:1)."""
    from PIL import Image
    with Image.open(path) as img:
        arr = np.asarray(img.convert("RGBA"))
    k = max(1, min(8, 512 // max(arr.shape[:2])))
    return np.repeat(np.repeat(arr, k, axis=0), k, axis=1)


def _loss_frame(st: dict):
    import pandas as pd
    train, val = st.get("loss_points", []), st.get("val_points", [])
    if not train and not val:
        return None  # not an empty frame: a plot first drawn from no rows never draws its lines (Gradio 6.31)
    return pd.DataFrame({"step": pd.Series([s for s, _ in train + val], dtype="int64"),
                         "loss": pd.Series([v for _, v in train + val], dtype="float64"),
                         "series": pd.Series(["train"] * len(train) + ["held-out"] * len(val), dtype="object")})


def _train_markdown(st: dict) -> str:
    kind = st["state"]
    if kind == "idle":
        return "No training yet. Pick data and a budget, then **Start**."
    budget = st.get("steps_budget") or 0
    step = f"step {st['step']}" + (f" / {budget}" if budget else "")
    loss = f", loss {st['loss']:.4f}" if st.get("loss") is not None else ""
    val = f", held-out {st['val_loss']:.4f}" if st.get("val_loss") is not None else ""
    eta = f", ETA {_duration(st['eta_s'])}" if st.get("eta_s") is not None else ""
    text = f"**{kind}** `{st['run']}`: {step}{loss}{val}{eta}"
    if kind == "stopped":
        text += "  \nStopped with a checkpoint: **Resume** continues it."
    if kind == "finished":
        text += f"  \nFinished: pick `{st['run']}` in Generate (↻ refreshes the list)."
    if st.get("message"):
        text += f"\n\n```\n{st['message']}\n```"
    return text


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"
