"""The studio: a local web UI (Gradio) and HTTP API over the same library calls as the CLI.

safety.py   what is refused (uploads, paths outside the workspace, oversized requests)
gallery.py  every generation on disk + SQLite index; A1111 "parameters" PNG chunks; rebuild
generation.py  one request -> one gallery item (GenRequest, the model picker, image inputs)
jobs.py     the one-at-a-time generation queue; the training process (start/stop/resume/status)
service.py  `Studio`: the object the UI and the API both call
api.py      /api/v1 routes;  app.py  the Gradio UI and `spriteforge studio`
"""
