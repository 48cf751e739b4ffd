"""``weights.read_gaussian_fit``: PULSE's ``gaussian_fit.pt`` read and checked in one place
(``import_pulse`` and ``pulse-jax convert --gaussian_fit`` both use it), and the layout of
``pulse_jax/weights`` that keeps its modules from importing their package back."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from pulse_jax import weights
from pulse_jax.weights import StateDictError, import_pulse, read_gaussian_fit
from pulse_jax.weights.errors import CheckpointFormatError
from pulse_jax.weights.torch.files import load_torch_file

from test_torch_files import FStorage, FTensor, write_zip

D = 512  # the fixtures' latent size (PULSE's FFHQ generator)


def _tensor(values: np.ndarray, key: str) -> FTensor:
    values = np.asarray(values, np.float32)
    return FTensor(FStorage("FloatStorage", values.ravel(), key), 0, values.shape,
                   tuple(s // 4 for s in values.strides))


def _fit_file(path: pathlib.Path, **arrays: np.ndarray) -> pathlib.Path:
    return write_zip(path, {k: _tensor(v, str(i)) for i, (k, v) in enumerate(arrays.items())})


def test_good_files_read_as_saved(data_dir, ref):
    fit = read_gaussian_fit(data_dir / "small_seed0_gaussian_fit_legacy.pt", D)
    assert list(fit) == ["mean", "std"]
    for k in ("mean", "std"):
        assert fit[k].dtype == np.float32 and fit[k].shape == (D,)
        np.testing.assert_array_equal(fit[k], ref[f"gaussian/{k}"])
    raw = load_torch_file(data_dir / "pulse_repo_gaussian_fit.pt")  # PULSE's own, cuda:0
    fit = read_gaussian_fit(data_dir / "pulse_repo_gaussian_fit.pt", D)
    for k in ("mean", "std"):
        np.testing.assert_array_equal(fit[k], raw[k])


def test_written_file_round_trips(tmp_path):
    mean, std = np.linspace(-1, 1, 8), np.linspace(0.1, 2, 8)
    fit = read_gaussian_fit(_fit_file(tmp_path / "fit.pt", mean=mean, std=std), 8)
    np.testing.assert_array_equal(fit["mean"], mean.astype(np.float32))
    np.testing.assert_array_equal(fit["std"], std.astype(np.float32))


def test_wrong_keys_name_the_file_and_the_keys(tmp_path):
    path = _fit_file(tmp_path / "keys.pt", mean=np.zeros(8), sd=np.ones(8))
    with pytest.raises(StateDictError, match=r"keys\.pt: gaussian_fit must be a dict with keys "
                                             r"'mean' and 'std', found \['mean', 'sd'\]"):
        read_gaussian_fit(path, 8)
    extra = _fit_file(tmp_path / "extra.pt", mean=np.zeros(8), std=np.ones(8), n=np.ones(1))
    with pytest.raises(StateDictError, match=r"extra\.pt.*found \['mean', 'n', 'std'\]"):
        read_gaussian_fit(extra, 8)


def test_not_a_dict(tmp_path):
    path = write_zip(tmp_path / "tensor.pt", _tensor(np.zeros(8), "0"))
    with pytest.raises(StateDictError, match=r"tensor\.pt: gaussian_fit must be a dict.*ndarray"):
        read_gaussian_fit(path, 8)


def test_wrong_shape_names_the_key_and_both_shapes(tmp_path, data_dir):
    with pytest.raises(StateDictError, match=r"pulse_repo_gaussian_fit\.pt: gaussian_fit key "
                                             r"'mean': expected shape \(256,\), found \(512,\)"):
        read_gaussian_fit(data_dir / "pulse_repo_gaussian_fit.pt", 256)
    path = _fit_file(tmp_path / "shape.pt", mean=np.zeros(8), std=np.ones((2, 4)))
    with pytest.raises(StateDictError, match=r"key 'std': expected shape \(8,\), found \(2, 4\)"):
        read_gaussian_fit(path, 8)


def test_values_that_are_not_finite(tmp_path):
    std = np.ones(8)
    std[[2, 5]] = [np.nan, np.inf]
    path = _fit_file(tmp_path / "nan.pt", mean=np.zeros(8), std=std)
    with pytest.raises(StateDictError, match=r"nan\.pt: gaussian_fit key 'std': 2 of 8 values "
                                             r"are not finite"):
        read_gaussian_fit(path, 8)


def test_damaged_file_is_a_format_error(tmp_path, data_dir):
    cut = tmp_path / "cut.pt"
    cut.write_bytes((data_dir / "pulse_repo_gaussian_fit.pt").read_bytes()[:300])
    with pytest.raises(CheckpointFormatError, match=r"cut\.pt"):
        read_gaussian_fit(cut, D)


def test_import_pulse_checks_the_fit_file_the_same_way(tmp_path, data_dir, ref):
    syn = data_dir / "small_seed0_synthesis.pt"
    gen = import_pulse(syn, gaussian_fit_path=data_dir / "small_seed0_gaussian_fit_legacy.pt")
    np.testing.assert_array_equal(np.asarray(gen.gaussian_fit["std"]), ref["gaussian/std"])
    std = np.ones(D)
    std[0] = np.nan
    bad = _fit_file(tmp_path / "bad_fit.pt", mean=np.zeros(D), std=std)
    with pytest.raises(StateDictError, match=r"bad_fit\.pt: gaussian_fit key 'std'"):
        import_pulse(syn, gaussian_fit_path=bad)


def test_in_memory_fit_is_checked_too(data_dir):
    syn = load_torch_file(data_dir / "small_seed0_synthesis.pt")
    mean = np.zeros(D)
    mean[3] = np.inf
    with pytest.raises(StateDictError, match=r"gaussian_fit key 'mean': 1 of 512 values"):
        weights.from_pulse_state_dicts(syn, None, {"mean": mean, "std": np.ones(D)})


def test_public():
    assert "read_gaussian_fit" in weights.__all__
    assert weights.read_gaussian_fit is read_gaussian_fit


def _imports(path: pathlib.Path, package: str) -> list[tuple[str, list[str]]]:
    """``(module, names)`` for every import statement in ``path``, relative ones resolved."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level \
                else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.append((module, [a.name for a in node.names]))
    return out


def test_no_weights_module_imports_its_package_back():
    """Only the package's ``__init__`` gathers names; its modules import each other directly
    (a module reading names from ``pulse_jax.weights`` would depend on import order)."""
    root = pathlib.Path(weights.__file__).parent
    submodules = {p.stem for p in root.iterdir()}
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "__init__.py":
            continue
        parts = path.relative_to(root.parent.parent).with_suffix("").parts
        package = ".".join(parts[:-1])
        for module, names in _imports(path, package):
            if module == "pulse_jax" and "weights" in names:
                offenders.append(f"{path.name}: from pulse_jax import weights")
            if module == "pulse_jax.weights" and not set(names) <= submodules:
                offenders.append(f"{path.name}: from pulse_jax.weights import {names}")
    assert offenders == []
