"""The page: Gradio components over :func:`pulse_jax.app.handle.upsample_upload`, and the
event registered as the API's ``/upsample`` (the image first, every other input with a
default). Gradio is imported by :mod:`pulse_jax.app.server` before this module is."""

from __future__ import annotations

import html
import logging
import pathlib
import traceback
from typing import Optional, Sequence

import gradio as gr

from pulse_jax.app import handle
from pulse_jax.app.models import Models
from pulse_jax.app.uploads import FORMATS, Limits, UploadError
from pulse_jax.app.work import WorkFolders

__all__ = ["build_blocks"]

_logger = logging.getLogger(__name__)

_INTRO = """\
# pulse-jax: a tiny face in, a realistic larger face out

PULSE (Menon et al. 2020) searches a frozen StyleGAN for faces that, **downscaled, give back
your input**. It invents the detail: the result is *a* face consistent with the pixels, not
the person's; compare the restarts. Everything runs on this machine; nothing is uploaded
elsewhere. One search runs at a time: other requests wait, with their place in the queue.
"""


def build_blocks(models: Models, work: WorkFolders, limits: Limits = Limits(),
                 defaults: handle.Settings = handle.Settings(),
                 examples: Sequence[str] = ()) -> gr.Blocks:
    """The app's ``gr.Blocks`` (not launched; :func:`pulse_jax.app.server.launch` does it)."""

    def upsample(image: Optional[str], model: Optional[str] = None,
                 upscale: float = defaults.upscale, steps: float = defaults.steps,
                 restarts: float = defaults.restarts, eps: float = defaults.eps,
                 degradation: str = defaults.degradation, seed: float = defaults.seed,
                 progress=gr.Progress()):
        if not image:
            raise gr.Error("Upload a photo or a tiny face first.", print_exception=False)
        folder = work.new()
        try:
            gen, ckpt = models.get(model)
            outcome = handle.upsample_upload(
                image, handle.Settings(upscale, steps, restarts, eps, degradation, seed),
                gen, ckpt, folder, name=pathlib.Path(image).name, limits=limits,
                tell=lambda f, text: progress(f, desc=text))
        except (UploadError, ValueError) as e:
            raise gr.Error(html.escape(str(e)), print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - the page says so; the server goes on
            _logger.error("request failed:\n%s", traceback.format_exc())
            raise gr.Error(html.escape(f"the search failed: {type(e).__name__}: {e}"),
                           print_exception=False) from None
        finally:
            work.finish(folder)  # removed when the next request starts (Gradio copies first)
        gallery = [(str(p), caption) for p, caption in outcome.pictures]
        return (str(outcome.output), outcome.message, gallery, outcome.records,
                str(outcome.archive))

    with gr.Blocks(title="pulse-jax", analytics_enabled=False,
                   delete_cache=(900, 3600)) as demo:
        gr.Markdown(_INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.File(label=f"photo or tiny face ({', '.join(FORMATS)}, up to "
                                f"{limits.max_bytes // 2**20} MB and "
                                f"{limits.max_pixels / 1e6:.1f} million pixels)",
                                file_types=[".png", ".jpg", ".jpeg", ".webp"],
                                type="filepath", elem_id="upload")
                model = gr.Dropdown(models.labels, value=models.labels[0], label="model",
                                    info="the shipped 64x64 model, or a converted checkpoint "
                                    "from the cache (pulse-jax convert)", elem_id="model")
                upscale = gr.Slider(1, limits.max_upscale, value=defaults.upscale, step=1,
                                    label="upscale (photos)", elem_id="upscale")
                with gr.Row():
                    steps = gr.Number(defaults.steps, precision=0, minimum=1,
                                      maximum=limits.max_steps, label="steps", elem_id="steps")
                    restarts = gr.Number(defaults.restarts, precision=0, minimum=1,
                                         maximum=limits.max_restarts, label="restarts",
                                         elem_id="restarts")
                with gr.Row():
                    eps = gr.Number(defaults.eps, label="eps (l2 within which a face "
                                    "succeeds)", elem_id="eps")
                    seed = gr.Number(defaults.seed, precision=0, minimum=0, label="seed",
                                     elem_id="seed")
                degradation = gr.Textbox(defaults.degradation, label="degradation (empty: "
                                         "bicubic downscale)", placeholder="e.g. blur(sigma="
                                         "1)|downscale(factor=4,kernel=bicubic)",
                                         elem_id="degradation")
                run = gr.Button("Upsample", variant="primary", elem_id="run")
                if examples:
                    gr.Examples([[e] for e in examples], inputs=[image],
                                label="examples (a tiny face, a photo)")
                gr.Markdown(handle.ROUTE_RULE)
            with gr.Column(scale=2):
                output = gr.Image(label="output", type="filepath", format="png",
                                  interactive=False, elem_id="output")
                message = gr.Markdown(label="message", elem_id="message")
                faces = gr.Gallery(label="every face: LR | best | every restart with its l2, "
                                   "then the variability map (dark: the restarts agree)",
                                   columns=4, preview=True, selected_index=0,
                                   object_fit="contain", elem_id="faces")
                records = gr.JSON(label="manifest records", elem_id="records")
                archive = gr.File(label="everything as a zip", interactive=False,
                                  elem_id="zip")
        run.click(upsample, [image, model, upscale, steps, restarts, eps, degradation, seed],
                  [output, message, faces, records, archive], api_name="upsample",
                  concurrency_limit=1, concurrency_id="search")
    return demo
