"""Tests for pulse_jax.weights.torch.files: reading PyTorch .pt files safely without torch.

Real files written by PyTorch (tests/data) check the common paths. Hand-made files, written by
the small fake-torch writer below (fake ``torch`` modules are put in ``sys.modules`` only while
pickling), check strides, offsets, shared storages, views, dtypes, byte order, the newer
UntypedStorage form, and the refusal of malicious or damaged input.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import types
import zipfile

import numpy as np
import pytest

from pulse_jax.weights.torch import files as torch_files
from pulse_jax.weights.errors import CheckpointFormatError, UnsafePickleError
from pulse_jax.weights.torch.files import load_torch_file

from helpers import modules_installed

# ---------------------------------------------------------------------------------------------
# Real files written by PyTorch


@pytest.mark.parametrize("name,prefix,count", [
    ("small_seed0_synthesis.pt", "synthesis/", 67),
    ("small_seed0_mapping.pt", "mapping/", 16),
])
def test_zip_state_dicts_equal_npz(data_dir, ref, name, prefix, count):
    sd = load_torch_file(data_dir / name)
    assert type(sd) is dict
    expected = [k[len(prefix):] for k in ref if k.startswith(prefix)]
    assert len(sd) == count == len(expected)
    assert sorted(sd) == sorted(expected)
    for key, value in sd.items():
        want = ref[prefix + key]
        assert isinstance(value, np.ndarray), key
        assert value.dtype == want.dtype == np.float32, key
        assert value.shape == want.shape, key
        assert value.flags.c_contiguous
        np.testing.assert_array_equal(value, want, err_msg=key)


def test_zip_key_order_is_the_saved_order(data_dir):
    sd = load_torch_file(data_dir / "small_seed0_mapping.pt")
    assert list(sd) == [f"dense{i}.{p}" for i in range(8) for p in ("weight", "bias")]


def test_legacy_gaussian_fit_equals_npz(data_dir, ref):
    fit = load_torch_file(data_dir / "small_seed0_gaussian_fit_legacy.pt")
    assert type(fit) is dict and list(fit) == ["mean", "std"]
    for k in ("mean", "std"):
        assert fit[k].dtype == np.float32 and fit[k].shape == (512,)
        np.testing.assert_array_equal(fit[k], ref[f"gaussian/{k}"])


def test_pulse_repo_gaussian_fit_cuda_windows(data_dir):
    fit = load_torch_file(data_dir / "pulse_repo_gaussian_fit.pt")
    mean, std = fit["mean"], fit["std"]
    assert mean.shape == std.shape == (512,) and mean.dtype == std.dtype == np.float32
    tol = dict(rtol=0, atol=5e-6)
    np.testing.assert_allclose(mean.min(), -0.84311, **tol)
    np.testing.assert_allclose(mean.max(), 0.10714, **tol)
    np.testing.assert_allclose(mean[:5], [-0.24334, -0.14447, -0.28072, -0.30074, -0.34540], **tol)
    np.testing.assert_allclose(std.min(), 0.31194, **tol)
    np.testing.assert_allclose(std.max(), 0.77489, **tol)
    np.testing.assert_allclose(std[:5], [0.54533, 0.44219, 0.45437, 0.46670, 0.54586], **tol)


# ---------------------------------------------------------------------------------------------
# A fake-torch writer (pickling only; the loader never sees these modules)


def _fn(module: str, name: str):
    def f(*args):  # never called: only pickled by reference
        raise AssertionError("fake torch function called")
    f.__module__, f.__name__, f.__qualname__ = module, name, name
    return f


class _FakeDType:
    __module__ = "torch"

    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return self.name  # pickled as the global torch.<name>, like real torch dtypes


def _fake_torch_modules() -> dict[str, types.ModuleType]:
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    tensor = types.ModuleType("torch._tensor")
    storage = types.ModuleType("torch.storage")
    for name in ("FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage",
                 "IntStorage", "ByteStorage", "BoolStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    storage.UntypedStorage = type("UntypedStorage", (), {"__module__": "torch.storage"})
    for name in ("float32", "uint16", "bfloat16"):
        setattr(torch, name, _FakeDType(name))
    for name in ("_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter"):
        setattr(utils, name, _fn("torch._utils", name))
    tensor._rebuild_from_type_v2 = _fn("torch._tensor", "_rebuild_from_type_v2")
    tensor.Tensor = type("Tensor", (), {"__module__": "torch._tensor"})
    torch._utils, torch._tensor, torch.storage = utils, tensor, storage
    return {"torch": torch, "torch._utils": utils, "torch._tensor": tensor, "torch.storage": storage}


T = _fake_torch_modules()


class FStorage:
    def __init__(self, kind: str, data: np.ndarray, key: str, location: str = "cpu"):
        self.kind, self.data, self.key, self.location = kind, np.ascontiguousarray(data), key, location

    @property
    def numel(self):
        return self.data.size if self.kind != "UntypedStorage" else self.data.nbytes

    @property
    def cls(self):
        return getattr(T["torch.storage"] if self.kind == "UntypedStorage" else T["torch"], self.kind)


class FView:
    """A legacy storage view: ``size`` elements of ``base`` from element ``offset``."""

    def __init__(self, base: FStorage, key: str, offset: int, size: int):
        self.base, self.key, self.offset, self.size = base, key, offset, size


class FTensor:
    def __init__(self, storage, offset, size, stride, how="v2", dtype=None):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.how, self.dtype = how, dtype

    def __reduce__(self):
        u = T["torch._utils"]
        args = (self.storage, self.offset, tuple(self.size), tuple(self.stride), False,
                collections.OrderedDict())
        if self.how == "v2":
            return u._rebuild_tensor_v2, args
        if self.how == "v3":
            return u._rebuild_tensor_v3, args + (getattr(T["torch"], self.dtype),)
        if self.how == "param":
            return u._rebuild_parameter, (FTensor(*self._plain()), True, collections.OrderedDict())
        if self.how == "from_type":
            return (T["torch._tensor"]._rebuild_from_type_v2,
                    (u._rebuild_tensor_v2, T["torch._tensor"].Tensor, args, {}))
        raise ValueError(self.how)

    def _plain(self):
        return self.storage, self.offset, self.size, self.stride


class _Pickler(pickle.Pickler):
    def __init__(self, f, legacy: bool):
        super().__init__(f, protocol=2)
        self.legacy = legacy
        self.storages: dict[str, FStorage] = {}

    def persistent_id(self, obj):
        if isinstance(obj, FView):
            self.storages[obj.base.key] = obj.base
            return ("storage", obj.base.cls, obj.base.key, obj.base.location, obj.base.numel,
                    (obj.key, obj.offset, obj.size))
        if isinstance(obj, FStorage):
            self.storages[obj.key] = obj
            rec = ("storage", obj.cls, obj.key, obj.location, obj.numel)
            return rec + (None,) if self.legacy else rec
        return None


def _storage_bytes(st: FStorage, big: bool = False) -> bytes:
    d = st.data
    if big and d.dtype.itemsize > 1:
        return d.byteswap().tobytes()
    return d.tobytes()


def write_zip(path, obj, folder="archive", byteorder="little", mutate=None, extra=None):
    buf = io.BytesIO()
    with modules_installed(T):
        p = _Pickler(buf, legacy=False)
        p.dump(obj)
    records = {f"{folder}/data.pkl": buf.getvalue(), f"{folder}/byteorder": byteorder.encode()}
    for key, st in p.storages.items():
        records[f"{folder}/data/{key}"] = _storage_bytes(st, big=byteorder == "big")
    records[f"{folder}/version"] = b"3\n"
    if extra:
        records.update(extra)
    if mutate:
        mutate(records)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in records.items():
            zf.writestr(name, data)
    return path


def write_legacy(path, obj, sys_info=None, keys=None, truncate_storage=None, count_delta=0):
    f = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
    pickle.dump(1001, f, protocol=2)
    pickle.dump(sys_info or {"protocol_version": 1001, "little_endian": True,
                             "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
    with modules_installed(T):
        p = _Pickler(f, legacy=True)
        p.dump(obj)
    keys = list(p.storages) if keys is None else keys
    pickle.dump(keys, f, protocol=2)
    for key in keys:
        st = p.storages[key]
        f.write(struct.pack("<q", st.numel + count_delta))
        data = _storage_bytes(st)
        if truncate_storage == key:
            data = data[: len(data) // 2]
        f.write(data)
    path.write_bytes(f.getvalue())
    return path


# ---------------------------------------------------------------------------------------------
# Layout: strides, offsets, shared storages, views, dtypes, byte order


def _layout_obj():
    base = np.arange(2 + 12, dtype=np.float32) * 0.5 - 3.0  # 14 floats
    st = FStorage("FloatStorage", base, "0", "cuda:0")
    ints = FStorage("LongStorage", np.array([7, -1, 2**40, 5], dtype=np.int64), "1")
    obj = collections.OrderedDict()
    obj["contig"] = FTensor(st, 2, (3, 4), (4, 1))          # rows of base[2:14]
    obj["transposed"] = FTensor(st, 2, (4, 3), (1, 4))      # the transpose, same storage
    obj["strided"] = FTensor(st, 1, (2, 2), (6, 2))         # a non-contiguous slice
    obj["scalar"] = FTensor(st, 13, (), ())
    obj["empty"] = FTensor(st, 0, (0, 5), (5, 1))
    obj["ints"] = FTensor(ints, 0, (4,), (1,))
    obj["param"] = FTensor(st, 0, (2,), (1,), how="param")
    obj["from_type"] = FTensor(st, 4, (3,), (2,), how="from_type")
    obj["nested"] = {"list": [FTensor(ints, 1, (2,), (2,)), 3, "x"], "tuple": (1.5, None)}
    return obj, base


def _check_layout(out, base):
    assert type(out) is dict and type(out["nested"]) is dict
    c = base[2:14].reshape(3, 4)
    np.testing.assert_array_equal(out["contig"], c)
    np.testing.assert_array_equal(out["transposed"], c.T)
    assert out["transposed"].flags.c_contiguous
    np.testing.assert_array_equal(out["strided"], np.array([[base[1], base[3]], [base[7], base[9]]]))
    assert out["scalar"].shape == () and out["scalar"] == base[13]
    assert out["empty"].shape == (0, 5) and out["empty"].dtype == np.float32
    assert out["ints"].dtype == np.int64
    np.testing.assert_array_equal(out["ints"], [7, -1, 2**40, 5])
    np.testing.assert_array_equal(out["param"], base[:2])
    np.testing.assert_array_equal(out["from_type"], base[[4, 6, 8]])
    np.testing.assert_array_equal(out["nested"]["list"][0], [-1, 5])
    assert out["nested"]["list"][1:] == [3, "x"] and out["nested"]["tuple"] == (1.5, None)
    # Tensors that shared a storage must not share memory once loaded.
    out["contig"][0, 0] = 99
    assert out["transposed"][0, 0] == c[0, 0]


def test_zip_strides_offsets_and_wrappers(tmp_path):
    obj, base = _layout_obj()
    _check_layout(load_torch_file(write_zip(tmp_path / "a.pt", obj, folder="any_name_here")), base)


def test_legacy_strides_offsets_and_wrappers(tmp_path):
    obj, base = _layout_obj()
    _check_layout(load_torch_file(write_legacy(tmp_path / "a.pt", obj)), base)


def test_legacy_storage_views(tmp_path):
    base = np.arange(10, dtype=np.float64)
    st = FStorage("DoubleStorage", base, "root")
    view = FView(st, "view1", 3, 5)  # elements 3..7 of the root storage
    obj = {"a": FTensor(view, 1, (2, 2), (2, 1)), "b": FTensor(st, 0, (10,), (1,))}
    out = load_torch_file(write_legacy(tmp_path / "v.pt", obj))
    np.testing.assert_array_equal(out["a"], [[4, 5], [6, 7]])
    np.testing.assert_array_equal(out["b"], base)
    assert out["a"].dtype == np.float64


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_zip_dtypes_and_byteorder(tmp_path, byteorder):
    rng = np.random.default_rng(0)
    arrays = {
        "DoubleStorage": rng.standard_normal(6),
        "FloatStorage": rng.standard_normal(6).astype(np.float32),
        "HalfStorage": rng.standard_normal(6).astype(np.float16),
        "LongStorage": rng.integers(-2**60, 2**60, 6),
        "IntStorage": rng.integers(-2**30, 2**30, 6).astype(np.int32),
        "ByteStorage": rng.integers(0, 255, 6).astype(np.uint8),
        "BoolStorage": np.array([True, False, True, True, False, False]),
    }
    obj = {k: FTensor(FStorage(k, v, str(i)), 0, (2, 3), (3, 1)) for i, (k, v) in enumerate(arrays.items())}
    bf = np.array([1.0, -2.5, 3.25, 0.0], dtype=np.float32)
    bf_bits = (bf.view(np.uint32) >> 16).astype(np.uint16)  # exact in bfloat16
    obj["bf16"] = FTensor(FStorage("BFloat16Storage", bf_bits, "bf"), 0, (4,), (1,))
    u16 = np.array([1, 2, 65535, 256], dtype=np.uint16)
    u16_raw = (u16.astype(">u2") if byteorder == "big" else u16).view(np.uint8)  # untyped: bytes
    obj["v3_u16"] = FTensor(FStorage("UntypedStorage", u16_raw, "u"), 1, (3,), (1,),
                            how="v3", dtype="uint16")
    out = load_torch_file(write_zip(tmp_path / "d.pt", obj, byteorder=byteorder))
    for k, v in arrays.items():
        assert out[k].dtype == v.dtype.newbyteorder("=") and out[k].dtype.byteorder in "=|<", k
        np.testing.assert_array_equal(out[k], v.reshape(2, 3), err_msg=k)
    assert out["bf16"].dtype.name == "bfloat16"
    np.testing.assert_array_equal(out["bf16"].astype(np.float32), bf)
    assert out["v3_u16"].dtype == np.uint16
    np.testing.assert_array_equal(out["v3_u16"], u16[1:])


def test_ordered_dict_metadata_build_is_accepted(tmp_path):
    # torch.save(module.state_dict()) pickles an OrderedDict carrying a `_metadata` attribute:
    # GLOBAL collections.OrderedDict, REDUCE, SETITEMS, then BUILD with {'_metadata': ...}.
    class SD(collections.OrderedDict):
        def __reduce__(self):
            return (collections.OrderedDict, (), {"_metadata": self._metadata}, None,
                    iter(self.items()))

    sd = SD()
    sd["w"] = FTensor(FStorage("FloatStorage", np.ones(3, np.float32), "0"), 0, (3,), (1,))
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    path = write_zip(tmp_path / "m.pt", sd)
    with zipfile.ZipFile(path) as zf:
        assert b"b." in zf.read("archive/data.pkl")[-4:]  # ends with BUILD, STOP
    out = load_torch_file(path)
    assert type(out) is dict and list(out) == ["w"]
    np.testing.assert_array_equal(out["w"], np.ones(3))


# ---------------------------------------------------------------------------------------------
# Malicious pickles


class _Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


def _evil_payloads(marker):
    return [
        _Evil(os.system, f"touch {marker}"),
        _Evil(eval, f"open({str(marker)!r}, 'w').close()"),
        _Evil(exec, f"open({str(marker)!r}, 'w').close()"),
    ]


def _evil_globals():
    return ["system", "eval", "exec"]


def test_malicious_payload_is_live_with_plain_pickle(tmp_path):
    """Sanity check of the test payloads: an unrestricted unpickler does create the marker."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_evil_payloads(marker)[1], protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("which", range(3))
