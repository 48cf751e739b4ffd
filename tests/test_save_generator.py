"""Saving a checkpoint replaces only a checkpoint: a folder of anything else survives
``save_generator`` and ``pulse-jax convert --overwrite`` with a clear error, and an existing
checkpoint is swapped for the new one atomically."""

import json

import numpy as np
import pytest

import fakes
from pulse_jax import cli, files
from pulse_jax.weights import CheckpointError, load_generator, save_generator
from pulse_jax.weights.checkpoint import check_replaceable

from conftest import DATA


def _project(folder):
    """A folder of someone's work: what saving must never delete."""
    (folder / "src").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes")
    (folder / "src" / "main.py").write_text("print('hi')")
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}


def _contents(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}


@pytest.mark.parametrize("overwrite", [True, False])
def test_a_project_folder_survives_save_generator(tmp_path, overwrite):
    before = _project(tmp_path / "my_project")
    err = CheckpointError if overwrite else FileExistsError
    with pytest.raises(err, match="my_project"):
        save_generator(fakes.tiny_generator(), tmp_path / "my_project", overwrite=overwrite)
    assert _contents(tmp_path / "my_project") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_project"]  # no temporaries


def test_refusal_names_what_is_there(tmp_path):
    _project(tmp_path / "p")
    with pytest.raises(CheckpointError, match=r"not a pulse-jax checkpoint.*notes\.txt, src"):
        save_generator(fakes.tiny_generator(), tmp_path / "p")


def test_not_a_checkpoint_in_other_shapes(tmp_path):
    gen = fakes.tiny_generator()
    a_file = tmp_path / "file"
    a_file.write_text("data")
    with pytest.raises(CheckpointError, match="is a file"):
        save_generator(gen, a_file)
    assert a_file.read_text() == "data"
    # A checkpoint with a file of the user's added to it.
    ckpt = save_generator(gen, tmp_path / "ck")
    (ckpt / "README.txt").write_text("my model")
    with pytest.raises(CheckpointError, match="README.txt"):
        save_generator(gen, ckpt)
    assert (ckpt / "README.txt").read_text() == "my model"
    # Our file names, but another program's manifest.
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"format": "someone-else"}))
    with pytest.raises(CheckpointError, match="no manifest.json of format"):
        save_generator(gen, other)
    assert json.loads((other / "manifest.json").read_text()) == {"format": "someone-else"}
    (other / "manifest.json").write_text("[1, 2]")  # JSON, but not a manifest
    with pytest.raises(CheckpointError, match="no manifest.json of format"):
        check_replaceable(other)


def test_empty_folder_and_new_path_are_fine(tmp_path):
    gen = fakes.tiny_generator()
    (tmp_path / "empty").mkdir()
    load_generator(save_generator(gen, tmp_path / "empty"))
    load_generator(save_generator(gen, tmp_path / "new" / "deeper"))


def test_a_checkpoint_is_replaced(tmp_path):
    a, b = fakes.tiny_generator(0), fakes.tiny_generator(1)
    path = save_generator(a, tmp_path / "ck")
    # A folder with the name the old code parked the previous checkpoint under is not ours.
    parked = tmp_path / ".ck.old"
    before = _project(parked)
    save_generator(b, path)
    got = load_generator(path).params["synthesis"]["4x4"]["const"]
    np.testing.assert_array_equal(got, b.params["synthesis"]["4x4"]["const"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ck.old", "ck"]
    assert _contents(parked) == before


def test_a_failed_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    a, b = fakes.tiny_generator(0), fakes.tiny_generator(1)
    path = save_generator(a, tmp_path / "ck")
    before = _contents(path)

    def savez_fails(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(np, "savez", savez_fails)
        with pytest.raises(OSError, match="disk full"):
            save_generator(b, path)
    assert _contents(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["ck"]

    # A crash between the swap's two renames: the old checkpoint is put back.
    real_replace = files.os.replace
    calls = []

    def second_rename_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("crash")
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(files.os, "replace", second_rename_fails)
        with pytest.raises(OSError, match="crash"):
            save_generator(b, path)
    assert len(calls) == 3  # park the old one, (fail to) move the new one in, put back
    assert _contents(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    load_generator(path)


def _convert(out, *more):
    return cli.run(["convert", f"--synthesis={DATA / 'small_seed0_synthesis.pt'}",
                    f"--gaussian_fit={DATA / 'small_seed0_gaussian_fit_legacy.pt'}",
                    f"--output={out}", *more])


def test_convert_overwrite_refuses_a_project_folder(tmp_path, capsys):
    before = _project(tmp_path / "my_project")
    assert _convert(tmp_path / "my_project", "--overwrite") == 2
    err = capsys.readouterr().err
    assert "not a pulse-jax checkpoint" in err and "Traceback" not in err
    assert _contents(tmp_path / "my_project") == before
    # And it does replace a checkpoint.
    ck = tmp_path / "ck"
    assert _convert(ck) == 0
    first = json.loads((ck / "manifest.json").read_text())["created"]
    assert _convert(ck) == 2 and "--overwrite" in capsys.readouterr().err
    assert _convert(ck, "--overwrite") == 0
    assert json.loads((ck / "manifest.json").read_text())["created"] >= first
    assert load_generator(ck).config.resolution == 128
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "my_project"]
