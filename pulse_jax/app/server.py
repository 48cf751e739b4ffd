"""Starting and stopping the app: Gradio's settings for a local, private server (no
telemetry, uploads and outputs only in the work folder, one search at a time)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from typing import Callable, Optional

from pulse_jax.app import handle
from pulse_jax.app.models import Models, available_models
from pulse_jax.app.uploads import Limits
from pulse_jax.app.work import WorkFolders

__all__ = ["App", "LOCAL_HOSTS", "build", "example_files", "launch"]

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_CHECKOUT = pathlib.Path(__file__).resolve().parents[2]
#: The bundled examples, when the source checkout is there (they are not package data).
_EXAMPLES = ("examples/face_00.png", "docs/app/photo.png")


def import_gradio():
    """Gradio, with its telemetry off (it reads the variable at import and at each use)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio
    return gradio


def example_files(work: WorkFolders) -> list[str]:
    """Copies of the bundled examples in ``{work}/examples`` (only the work folder is ever
    served); none outside a source checkout."""
    target = work.root / "examples"
    target.mkdir(exist_ok=True)
    found = []
    for rel in _EXAMPLES:
        src = _CHECKOUT / rel
        if src.is_file():
            dst = target / src.name
            dst.write_bytes(src.read_bytes())
            found.append(str(dst))
    return found


@dataclasses.dataclass
class App:
    """A built app: its Blocks, models and work folder; ``url`` once launched."""

    blocks: object
    models: Models
    work: WorkFolders
    limits: Limits
    url: str = ""

    def close(self) -> None:
        """Stops the server (if launched) and removes the work folder."""
        if self.url:
            self.blocks.close()
        self.work.close()


def build(checkpoint: str = "", cache_dir: str = "", work_dir: Optional[str] = None,
          limits: Limits = Limits(), defaults: handle.Settings = handle.Settings()) -> App:
    """Builds the app (not launched): the models (:func:`available_models`; ``checkpoint``
    first), a work folder (``work_dir``, else a fresh temporary one) that is also Gradio's
    upload folder, and the page."""
    models = Models(available_models(cache_dir, checkpoint))
    work = WorkFolders(work_dir)
    os.environ["GRADIO_TEMP_DIR"] = str(work.root / "uploads")   # before any component
    import_gradio()
    from pulse_jax.app import layout
    blocks = layout.build_blocks(models, work, limits, defaults, example_files(work))
    return App(blocks, models, work, limits)


def launch(app: App, host: str = "127.0.0.1", port: int = 7860, *,
           inline: Optional[bool] = None, block: bool = True,
           log: Callable[[str], None] = print) -> App:
    """Serves ``app`` at ``http://host:port/``.

    Only 127.0.0.1 unless ``host`` says otherwise (``log`` is told when it is reachable
    from other machines); no share link; the queue runs one search at a time and shows
    the others their place; uploads over ``app.limits.max_bytes`` are refused by Gradio;
    only the work folder is served. ``block=True`` serves until Ctrl+C, then removes the
    work folder; ``block=False`` returns at once (notebooks, tests): ``app.close()`` stops it.
    """
    if host not in LOCAL_HOSTS:
        log(f"pulse-jax app: listening on {host}: anyone who can reach this machine on port "
            f"{port} can use the app (and its CPU/GPU); use --host=127.0.0.1 to keep it local")
    work = app.work
    app.blocks.queue(default_concurrency_limit=1)
    _, url, _ = app.blocks.launch(
        server_name=host, server_port=port, share=False, inline=inline,
        prevent_thread_lock=True, quiet=True, show_error=False,
        max_file_size=app.limits.max_bytes,
        allowed_paths=[str(work.requests), str(work.root / "examples")],
        footer_links=["api"], run_history=False, enable_monitoring=False, mcp_server=False,
        ssr_mode=False)
    app.url = url
    log(f"pulse-jax app: {url} (models: {', '.join(app.models.labels)}; work folder "
        f"{work.root}; Ctrl+C stops it)")
    if block:
        try:
            while app.blocks.is_running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            log("pulse-jax app: stopped")
        finally:
            app.close()
    return app
