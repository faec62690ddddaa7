"""The gallery: every generation kept on disk, indexed in SQLite, readable by other tools.

Layout: ``WORKSPACE/gallery/<id>/`` holds the export bundle of one generation (``sheet.png``,
``frames/``, ``preview.gif/.png/.webp``, ``sheet.json``, ``<name>.tres``, ``parameters.txt``,
``bundle.zip`` and any input images under ``inputs/``); ``WORKSPACE/gallery/gallery.db`` indexes
them (WAL mode, so readers never wait for the one writer).

The PNGs are the source of truth, the database is an index: every PNG carries a ``parameters``
text chunk in AUTOMATIC1111's format (what other tools such as image browsers and PNG-info
readers show) and a ``spriteforge`` chunk with the exact settings as JSON, so `rebuild()` recreates
the index from the files if the database is lost.

Writes are crash-safe: a generation is written into a hidden ``.tmp-<id>`` folder, renamed into
place in one step, and only then inserted into the index; a crash leaves either nothing visible or
a complete folder that `recover()` indexes on the next start.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .safety import StudioError

SETTINGS_CHUNK = "spriteforge"   # PNG text key of the machine-readable settings JSON
PARAMETERS_CHUNK = "parameters"  # PNG text key AUTOMATIC1111 (and tools that read it) use
ID_RE = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id       TEXT PRIMARY KEY,   -- also the folder name under gallery/
    created  REAL NOT NULL,      -- unix time
    prompt   TEXT NOT NULL,
    model    TEXT NOT NULL,      -- what the model picker showed: "builtin", "runs/NAME", ...
    seed     INTEGER NOT NULL,
    settings TEXT NOT NULL,      -- the full settings JSON (what "reproduce" fills in)
    sheet    TEXT NOT NULL,      -- paths relative to the gallery folder
    preview  TEXT NOT NULL,
    bundle   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_created ON items (created);
CREATE INDEX IF NOT EXISTS items_model ON items (model);
"""


@dataclass
class Item:
    id: str
    created: float
    prompt: str
    model: str
    seed: int
    settings: dict
    folder: Path                 # absolute

    @property
    def sheet(self) -> Path:
        return self.folder / "sheet.png"

    @property
    def preview(self) -> Path:
        return self.folder / "preview.gif"

    @property
    def bundle(self) -> Path:
        return self.folder / "bundle.zip"

    def files(self) -> list[str]:
        """Every file of the item, relative to its folder (for the API's file list)."""
        return sorted(str(p.relative_to(self.folder)) for p in self.folder.rglob("*") if p.is_file())

    def to_dict(self) -> dict:
        return {"id": self.id, "created": self.created, "prompt": self.prompt, "model": self.model,
                "seed": self.seed, "settings": self.settings, "parameters": format_parameters(self.settings)}


# --------------------------------------------------------------------------- the A1111 text chunk

def _quote(value) -> str:
    """AUTOMATIC1111 quotes a value that contains a comma, colon or newline as a JSON string."""
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text


def format_parameters(s: dict) -> str:
    """Settings -> AUTOMATIC1111's "parameters" text: prompt, "Negative prompt: ...", then one line
    of "Key: value" pairs (Steps, Sampler, CFG scale, Seed, Size, Model, then our own keys)."""
    lines = [s.get("prompt", "")]
    if s.get("negative_prompt"):
        lines.append(f"Negative prompt: {s['negative_prompt']}")
    pairs = {"Steps": s.get("steps"), "Sampler": s.get("sampler"), "CFG scale": s.get("cfg"), "Seed": s.get("seed"),
             "Size": s.get("size"), "Model": s.get("model"), "Frames": s.get("frames"),
             "Model step": s.get("model_step")}
    if s.get("init"):
        pairs["Denoising strength"] = s.get("strength")
    for key, extra in (("Attribute guidance", "attr_guidance"), ("Init image", "init"), ("Mask", "mask"),
                       ("Control image", "control"),
                       ("Palette colors", "palette_colors"), ("Alpha threshold", "alpha_threshold")):
        if s.get(extra):
            pairs[key] = s[extra]
    pairs["Version"] = f"spriteforge {s.get('version', '')}".strip()
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in pairs.items() if v is not None and v != ""))
    return "\n".join(lines)


_PARAM_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')  # AUTOMATIC1111's own pattern


def parse_parameters(text: str) -> dict:
    """AUTOMATIC1111 "parameters" text -> {"Prompt", "Negative prompt", key: value...}, the way
    A1111's `parse_generation_parameters` reads it (the last line holds the pairs when it has 3+)."""
    lines = text.strip().split("\n")
    last = lines[-1] if lines else ""
    if len(_PARAM_RE.findall(last)) < 3:
        last = ""
    else:
        lines = lines[:-1]
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    out: dict = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in _PARAM_RE.findall(last):
        value = value.strip()
        if len(value) > 1 and value[0] == '"' and value[-1] == '"':
            value = json.loads(value)
        out[key.strip()] = value
    return out