def test_malicious_zip_refused_before_running(tmp_path, which):
    marker = tmp_path / "pwned"
    evil = _evil_payloads(marker)[which]
    obj = collections.OrderedDict(w=FTensor(FStorage("FloatStorage", np.ones(2, np.float32), "0"),
                                            0, (2,), (1,)), evil=evil)
    path = write_zip(tmp_path / "evil.pt", obj)
    with pytest.raises(UnsafePickleError) as ei:
        load_torch_file(path)
    assert _evil_globals()[which] in str(ei.value) and "evil.pt" in str(ei.value)
    assert not marker.exists()


def test_malicious_data_pkl_swapped_into_real_archive(tmp_path, data_dir):
    marker = tmp_path / "pwned"
    src = zipfile.ZipFile(data_dir / "small_seed0_mapping.pt")
    dst_path = tmp_path / "swapped.pt"
    with zipfile.ZipFile(dst_path, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                data = pickle.dumps(_Evil(os.system, f"touch {marker}"), protocol=2)
            dst.writestr(info.filename, data)
    with pytest.raises(UnsafePickleError, match=r"posix\.system|os\.system|nt\.system"):
        load_torch_file(dst_path)
    assert not marker.exists()


@pytest.mark.parametrize("which", range(3))
def test_malicious_legacy_refused_before_running(tmp_path, which):
    marker = tmp_path / "pwned"
    obj = {"mean": _evil_payloads(marker)[which]}
    with pytest.raises(UnsafePickleError, match=_evil_globals()[which]):
        load_torch_file(write_legacy(tmp_path / "evil.pt", obj))
    assert not marker.exists()


def test_malicious_legacy_header_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_header.pt"
    path.write_bytes(pickle.dumps(_Evil(os.system, f"touch {marker}"), protocol=2))
    with pytest.raises(UnsafePickleError, match="system"):
        load_torch_file(path)
    assert not marker.exists()


def test_other_forbidden_globals(tmp_path):
    import subprocess

    for fn in (subprocess.Popen, getattr, __import__, np.load):
        path = tmp_path / "e.pt"
        path.write_bytes(pickle.dumps(_Evil(fn, "x"), protocol=2))
        with pytest.raises(UnsafePickleError):
            load_torch_file(path)


# ---------------------------------------------------------------------------------------------
# Damaged files


@pytest.mark.parametrize("name", ["small_seed0_mapping.pt", "small_seed0_gaussian_fit_legacy.pt",
                                  "pulse_repo_gaussian_fit.pt"])
def test_truncated_files(tmp_path, data_dir, name):
    data = (data_dir / name).read_bytes()
    n = len(data)
    for cut in sorted({1, 2, 10, 30, 100, 200, 300, 420, 460, 470, n // 3, n // 2, n - 100, n - 22,
                       n - 1}):
        p = tmp_path / f"cut{cut}.pt"
        p.write_bytes(data[:cut])
        with pytest.raises(CheckpointFormatError) as ei:
            load_torch_file(p)
        assert f"cut{cut}.pt" in str(ei.value)


def test_garbage_and_empty(tmp_path):
    rng = np.random.default_rng(1)
    for i, prefix in enumerate([b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x02\x8a\x0a", b"hello"]):
        p = tmp_path / f"g{i}.pt"
        p.write_bytes(prefix + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
        with pytest.raises(CheckpointFormatError):
            load_torch_file(p)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointFormatError, match="empty"):
        load_torch_file(empty)
    with pytest.raises(CheckpointFormatError, match="cannot open"):
        load_torch_file(tmp_path / "does_not_exist.pt")


def test_corrupted_byte_in_zip_record(tmp_path, data_dir):
    data = bytearray((data_dir / "small_seed0_mapping.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside a storage record: CRC mismatch
    p = tmp_path / "flip.pt"
    p.write_bytes(bytes(data))
    with pytest.raises(CheckpointFormatError, match="flip.pt"):
        load_torch_file(p)


def _one_tensor():
    return {"w": FTensor(FStorage("FloatStorage", np.arange(8, dtype=np.float32), "0"), 0, (8,), (1,)),
            "b": FTensor(FStorage("FloatStorage", np.arange(3, dtype=np.float32), "1"), 0, (3,), (1,))}


def test_zip_storage_shorter_than_declared(tmp_path):
    def shorten(records):
        records["archive/data/0"] = records["archive/data/0"][:-4]

    with pytest.raises(CheckpointFormatError, match=r"data/0.*28 bytes.*needs 32"):
        load_torch_file(write_zip(tmp_path / "s.pt", _one_tensor(), mutate=shorten))


def test_zip_missing_storage_record(tmp_path):
    def drop(records):
        del records["archive/data/1"]

    with pytest.raises(CheckpointFormatError, match="missing archive record 'archive/data/1'"):
        load_torch_file(write_zip(tmp_path / "m.pt", _one_tensor(), mutate=drop))


def test_zip_without_data_pkl(tmp_path):
    p = tmp_path / "nopkl.pt"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("archive/data/0", b"1234")
    with pytest.raises(CheckpointFormatError, match="data.pkl"):
        load_torch_file(p)


def test_tensor_outside_its_storage(tmp_path):
    st = FStorage("FloatStorage", np.zeros(4, np.float32), "0")
    obj = {"w": FTensor(st, 2, (2, 2), (2, 1))}  # needs elements 2..5 of 4
    with pytest.raises(CheckpointFormatError, match="storage '0' which has only 4"):
        load_torch_file(write_zip(tmp_path / "o.pt", obj))
    with pytest.raises(CheckpointFormatError, match="only 4"):
        load_torch_file(write_legacy(tmp_path / "o2.pt", obj))


def test_legacy_missing_and_short_storage_records(tmp_path):
    with pytest.raises(CheckpointFormatError, match="missing storage record for key '1'"):
        load_torch_file(write_legacy(tmp_path / "a.pt", _one_tensor(), keys=["0"]))
    with pytest.raises(CheckpointFormatError, match="file ends inside storage '1'"):
        load_torch_file(write_legacy(tmp_path / "b.pt", _one_tensor(), truncate_storage="1"))
    with pytest.raises(CheckpointFormatError, match="declares 8 elements"):
        load_torch_file(write_legacy(tmp_path / "c.pt", _one_tensor(), count_delta=1))


def test_legacy_bad_magic_and_protocol(tmp_path):
    p = tmp_path / "magic.pt"
    p.write_bytes(pickle.dumps(12345, protocol=2))
    with pytest.raises(CheckpointFormatError, match="magic"):
        load_torch_file(p)
    p.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(7, protocol=2))
    with pytest.raises(CheckpointFormatError, match="protocol version 7"):
        load_torch_file(p)


def test_unknown_persistent_record(tmp_path):
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("module", "x", "y") if obj == "M" else None

    f = io.BytesIO()
    P(f, protocol=2).dump({"m": "M"})
    p = tmp_path / "pid.pt"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("archive/data.pkl", f.getvalue())
    with pytest.raises(CheckpointFormatError, match="persistent record"):
        load_torch_file(p)


def test_public_names():
    assert torch_files.CheckpointFormatError is CheckpointFormatError
    assert issubclass(UnsafePickleError, CheckpointFormatError)
    assert issubclass(CheckpointFormatError, ValueError)
