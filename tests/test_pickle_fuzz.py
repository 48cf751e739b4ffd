"""Damaged and crafted weight files: every reader raises CheckpointFormatError (the documented
base class, UnsafePickleError included) or loads; none crashes, reads outside a buffer or
raises anything else.

Crafted files aim at the stand-ins' checks: BUILD (which sets attributes after a stand-in was
checked) on tensors, storages, stand-in functions, markers and persistent objects, negative and
huge strides, offsets past the end, broadcast views, and an ADA storage whose data is swapped
for another tensor. The fuzz mutates the committed files (torch zip and legacy .pt, the ADA
pickle) and a small TensorFlow StyleGAN2 pickle (protocol 2): byte flips, opcode swaps, flipped
opcode arguments and truncation, seeded (50 cases per file, 300 in all). All of it runs in one
child process with faulthandler on, so a segfault fails the test and names the case instead of
killing pytest. ``pulse-jax convert`` on the crafted files exits with status 2 and one message
line.
"""

import io
import json
import os
import pathlib
import pickle
import pickletools
import random
import subprocess
import sys
import zipfile

import pytest

HERE = pathlib.Path(__file__).resolve().parent
DATA = HERE / "data"
ADA = DATA / "sg2" / "sg2ada_res64_seed0_gema.pkl"
OK_OUTCOMES = {"ok", "CheckpointFormatError", "UnsafePickleError"}
SEED, CASES_PER_FILE = 20240611, 50
FUZZ_BASES = {  # file -> reader
    "small_seed0_synthesis.pt": "torch", "small_seed0_gaussian_fit_legacy.pt": "torch",
    "extra_256_synthesis_legacy.pt": "torch", "pulse_repo_gaussian_fit.pt": "torch",
    "ada.pkl": "nvidia", "tf.pkl": "nvidia"}
_OPCODES = [op.code.encode("latin1") for op in pickletools.opcodes]


# ------------------------------------------------------------------------------------------
# Crafted files (written by the test process)


def _insert_after(data: bytes, is_target, state) -> bytes:
    """``data`` (a protocol 2/3 pickle: no frames) with ``<state> BUILD`` right after the
    first opcode for which ``is_target(op, arg)`` holds."""
    piece = pickletools.optimize(pickle.dumps(state, protocol=2))[2:-1]  # no PROTO, STOP, PUT
    ops = list(pickletools.genops(data))
    for (op, arg, _), (_, _, end) in zip(ops, ops[1:]):
        if is_target(op, arg):
            return data[:end] + piece + pickle.BUILD + data[end:]
    raise AssertionError("target opcode not found")


def _rezip(path: pathlib.Path, edit) -> pathlib.Path:
    """Rewrites the zip checkpoint ``path`` with ``edit(data.pkl bytes)`` as its pickle."""
    with zipfile.ZipFile(path) as zf:
        records = {n: zf.read(n) for n in zf.namelist()}
    name = next(n for n in records if n.endswith("data.pkl"))
    records[name] = edit(records[name])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for n, d in records.items():
            zf.writestr(n, d)
    return path


def _global_is(module, name):
    return lambda op, arg: op.name == "GLOBAL" and arg == f"{module} {name}"