def settings_from_parameters(p: dict) -> dict:
    """Our settings from a parsed "parameters" text (for PNGs whose JSON chunk is missing)."""
    def num(key, kind, default):
        try:
            return kind(p[key])
        except (KeyError, ValueError):
            return default
    return {"prompt": p.get("Prompt", ""), "negative_prompt": p.get("Negative prompt", ""),
            "steps": num("Steps", int, 20), "sampler": p.get("Sampler", "dpmpp-2m"), "cfg": num("CFG scale", float, 1.0),
            "seed": num("Seed", int, 0), "size": p.get("Size", ""), "model": p.get("Model", "?"),
            "frames": num("Frames", int, 1), "strength": num("Denoising strength", float, 0.6),
            "attr_guidance": num("Attribute guidance", float, p.get("Attribute guidance", 0.0))}  # or "action=2" text


def read_png_settings(path: str | Path) -> dict:
    """The settings a gallery PNG carries: the JSON chunk, else parsed from the A1111 text."""
    with Image.open(path) as img:
        text = dict(getattr(img, "text", {}) or {})
    if SETTINGS_CHUNK in text:
        return json.loads(text[SETTINGS_CHUNK])
    if PARAMETERS_CHUNK in text:
        return settings_from_parameters(parse_parameters(text[PARAMETERS_CHUNK]))
    raise StudioError(f"{path}: no '{SETTINGS_CHUNK}' or '{PARAMETERS_CHUNK}' text chunk (not a studio PNG)")


def stamp_png(path: Path, settings: dict) -> None:
    """Re-save a PNG with the two text chunks (pixels unchanged), through a temp file."""
    info = PngInfo()
    info.add_text(PARAMETERS_CHUNK, format_parameters(settings))  # Pillow writes iTXt when not Latin-1
    info.add_text(SETTINGS_CHUNK, json.dumps(settings, sort_keys=True))
    with Image.open(path) as img:
        img.load()
        tmp = path.with_name(f".{path.name}.tmp")
        img.save(tmp, format="PNG", pnginfo=info)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- the index

