r"""The shipped model's bias report: ``pulse-jax evaluate`` on the held-out UTKFace faces.

  python -m experiments.bias_report --data=../shared/data/utkface64.zip \
      --output_dir=runs/bias_utkface64 [--restarts=1,4]

The held-out faces are the last ``HELD_OUT`` (300) images of the zip by sorted name, the
ones the training config never used. They are copied to ``{output_dir}/truth`` and
evaluated at x8 (8x8 bicubic observations, PULSE's defaults otherwise) once per restart
count, each run in ``{output_dir}/restarts{R}`` (rerun to resume). What may be committed
is then copied into the repository: each run's ``summary.json`` (figures only) to
``docs/evidence/bias_utkface64_restarts{R}.json`` and its plots of figures and tables
(``figures.md``) to ``docs/model_card/restarts{R}/``; the faces and the best/worst grid stay in
``output_dir`` (UTKFace is for non-commercial research and is not ours to publish).

The same command evaluates any checkpoint on any labelled faces; for FFHQ weights at 1024:

  pulse-jax evaluate --truth_dir=FACES_1024 --output_dir=runs/bias_ffhq \
      --checkpoint=ffhq1024 --labels=utkface --config.search.restarts=4
"""

import pathlib
import shutil
import time
import zipfile

from absl import app, flags

import pulse_jax
from pulse_jax import evaluate
from pulse_jax.evaluate.report import gap_lines, group_table
from pulse_jax.evaluate.runner import SUMMARY
from experiments.configs.train_utkface64 import HELD_OUT

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "../shared/data/utkface64.zip", "the UTKFace 64x64 zip")
flags.DEFINE_string("output_dir", "runs/bias_utkface64", "where the runs go (not committed)")
flags.DEFINE_string("checkpoint", "default", "the model (default: the shipped one)")
flags.DEFINE_list("restarts", ["1", "4"], "restart counts, one run each")
flags.DEFINE_integer("faces", HELD_OUT, "held-out faces to use (the last N by name)")
flags.DEFINE_integer("batch_size", 25, "faces per search call")
flags.DEFINE_string("repo", str(pathlib.Path(__file__).resolve().parents[1]),
                    "the checkout the committable figures are copied into ('' = none)")

_PLOTS = ("identity_histogram.png", "groups_age_band.png", "groups_gender.png",
          "groups_race.png")


def held_out(zip_path: str, folder: pathlib.Path, n: int) -> int:
    """Copies the last ``n`` images of the zip by name into ``folder``; returns the count."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as z:
        names = sorted(x for x in z.namelist() if x.lower().endswith((".jpg", ".png")))
        for name in names[-HELD_OUT:][:n]:
            target = folder / pathlib.Path(name).name
            if not target.exists():
                target.write_bytes(z.read(name))
    return len(list(folder.iterdir()))


def tables(figures: dict, restarts: int) -> str:
    """The model card's tables of one run, in markdown."""
    lines = [f"### {restarts} restart{'s' if restarts > 1 else ''}", "", "Overall:", ""]
    lines += group_table({"all": figures["overall"]})
    for label, groups in figures["groups"].items():
        lines += ["", f"By {label}:", ""] + group_table(groups)
    return "\n".join(lines + ["", "Largest gaps:", ""] + gap_lines(figures["gaps"])) + "\n"


def main(argv):
    del argv
    out = pathlib.Path(FLAGS.output_dir)
    n = held_out(FLAGS.data, out / "truth", FLAGS.faces)
    print(f"{n} held-out faces in {out / 'truth'}")
    gen = pulse_jax.weights.load_generator(pulse_jax.weights.resolve_checkpoint(FLAGS.checkpoint))
    for r in map(int, FLAGS.restarts):
        run_dir = out / f"restarts{r}"
        t = time.time()
        figures = evaluate.run(gen, out / "truth", run_dir, pulse_jax.SearchConfig(restarts=r),
                               evaluate.EvaluateOptions(labels="utkface",
                                                        batch_size=FLAGS.batch_size),
                               checkpoint=FLAGS.checkpoint)
        o = figures["overall"]
        print(f"restarts {r}: {o['n']} faces in {time.time() - t:.0f} s; success "
              f"{o['success_rate']:.3f}, same identity {o['same_identity_rate']}, mean "
              f"identity distance {o['mean_identity_distance']:.3f}")
        if FLAGS.repo:
            repo = pathlib.Path(FLAGS.repo)
            ev = repo / "docs" / "evidence" / f"bias_utkface64_restarts{r}.json"
            shutil.copyfile(run_dir / SUMMARY, ev)
            plots = repo / "docs" / "model_card" / f"restarts{r}"
            plots.mkdir(parents=True, exist_ok=True)
            for p in _PLOTS:
                if (run_dir / "plots" / p).is_file():
                    shutil.copyfile(run_dir / "plots" / p, plots / p)
            (plots / "figures.md").write_text(tables(figures, r))
            print(f"  figures -> {ev}, plots and tables -> {plots}")


if __name__ == "__main__":
    app.run(main)
