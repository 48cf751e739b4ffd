"""The batch pipeline as a library: naming, hashing, bad inputs, resume, devices, merging."""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np
import pytest

import fakes
import pulse_jax
from pulse_jax import batch, exit_codes, files
from pulse_jax.search import SearchConfig

# Our own file and command-line code: the newest set skips it (setup.cfg, marker io).
pytestmark = pytest.mark.io

CFG = SearchConfig(steps=4, chunk_steps=2, restarts=2)


def _run(inputs, out, cfg=CFG, **kw):
    kw.setdefault("devices", 1)
    kw.setdefault("batch_size", 2)
    kw.setdefault("seed", 0)
    messages = []
    s = batch.run_batch(fakes.tiny_generator(), inputs, out, cfg, progress=False,
                        log=messages.append, **kw)
    return s, messages


def _by_name(out) -> dict:
    recs = batch.read_records(out)
    names = [r["name"] for r in recs]
    assert len(names) == len(set(names)), f"a face was recorded twice: {names}"
    return {r["name"]: r for r in recs}


# --------------------------------------------------------------------------------------------
# Pure parts
# --------------------------------------------------------------------------------------------


def test_plan_faces_names_ids_and_duplicates():
    paths = [pathlib.Path(p) for p in
             ["a/face.png", "b/face.png", "a/face.jpg", "a/x.png", "a/x_lr.png", "a/Face.png"]]
    faces = batch.plan_faces(paths)
    assert [f.name for f in faces] == ["face", "face-2", "face-3", "x", "x_lr-2", "Face-4"]
    assert [f.face_id for f in faces] == list(range(6))
    assert batch.plan_faces(paths) == faces  # deterministic

    dup = batch.plan_faces([pathlib.Path("a/p.png"), pathlib.Path("a/q.png")], duplicates=3)
    assert [(f.name, f.face_id, f.duplicate) for f in dup] == [
        ("p_1", 0, 0), ("p_2", 1, 1), ("p_3", 2, 2), ("q_1", 3, 0), ("q_2", 4, 1), ("q_3", 5, 2)]
    with pytest.raises(ValueError, match="duplicates"):
        batch.plan_faces(paths, duplicates=0)


@pytest.mark.slow
def test_config_hash_depends_on_what_changes_results():
    gen = fakes.tiny_generator()
    fp = batch.generator_fingerprint(gen)
    h = batch.config_hash(gen, CFG, 0)
    assert len(h) == 16 and h == batch.config_hash(fp, CFG, 0, generator_config=gen.config)
    assert h != batch.config_hash(gen, CFG, 1)
    assert h != batch.config_hash(gen, dataclasses.replace(CFG, steps=5), 0)
    assert h != batch.config_hash(gen, dataclasses.replace(CFG, eps=1e-3), 0)
    # Only how it is computed or returned: same hash.
    for change in ({"chunk_steps": 1}, {"keep_restart_images": True}, {"remat": True}):
        assert h == batch.config_hash(gen, dataclasses.replace(CFG, **change), 0)
    # The loop and the upsampling convs change the bits: hashed as resolved for this backend.
    assert h == batch.config_hash(gen, CFG.resolved(), 0)
    for change in ({"loop": "device"}, {"upconv": "direct"}):
        assert h != batch.config_hash(gen, dataclasses.replace(CFG, **change), 0)
    # The epilogue is hashed as it acts: below 128x128 every choice but "fused" is
    # autodiff's arithmetic, hashed as before the option existed (no "epilogue" field).
    assert gen.resolution < 128
    for epilogue in ("autodiff", "fused_large", "auto"):
        assert h == batch.config_hash(gen, dataclasses.replace(CFG, epilogue=epilogue), 0)
    assert h != batch.config_hash(gen, dataclasses.replace(CFG, epilogue="fused"), 0)
    big = pulse_jax.GeneratorConfig(resolution=128)
    fields = {e: batch.manifest.hashed_search_fields(dataclasses.replace(CFG, epilogue=e), big)
              for e in ("autodiff", "fused_large")}
    assert "epilogue" not in fields["autodiff"] and fields["fused_large"]["epilogue"] == "fused_large"
    syn = dict(gen.params["synthesis"], torgb={
        "kernel": gen.params["synthesis"]["torgb"]["kernel"] * 1.001,
        "bias": gen.params["synthesis"]["torgb"]["bias"]})
    other = gen.replace(params=dict(gen.params, synthesis=syn))
    assert batch.config_hash(other, CFG, 0) != h
    refit = gen.replace_gaussian_fit(gen.gaussian_fit["mean"], gen.gaussian_fit["std"] * 2)
    assert batch.config_hash(refit, CFG, 0) != h