def _crafted_torch(d: pathlib.Path) -> list:
    import numpy as np
    from test_torch_files import FStorage, FTensor, write_legacy, write_zip

    class Built(FTensor):  # a tensor whose pickle ends with BUILD(state)
        def __init__(self, state, *args):
            super().__init__(*args)
            self.state = state

        def __reduce__(self):
            return super().__reduce__() + (self.state,)

    st = FStorage("FloatStorage", np.arange(8, dtype=np.float32), "0")
    one = {"w": FTensor(st, 0, (2, 2), (2, 1))}
    cases = []

    def case(name, writer, obj, match):
        cases.append((str(writer(d / name, obj)), "torch", match))

    for w, ext in ((write_zip, "zip"), (write_legacy, "legacy")):
        case(f"{ext}_build_negative_stride.pt", w,
             {"w": Built({"stride": (-10**8,)}, st, 0, (2,), (1,))}, "takes none")
        case(f"{ext}_build_slots.pt", w,
             {"w": Built((None, {"offset": 10**9}), st, 0, (2,), (1,))}, "takes none")
        case(f"{ext}_huge_stride.pt", w, {"w": FTensor(st, 0, (2,), (10**8,))}, "reaches")
        case(f"{ext}_offset_past_end.pt", w, {"w": FTensor(st, 10**6, (1,), (1,))}, "reaches")
        case(f"{ext}_negative_stride.pt", w, {"w": FTensor(st, 0, (2,), (-1,))}, "stride")
        case(f"{ext}_broadcast.pt", w, {"w": FTensor(st, 0, (2**20, 2**20), (0, 0))},
             "more elements than")
    p = write_legacy(d / "legacy_build_on_storage.pt", one)
    data = p.read_bytes()
    f = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol, sys-info: then the saved object's pickle
        list(pickletools.genops(f))
    start = f.tell()
    p.write_bytes(data[:start] + _insert_after(
        data[start:], lambda op, arg: op.name == "BINPERSID", {"numel": 10**9}))
    cases.append((str(p), "torch", "takes none"))
    for name, (module, glob) in (("function", ("torch._utils", "_rebuild_tensor_v2")),
                                 ("marker", ("torch", "FloatStorage"))):
        p = _rezip(write_zip(d / f"zip_build_on_{name}.pt", one),
                   lambda b: _insert_after(b, _global_is(module, glob), {"dtype": None}))
        cases.append((str(p), "torch", "takes none"))
    return cases


def _crafted_ada(d: pathlib.Path) -> list:
    import ada_repickle as R
    cases = []

    def case(name, edit, match):  # protocol 4, which the readers before the fix also read
        graph = R.read_graph(ADA.read_bytes())
        edit(graph)
        (d / name).write_bytes(R.dumps(graph, 4, numpy_names=2))
        cases.append((str(d / name), "nvidia", match))

    def tensors(g):
        return R.calls(g, "_rebuild_tensor_v2")

    def swap_storage(g):
        """The next storage's data replaced by a [128, 512] weight tensor, and a flat view of
        it from row 127 on, within its 65536 elements: before the fix, data[127:] skipped 127
        rows and the copy read 65,024 elements of whatever memory followed."""
        t = next(t for t in tensors(g) if t.args[2] == (128, 512))
        victim = tensors(g)[tensors(g).index(t) + 1]
        victim.args[0].state = {"data": t}
        victim.args = (victim.args[0], 127, (128 * 512 - 128,), (1,)) + victim.args[4:]

    def arg(i, value):
        def edit(g):
            t = tensors(g)[0]
            t.args = t.args[:i] + (value,) + t.args[i + 1:]
        return edit

    case("ada_swapped_storage.pkl", swap_storage, "takes none")
    case("ada_build_on_tensor.pkl",
         lambda g: setattr(tensors(g)[0], "state", {"array": None}), "takes none")
    case("ada_build_on_network.pkl",
         lambda g: setattr(R.calls(g, "_reconstruct_persistent_obj")[1], "state", {"state": {}}),
         "takes none")
    case("ada_negative_stride.pkl", arg(3, (-10**8, 4, 1)), "stride")
    case("ada_huge_stride.pkl", arg(3, (10**12, 4, 1)), "reaches")
    case("ada_offset_past_end.pkl", arg(1, 10**9), "reaches")
    return cases


# ------------------------------------------------------------------------------------------
# The fuzz (run in the child)


def _ops(data: bytes, start: int = 0) -> list:
    """(position, end) of each opcode of the pickles back to back in ``data[start:]``, up to
    the first byte that is not one."""
    out, f = [], io.BytesIO(data)
    f.seek(start)
    try:
        while f.tell() < len(data) and data[f.tell()] == 0x80:
            ops = list(pickletools.genops(f))
            out += [(p, q) for (_, _, p), (_, _, q) in zip(ops, ops[1:] + [(0, 0, f.tell())])]
    except Exception:  # raw storage bytes follow the pickles of a legacy file
        pass
    return out


