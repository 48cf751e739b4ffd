"""Atomic writes, JSON-lines manifests and checksums (pulse_jax.files): what a crash leaves."""

import hashlib
import os

import numpy as np
import pytest

from pulse_jax import files


def test_sha256_file(tmp_path):
    abc = tmp_path / "abc.bin"
    abc.write_bytes(b"abc")  # FIPS 180-2's test vector
    assert files.sha256_file(abc) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    p = tmp_path / "a.bin"
    data = os.urandom(3 << 20)  # several read chunks
    p.write_bytes(data)
    assert files.sha256_file(p) == hashlib.sha256(data).hexdigest()
    assert files.sha256_file(p, chunk_size=7) == hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_atomic_write_failure_mid_write(tmp_path, monkeypatch, exc):
    target = tmp_path / "a.png"
    target.write_bytes(b"old content")

    def half_then_fail(fd, data):
        os.write(fd, bytes(data)[: len(data) // 2])
        raise exc

    monkeypatch.setattr(files, "_write_all", half_then_fail)
    with pytest.raises(type(exc)):
        files.atomic_write_bytes(target, b"new content" * 1000)
    assert target.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["a.png"]
    # a new file that fails is never created
    with pytest.raises(type(exc)):
        files.atomic_write_text(tmp_path / "new.txt", "x" * 100)
    assert os.listdir(tmp_path) == ["a.png"]


def test_atomic_write_failure_at_replace(tmp_path, monkeypatch):
    target = tmp_path / "m.txt"
    target.write_text("old")

    def boom(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError, match="rename failed"):
        files.atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["m.txt"]
    files.atomic_write_text(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"


def test_atomic_write_keeps_mode(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"1")
    os.chmod(target, 0o640)
    files.atomic_write_bytes(target, b"2")
    assert target.read_bytes() == b"2" and (target.stat().st_mode & 0o777) == 0o640


# ---------------------------------------------------------------------------------------------
# JSON lines
# ---------------------------------------------------------------------------------------------


def test_jsonl_append_and_read(tmp_path):
    m = tmp_path / "sub" / "manifest.jsonl"
    assert files.read_jsonl(m) == []
    files.append_jsonl(m, {"name": "a", "l2": np.float32(0.5), "ok": np.bool_(True),
                            "shape": np.array([1, 2]), "path": tmp_path / "a.png", "t": "é"})
    files.append_jsonl(m, {"name": "b", "l2": None})
    text = m.read_text(encoding="utf-8")
    assert text.count("\n") == 2 and text.endswith("\n")
    assert files.read_jsonl(m) == [
        {"name": "a", "l2": 0.5, "ok": True, "shape": [1, 2], "path": str(tmp_path / "a.png"),
         "t": "é"},
        {"name": "b", "l2": None}]


def test_jsonl_refuses_nan_without_writing(tmp_path):
    m = tmp_path / "m.jsonl"
    files.append_jsonl(m, {"a": 1})
    with pytest.raises(ValueError):
        files.append_jsonl(m, {"l2": float("nan")})
    assert files.read_jsonl(m) == [{"a": 1}]


def test_jsonl_partial_last_line(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3, "b"')  # crashed mid-write
    assert files.read_jsonl(m) == [{"a": 1}, {"a": 2}]
    files.append_jsonl(m, {"a": 4})  # cuts the fragment, then appends
    assert m.read_bytes() == b'{"a": 1}\n{"a": 2}\n{"a":4}\n'
    assert files.read_jsonl(m) == [{"a": 1}, {"a": 2}, {"a": 4}]
    # a file that is only a fragment
    m.write_bytes(b'{"x"')
    assert files.read_jsonl(m) == []
    files.append_jsonl(m, {"x": 1})
    assert m.read_bytes() == b'{"x":1}\n'


def test_jsonl_failure_mid_append_leaves_file_as_it_was(tmp_path, monkeypatch):
    m = tmp_path / "m.jsonl"
    files.append_jsonl(m, {"a": 1})
    before = m.read_bytes()

    def half_then_fail(fd, data):
        os.write(fd, data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(files, "_write_once", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        files.append_jsonl(m, {"b": 2, "long": "x" * 100})
    assert m.read_bytes() == before
    # a short write is an error too, and is undone
    monkeypatch.setattr(files, "_write_once", lambda fd, data: os.write(fd, data[:5]))
    with pytest.raises(OSError, match="short write"):
        files.append_jsonl(m, {"b": 2})
    assert m.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.jsonl"]


def test_jsonl_damaged_middle_line_is_an_error(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_bytes(b'{"a": 1}\n{oops\n{"a": 2}\n\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        files.read_jsonl(m)