def test_merge_is_idempotent(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    files.append_jsonl(out / "manifest.jsonl", {"name": "old", "face_id": 9})
    for k, recs in enumerate([[{"name": "b", "face_id": 2}, {"name": "d", "face_id": 4}],
                              [{"name": "a", "face_id": 1}, {"name": "c", "face_id": 3}]]):
        for r in recs:
            files.append_jsonl(out / batch.part_name(k, 2), r)
    # A crash mid-append left a partial line in a part; it is not a record.
    with open(out / batch.part_name(1, 2), "ab") as f:
        f.write(b'{"name": "trunc')
    (out / "manifest.part1of2.done").write_text("{}")
    batch.merge_manifests(out)
    first = (out / "manifest.jsonl").read_bytes()
    assert [r["name"] for r in files.read_jsonl(out / "manifest.jsonl")] == \
        ["old", "a", "b", "c", "d"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl"]
    batch.merge_manifests(out)
    assert (out / "manifest.jsonl").read_bytes() == first
    # Parts that survived a crash after the merge wrote manifest.jsonl add nothing.
    files.append_jsonl(out / batch.part_name(0, 2), {"name": "b", "face_id": 2})
    batch.merge_manifests(out)
    assert (out / "manifest.jsonl").read_bytes() == first


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_mixed_folder_outputs_records_resume_and_rehash(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    good = fakes.write_faces(inp, 3)
    bad = fakes.write_bad_inputs(inp)
    s, msgs = _run(inp, out, save_lr=True, save_contact_sheet=True)
    recs = _by_name(out)
    assert set(recs) == {p.stem for p in good} | {p.stem for p in bad.values()}
    h = s.config_hash
    for p in good:
        r = recs[p.stem]
        assert "error" not in r
        for k in ("input", "output", "l2", "success", "eps", "seed", "restart", "steps",
                  "wall_s", "config_hash", "restart_l2"):
            assert k in r, k
        assert r["config_hash"] == h and r["steps"] == 4 and r["restarts"] == 2
        assert r["success"] == (r["l2"] <= r["eps"])
        hr = fakes.png_ok(r["output"])
        assert hr.shape == (32, 32, 3)
        assert fakes.png_ok(out / f"{p.stem}_lr.png").shape == (8, 8, 3)
        assert fakes.png_ok(out / f"{p.stem}_sheet.png").ndim == 3
        assert r["restart_l2"][r["restart"]] == r["l2"]
    expected = {"not_an_image": "Pillow cannot identify", "empty": "empty",
                "truncated": "truncated", "non_square": "not square",
                "wrong_size": "does not divide", "transparent": "transparen",
                "too_big": "not smaller"}
    for kind, p in bad.items():
        r = recs[p.stem]
        assert expected[kind] in r["error"], (kind, r["error"])
        assert str(p) in r["error"] and r["error_kind"] == "input"
        assert not (out / f"{p.stem}.png").exists()
        assert any(str(p) in m for m in msgs), kind
    assert (s.faces, s.done, s.skipped, s.bad) == (10, 3, 0, 7)
    assert s.succeeded + s.failed == 3
    assert batch.exit_status(s) == exit_codes.BAD_INPUT
    assert "7 bad" in s.format()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    # Rerun: everything is already complete; nothing is redone or recorded twice.
    manifest = (out / "manifest.jsonl").read_bytes()
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*.png")}
    s2, _ = _run(inp, out, save_lr=True, save_contact_sheet=True)
    assert (s2.done, s2.skipped, s2.bad) == (0, 10, 7)
    assert (out / "manifest.jsonl").read_bytes() == manifest
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.png")} == mtimes
    assert batch.exit_status(s2) == exit_codes.BAD_INPUT

    # A fixed input is redone (its bytes changed), the rest is skipped.
    bad["wrong_size"].unlink()
    fakes.write_faces(inp, 1, prefix="bad_size", start=7)
    (inp / "bad_size07.png").rename(bad["wrong_size"])
    s3, _ = _run(inp, out)
    assert (s3.done, s3.skipped, s3.bad) == (1, 9, 6)
    recs = batch.read_records(out)
    fixed = [r for r in recs if r["name"] == "bad_size"]
    assert len(fixed) == 2 and "error" in fixed[0] and "error" not in fixed[1]

    # Another seed is another config hash: everything is redone.
    s4, _ = _run(inp, out, seed=1)
    assert s4.config_hash != h and (s4.done, s4.skipped) == (4, 0)
    assert len(batch.read_records(out)) == 10 + 1 + 10


def test_all_good_exit_status_and_failures_not_written(tmp_path):
    inp = tmp_path / "in"
    fakes.write_faces(inp, 2)
    loose = dataclasses.replace(CFG, eps=1.0)  # everything succeeds
    s, _ = _run(inp, tmp_path / "ok", loose)
    assert (s.succeeded, s.failed, s.bad) == (2, 0, 0)
    assert batch.exit_status(s) == exit_codes.OK
    # 4 steps on a random generator miss the default eps (l2 ~ 0.03); the reference's
    # behaviour writes no image for them.
    s, _ = _run(inp, tmp_path / "strict", CFG, write_failures=False)
    assert (s.succeeded, s.failed) == (0, 2)
    assert batch.exit_status(s) == exit_codes.MISSED_EPS
    recs = _by_name(tmp_path / "strict")
    assert all(r["output"] is None and not r["success"] for r in recs.values())
    assert not list((tmp_path / "strict").glob("*.png"))


@pytest.mark.slow
def test_duplicates_and_intermediate_frames(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    fakes.write_faces(inp, 1)
    _run(inp, out, duplicates=2, save_intermediate=True, batch_size=1)
    recs = _by_name(out)
    assert set(recs) == {"face00_1", "face00_2"}
    assert [recs[n]["face_id"] for n in ("face00_1", "face00_2")] == [0, 1]
    a, b = fakes.png_ok(out / "face00_1.png"), fakes.png_ok(out / "face00_2.png")
    assert not np.array_equal(a, b)  # independent starts
    for n in ("face00_1", "face00_2"):
        frames = sorted(p.name for p in (out / n / "HR").iterdir())
        assert frames == [f"{n}_01.png", f"{n}_03.png", f"{n}_04.png"]  # steps 2, 4, final
        assert sorted(p.name for p in (out / n / "LR").iterdir()) == frames
        assert fakes.png_ok(out / n / "LR" / f"{n}_04.png").shape == (8, 8, 3)
        np.testing.assert_array_equal(fakes.png_ok(out / n / "HR" / f"{n}_04.png"),
                                      fakes.png_ok(out / f"{n}.png"))


@pytest.mark.slow
def test_four_devices_equal_one_device(tmp_path):
    """Same per-device batch shape: bitwise the same images and l2 on 1 and 4 devices."""
    assert len(jax.local_devices()) >= 4, "conftest fakes 4 CPU devices"
    inp = tmp_path / "in"
    fakes.write_faces(inp, 5)  # 5 faces: a ragged last call on 4 devices (padding dropped)
    s1, _ = _run(inp, tmp_path / "d1", devices=1, batch_size=1)
    s4, _ = _run(inp, tmp_path / "d4", devices=4, batch_size=1)
    assert s1.config_hash == s4.config_hash and s4.done == 5
    r1, r4 = _by_name(tmp_path / "d1"), _by_name(tmp_path / "d4")
    assert set(r1) == set(r4) and len(r1) == 5
    for n in r1:
        assert r1[n]["l2"] == r4[n]["l2"], n
        assert r1[n]["restart_l2"] == r4[n]["restart_l2"], n
        assert r1[n]["restart"] == r4[n]["restart"], n
        np.testing.assert_array_equal(fakes.png_ok(tmp_path / "d1" / f"{n}.png"),
                                      fakes.png_ok(tmp_path / "d4" / f"{n}.png"))


def test_split_over_processes_without_coordinator(tmp_path):
    """Two shares run one after the other (no jax.distributed): parts, markers, merge."""
    inp, out = tmp_path / "in", tmp_path / "out"
    fakes.write_faces(inp, 3)
    fakes.write_bad_inputs(inp)
    s1, _ = _run(inp, out, process_index=1, process_count=2, batch_size=1)
    assert (out / "manifest.part1of2.jsonl").exists() and not (out / "manifest.jsonl").exists()
    assert s1.merged is None
    s0, _ = _run(inp, out, process_index=0, process_count=2, batch_size=1)
    assert sorted(p.name for p in out.iterdir() if "manifest" in p.name) == ["manifest.jsonl"]
    recs = _by_name(out)
    assert len(recs) == s0.faces + s1.faces == 10
    assert {r["face_id"] % 2 for r in recs.values() if r["process"] == 1} == {1}
    m = s0.merged
    assert (m.faces, m.done, m.bad) == (10, 3, 7) and "all processes" in s0.format()
    assert batch.exit_status(s0) == exit_codes.BAD_INPUT

    # The same faces in one process: identical results (the split never changes a face).
    single = tmp_path / "single"
    _run(inp, single, batch_size=1)
    r1 = _by_name(single)
    for n, r in recs.items():
        assert r.get("l2") == r1[n].get("l2") and r.get("error") == r1[n].get("error")


def test_progress_bar_and_no_retrace(tmp_path, capfd, monkeypatch, search_traced_once):
    """A tqdm bar over faces with it/s and ETA; a second batch of the same shapes reuses the
    compiled search (no retracing: search_traced_once)."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # a user's setting would hide the bar
    inp = tmp_path / "in"
    fakes.write_faces(inp, 2)
    _run(inp, tmp_path / "warm")
    capfd.readouterr()
    s = batch.run_batch(fakes.tiny_generator(), inp, tmp_path / "out", CFG, seed=3,
                        batch_size=2, devices=1, progress=True, log=lambda m: None)
    err = capfd.readouterr().err
    assert s.done == 2
    assert "2/2 faces" in err and "it/s" in err and "step 4/4" in err and "<" in err


# --------------------------------------------------------------------------------------------
# A search or a write that raises
# --------------------------------------------------------------------------------------------


def _fail_on_chunk(monkeypatch, k: int, exc: Exception) -> None:
    """The search raises ``exc`` instead of yielding its ``k``-th chunk (counted over calls)."""
    from pulse_jax import search
    real, count = search.upsample_chunks, [0]

    def chunks(*args, **kwargs):
        for item in real(*args, **kwargs):
            count[0] += 1
            if count[0] == k:
                raise exc
            yield item

    monkeypatch.setattr(search, "upsample_chunks", chunks)


def test_failed_search_chunk_blames_that_chunk_and_is_retried(tmp_path, monkeypatch):
    """5 faces, 2 per call: the second call runs out of memory. Exactly its faces get
    ``search`` errors (the first chunk's stay written), the third chunk still runs, the
    status says so, and a rerun searches only the two failed faces, as a clean run would."""
    inp, out = tmp_path / "in", tmp_path / "out"
    fakes.write_faces(inp, 5)
    _fail_on_chunk(monkeypatch, 2, RuntimeError("RESOURCE_EXHAUSTED: out of memory"))
    s, msgs = _run(inp, out)
    recs = _by_name(out)  # one record per face
    failed = {n for n, r in recs.items() if "error" in r}
    assert failed == {"face02", "face03"}
    for n in failed:
        assert recs[n]["error_kind"] == "search" and "out of memory" in recs[n]["error"]
        assert not (out / f"{n}.png").exists()
    for n in ("face00", "face01", "face04"):
        assert "error" not in recs[n] and fakes.png_ok(out / f"{n}.png").shape == (32, 32, 3)
    assert (s.faces, s.done, s.skipped, s.bad) == (5, 3, 0, 2)
    assert sorted(e[0] for e in s.errors) == [str(inp / "face02.png"), str(inp / "face03.png")]
    assert batch.exit_status(s) == exit_codes.BAD_INPUT
    assert any("RESOURCE_EXHAUSTED" in m for m in msgs)

    monkeypatch.undo()
    s2, _ = _run(inp, out)
    assert (s2.done, s2.skipped, s2.bad) == (2, 3, 0)
    recs = batch.read_records(out)
    assert [r["name"] for r in recs[5:]] == ["face02", "face03"]  # only those were redone
    clean_dir = tmp_path / "clean"
    _run(inp, clean_dir)
    clean = _by_name(clean_dir)
    for r in recs[5:]:
        c = clean[r["name"]]
        assert (r["l2"], r["restart_l2"], r["restart"]) == (c["l2"], c["restart_l2"], c["restart"])
        np.testing.assert_array_equal(fakes.png_ok(out / f"{r['name']}.png"),
                                      fakes.png_ok(clean_dir / f"{r['name']}.png"))


def test_failed_write_blames_only_the_faces_not_written(tmp_path, monkeypatch):
    """The disk fills while the second chunk is written: its first face keeps its result,
    the face whose image failed is recorded as failed, the last chunk still runs."""
    import errno

    from pulse_jax import images
    inp, out = tmp_path / "in", tmp_path / "out"
    fakes.write_faces(inp, 5)
    real = images.save_png

    def save_png(path, x):
        if pathlib.Path(path).name == "face03.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, x)

    monkeypatch.setattr(images, "save_png", save_png)
    s, _ = _run(inp, out)
    recs = _by_name(out)
    assert {n for n, r in recs.items() if "error" in r} == {"face03"}
    assert "No space left" in recs["face03"]["error"] and recs["face03"]["error_kind"] == "search"
    assert set(recs) == {f"face0{i}" for i in range(5)}
    assert (s.done, s.bad) == (4, 1) and batch.exit_status(s) == exit_codes.BAD_INPUT


def test_plan_faces_unsafe_stems_stay_inside_the_output_folder():
    paths = [pathlib.Path(p) for p in
             ["in/...png", "in/..png", "in/.hidden.png", "in/a\\b.png", "in/tab\tx.png",
              "in/nul\x00.png", "in/__.png", "in/manifest.jsonl.png", "in/a.png.png", "in/a.png"]]
    names = [f.name for f in batch.plan_faces(paths)]
    assert names == ["__", "_", "_hidden", "a_b", "tab_x", "nul_", "__-2", "manifest.jsonl-2",
                     "a.png", "a-2"]
    for n in names:
        assert "/" not in n and "\\" not in n and not n.startswith(".")
        assert pathlib.Path(n).name == n and n not in (".", "..")
    assert batch.plan_faces([pathlib.Path("x/plain-name_1.png")])[0].name == "plain-name_1"


def test_no_input_name_writes_outside_the_output_folder(tmp_path):
    """List entries whose stems are ``..``, ``.``, hidden, with a backslash or a tab, or the
    manifest's name, with every output option on: all files land inside the output folder,
    each face has its own, and the manifest stays a file."""
    src, work = tmp_path / "src", tmp_path / "work"
    stems = ["..", ".", ".hidden", "a\\b", "tab\tx", "manifest.jsonl", "plain"]
    for i, stem in enumerate(stems):
        fakes.write_faces(src, 1, start=i)
        (src / f"face{i:02d}.png").rename(src / f"{stem}.png")
    (src / "list.txt").write_text("".join(f"{s}.png\n" for s in stems))
    out = work / "out"
    before = {p for p in tmp_path.rglob("*")}
    s, _ = _run(src / "list.txt", out, save_intermediate=True, save_lr=True,
                save_contact_sheet=True)
    new = {p for p in tmp_path.rglob("*")} - before
    outside = [p for p in new if out not in p.parents and p != out and p != work]
    assert outside == [], outside
    assert (s.done, s.bad) == (len(stems), 0), s.errors
    recs = files.read_jsonl(out / "manifest.jsonl")
    names = [r["name"] for r in recs]
    assert sorted(names) == sorted(["__", "_", "_hidden", "a_b", "tab_x", "manifest.jsonl-2",
                                    "plain"])
    for r in recs:
        assert pathlib.Path(r["output"]).parent == out
        assert (out / r["name"] / "HR").is_dir() and (out / f"{r['name']}_sheet.png").is_file()