def _mutate(data: bytes, ops: list, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(["flip", "opswap", "argflip", "argflip", "truncate"])
    b = bytearray(data)
    if kind == "truncate":
        return kind, bytes(b[:rng.randrange(len(b))])
    if kind == "flip" or not ops:
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return "flip", bytes(b)
    pos, end = rng.choice(ops)
    if kind == "opswap":
        b[pos:pos + 1] = rng.choice(_OPCODES)
    else:  # a length, an int, a memo index, the text of a global
        b[rng.randrange(pos + 1, max(pos + 2, min(end, pos + 9)))] = rng.randrange(256)
    return kind, bytes(b)


def _fuzz_cases(base: pathlib.Path, rng: random.Random):
    data = base.read_bytes()
    if data[:2] == b"PK":  # mutate the pickle inside (the zip's CRCs then still hold)
        with zipfile.ZipFile(base) as zf:
            records = {n: zf.read(n) for n in zf.namelist()}
        name = next(n for n in records if n.endswith("data.pkl"))
        ops = _ops(records[name])
        for _ in range(CASES_PER_FILE):
            kind, pkl = _mutate(records[name], ops, rng)
            if rng.random() < 0.1:
                kind, out = "zipflip", _mutate(data, [], rng)[1]
            else:
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
                    for n, d in records.items():
                        zf.writestr(n, pkl if n == name else d)
                out = buf.getvalue()
            yield kind, out
        return
    ops = _ops(data)
    for _ in range(CASES_PER_FILE):
        yield _mutate(data, ops, rng)


def _load(reader: str, path: str):
    from pulse_jax import weights
    from pulse_jax.weights.torch.files import load_torch_file
    return load_torch_file(path) if reader == "torch" else weights.import_nvidia(path)


def _outcome(reader, path):
    try:
        _load(reader, path)
        return "ok", ""
    except Exception as e:  # noqa: BLE001 - the test checks the type
        return type(e).__name__, str(e)[:300]


def child(spec_path: str) -> None:
    """Loads every crafted and mutated file, one JSON line per case (after a 'start' line)."""
    import faulthandler
    faulthandler.enable()
    spec = json.loads(pathlib.Path(spec_path).read_text())

    def emit(**rec):
        print(json.dumps(rec), flush=True)

    for path, reader, _ in spec["crafted"]:
        emit(start=path)
        emit(case=path, crafted=True, outcome=_outcome(reader, path))
    rng = random.Random(spec["seed"])
    scratch = pathlib.Path(spec["scratch"])
    for base, reader in spec["bases"]:
        for i, (kind, data) in enumerate(_fuzz_cases(pathlib.Path(base), rng)):
            name = f"{pathlib.Path(base).name}#{i}:{kind}"
            path = scratch / (pathlib.Path(base).name + ".fuzz")
            path.write_bytes(data)
            emit(start=name)
            emit(case=name, base=pathlib.Path(base).name, outcome=_outcome(reader, str(path)))


# ------------------------------------------------------------------------------------------
# The tests (in the pytest process)


def test_views_are_checked_where_they_are_made():
    """tensor_copy, the one place a view is made, refuses any data but a flat contiguous
    array and any view outside it, whatever the caller checked before."""
    import numpy as np
    from pulse_jax.weights.safe_pickle import FormatProblem
    from pulse_jax.weights.torch.storage import tensor_copy
    flat = np.arange(12, dtype=np.float32)
    np.testing.assert_array_equal(tensor_copy(flat, 1, (2, 3), (1, 2)),
                                  np.array([[1, 3, 5], [2, 4, 6]], np.float32))
    # A size-1 dimension's stride is never used (torch writes any), however large.
    np.testing.assert_array_equal(tensor_copy(flat, 11, (1, 1), (10**30, 10**30)), [[11]])
    for data in (flat.reshape(3, 4), np.asfortranarray(flat.reshape(3, 4)), flat[::2], [1.0]):
        with pytest.raises(FormatProblem, match="flat storage"):
            tensor_copy(data, 0, (2,), (1,))
    for args, match in (((12, (1,), (1,)), "reaches"), ((0, (2,), (12,)), "reaches"),
                        ((0, (2,), (-1,)), "stride"), ((-1, (1,), (1,)), "offset"),
                        ((0, (13,), (0,)), "more elements"), ((0, (2, 2), (1,)), "lengths"),
                        ((True, (1,), (1,)), "offset"), ((0, (2.0,), (1,)), "size")):
        with pytest.raises(FormatProblem, match=match):
            tensor_copy(flat, *args)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(crafted cases, fuzz bases): files in a temporary folder, the committed ones by path."""
    from test_nvidia_pickle import _fake_dnnlib
    from test_tf_stylegan2 import NAMES, tf_tables, write_tf_pickle
    d = tmp_path_factory.mktemp("fuzz")
    crafted = _crafted_torch(d) + _crafted_ada(d)
    (d / "ada.pkl").write_bytes(ADA.read_bytes())
    write_tf_pickle(d / "tf.pkl", tf_tables("res32_clamp_map3"),  # a small TF StyleGAN2 Gs
                    NAMES["res32_clamp_map3"]["tf_static_kwargs"], _fake_dnnlib(), protocol=2)
    bases = [(str(d / n if n in ("ada.pkl", "tf.pkl") else DATA / n), reader)
             for n, reader in FUZZ_BASES.items()]
    return d, crafted, bases


@pytest.fixture(scope="module")
def fuzz_run(corpus):
    d, crafted, bases = corpus
    spec = d / "spec.json"
    spec.write_text(json.dumps({"crafted": crafted, "bases": bases, "seed": SEED,
                                "scratch": str(d)}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]),
               JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, "-X", "faulthandler", __file__, str(spec)], env=env,
                       capture_output=True, text=True, timeout=600)
    records = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    started = [r["start"] for r in records if "start" in r]
    assert p.returncode == 0, (f"the child died (status {p.returncode}) in case "
                               f"{started[-1] if started else None}:\n{p.stderr[-3000:]}")
    return {r["case"]: r for r in records if "case" in r}


def test_crafted_files_raise_one_clear_error(corpus, fuzz_run):
    _, crafted, _ = corpus
    assert len(crafted) == 21
    for path, _, match in crafted:
        kind, message = fuzz_run[path]["outcome"]
        assert kind == "CheckpointFormatError", (path, kind, message)
        assert match in message and pathlib.Path(path).name in message, (path, message)


def test_fuzzed_files_load_or_raise_the_documented_error(fuzz_run):
    fuzzed = [r for r in fuzz_run.values() if not r.get("crafted")]
    assert len(fuzzed) == CASES_PER_FILE * len(FUZZ_BASES)
    bad = [(r["case"], r["outcome"]) for r in fuzzed if r["outcome"][0] not in OK_OUTCOMES]
    assert not bad, bad[:5]
    for base in FUZZ_BASES:  # the mutations reach past the first check of every file
        messages = {r["outcome"][1].split(":", 1)[-1][:40] for r in fuzzed if r["base"] == base}
        assert len(messages) >= 5, (base, messages)


def test_convert_command_on_crafted_files(corpus, tmp_path):
    """Each crafted file: `pulse-jax convert` exits 2 with one message line, no traceback
    (run in one child through cli.run; the first file also through the console entry point)."""
    import fakes
    _, crafted, _ = corpus
    script = (
        "import contextlib, io, json, sys\n"
        "from pulse_jax import cli\n"
        "for path, reader, out in json.loads(sys.argv[1]):\n"
        "    err = io.StringIO()\n"
        "    flag = '--synthesis' if reader == 'torch' else '--nvidia'\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        status = cli.run(['convert', f'{flag}={path}', f'--output={out}'])\n"
        "    print(json.dumps([path, status, err.getvalue()]), flush=True)\n")
    jobs = [(path, reader, str(tmp_path / f"out{i}")) for i, (path, reader, _) in
            enumerate(crafted)]
    env = fakes.subprocess_env()
    p = fakes.run_python(["-c", script, json.dumps(jobs)], env)
    assert p.returncode == 0, p.stderr[-3000:]
    results = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(results) == len(crafted)
    for path, status, err in results:
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1 and "Traceback" not in err, (path, status, err)
        assert lines[0].startswith("pulse-jax: cannot convert: ") and path in lines[0]
        assert not any(tmp_path.glob("out*")), "nothing is written for a refused file"
    path, reader, _ = crafted[-1]
    p = fakes.run_python(["-m", "pulse_jax.cli", "convert", f"--nvidia={path}",
                          f"--output={tmp_path / 'console'}"], env)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr and "reaches" in p.stderr


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))  # the repository comes from PYTHONPATH
    child(sys.argv[1])