class Gallery:
    """SQLite index + folders under `root` (WORKSPACE/gallery). Safe to use from many threads and
    processes: every call opens its own connection; writes take SQLite's write lock."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = self.root / "gallery.db"
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")  # persistent: readers do not block the writer
            con.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.db, timeout=60, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=60000")
            con.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable at checkpoints, never corrupt
            yield con
        finally:
            con.close()

    # ----- writing

    def add(self, frames: list[np.ndarray], settings: dict, inputs: dict[str, Path] | None = None,
            name: str | None = None) -> Item:
        """Export one animation (RGBA uint8 frames) with its settings as a new gallery item.

        `inputs` ({"init": path, ...}) are copied into the item's `inputs/` folder and the settings
        then point at those copies, so "reproduce" works even after the uploads folder is cleaned.
        """
        from ..animation.animate import slug
        from ..animation.export import export_animation
        created = time.time()
        item_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(created)) + "-" + secrets.token_hex(3)
        settings = {**settings, "created": created, "id": item_id}
        tmp = self.root / f".tmp-{item_id}"
        try:
            tmp.mkdir()
            for key, src in (inputs or {}).items():
                (tmp / "inputs").mkdir(exist_ok=True)
                shutil.copyfile(src, tmp / "inputs" / f"{key}.png")
                settings[key] = f"gallery/{item_id}/inputs/{key}.png"
            export_animation(frames, tmp, name=name or slug(settings.get("prompt", "")), scale=4)
            stamp_png(tmp / "sheet.png", settings)
            for f in sorted((tmp / "frames").glob("*.png")):
                stamp_png(f, settings)
            (tmp / "parameters.txt").write_text(format_parameters(settings) + "\n")
            _write_zip(tmp, tmp / "bundle.zip")
            final = self.root / item_id
            os.replace(tmp, final)  # one rename: the item appears complete or not at all
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        item = self._item_from(item_id, settings)
        with self._connect() as con:
            _insert(con, item)
        return item

    def delete(self, item_id: str) -> None:
        """Remove the item's row and its folder (files first out of the index, then off the disk)."""
        folder = self._folder(item_id)
        with self._connect() as con:
            cur = con.execute("DELETE FROM items WHERE id = ?", (item_id,))
        if cur.rowcount == 0 and not folder.exists():
            raise KeyError(f"gallery item {item_id!r} does not exist")
        trash = self.root / f".tmp-del-{item_id}"
        if folder.exists():
            os.replace(folder, trash)   # gone from view in one step, then removed
            shutil.rmtree(trash, ignore_errors=True)

    def rebuild(self) -> int:
        """Recreate the index from the PNGs under gallery/ (e.g. after the database was lost).
        Returns the number of items indexed. Folders without a readable sheet.png are skipped."""
        items = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and ID_RE.match(p.name)):
            try:
                items.append(self._item_from(folder.name, read_png_settings(folder / "sheet.png")))
            except (OSError, StudioError, ValueError):
                continue
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute("DELETE FROM items")
                for item in items:
                    _insert(con, item)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return len(items)

    def recover(self) -> dict:
        """At studio start: remove half-written `.tmp-*` folders and index complete folders that a
        crash left out of the database. Assumes no other studio writes to this gallery right now."""
        removed = [p.name for p in self.root.glob(".tmp-*")]
        for name in removed:
            shutil.rmtree(self.root / name, ignore_errors=True)
        report = self.check()
        added = []
        for name in report["orphans"]:
            try:
                item = self._item_from(name, read_png_settings(self.root / name / "sheet.png"))
            except (OSError, StudioError, ValueError):
                continue
            with self._connect() as con:
                _insert(con, item)
            added.append(name)
        return {"removed_partial": removed, "indexed": added}

    # ----- reading

    def search(self, text: str = "", model: str = "", order: str = "newest", limit: int = 200,
               offset: int = 0) -> list[Item]:
        """Items whose prompt contains `text` (case-insensitive) and whose model is `model` (if
        given), newest or oldest first."""
        if order not in ("newest", "oldest"):
            raise StudioError(f"order {order!r} must be 'newest' or 'oldest'")
        sql = "SELECT id, created, prompt, model, seed, settings FROM items WHERE 1=1"
        args: list = []
        if text:
            sql += " AND prompt LIKE ? ESCAPE '\\'"
            args.append("%" + re.sub(r"([\\%_])", r"\\\1", text) + "%")
        if model:
            sql += " AND model = ?"
            args.append(model)
        sql += f" ORDER BY created {'DESC' if order == 'newest' else 'ASC'}, id LIMIT ? OFFSET ?"
        args += [max(0, int(limit)), max(0, int(offset))]
        with self._connect() as con:
            rows = con.execute(sql, args).fetchall()
        return [self._row(r) for r in rows]

    def get(self, item_id: str) -> Item:
        with self._connect() as con:
            row = con.execute("SELECT id, created, prompt, model, seed, settings FROM items WHERE id = ?",
                              (item_id,)).fetchone()
        if row is None:
            raise KeyError(f"gallery item {item_id!r} does not exist")
        return self._row(row)

    def count(self) -> int:
        with self._connect() as con:
            return con.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def models(self) -> list[str]:
        with self._connect() as con:
            return [r[0] for r in con.execute("SELECT DISTINCT model FROM items ORDER BY model")]

    def check(self) -> dict:
        """Integrity: SQLite's own check, rows whose files are gone, folders missing from the index."""
        with self._connect() as con:
            sqlite_ok = [r[0] for r in con.execute("PRAGMA integrity_check")]
            ids = {r[0] for r in con.execute("SELECT id FROM items")}
        folders = {p.name for p in self.root.iterdir() if p.is_dir() and ID_RE.match(p.name)}
        missing = sorted(i for i in ids if not (self.root / i / "sheet.png").exists())
        return {"sqlite": "ok" if sqlite_ok == ["ok"] else "; ".join(sqlite_ok), "items": len(ids),
                "missing_files": missing, "orphans": sorted(folders - ids),
                "ok": sqlite_ok == ["ok"] and not missing and not (folders - ids)}

    # ----- helpers

    def _folder(self, item_id: str) -> Path:
        if not ID_RE.match(item_id or ""):
            raise StudioError(f"{item_id!r} is not a gallery item id (expected e.g. 20261122-153012-a1b2c3)")
        return self.root / item_id

    def _item_from(self, item_id: str, settings: dict) -> Item:
        return Item(item_id, float(settings.get("created") or (self.root / item_id).stat().st_mtime),
                    str(settings.get("prompt", "")), str(settings.get("model", "?")), int(settings.get("seed", 0)),
                    settings, self._folder(item_id))

    def _row(self, row) -> Item:
        return Item(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), self.root / row[0])


def _insert(con: sqlite3.Connection, item: Item) -> None:
    con.execute("INSERT OR REPLACE INTO items (id, created, prompt, model, seed, settings, sheet, preview, bundle) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (item.id, item.created, item.prompt, item.model, item.seed, json.dumps(item.settings, sort_keys=True),
                 f"{item.id}/sheet.png", f"{item.id}/preview.gif", f"{item.id}/bundle.zip"))


def _write_zip(folder: Path, out: Path) -> None:
    """bundle.zip: the export bundle (sheet, frames, previews, Aseprite JSON, Godot .tres, parameters)."""
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and p != tmp and not p.name.startswith("."):
                z.write(p, p.relative_to(folder))
    os.replace(tmp, out)
