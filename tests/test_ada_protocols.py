"""StyleGAN2-ADA pickles at every pickle protocol NVIDIA's or a user's Python may have written
(2 to 5), with numpy 1 (``numpy.core``) and numpy 2 (``numpy._core``) module names.

data/sg2/sg2ada_res64_seed0_gema.pkl was written by the official code under Python 3.7, torch
1.7.1 and numpy 1.21 at Python 3.7's default protocol 3 (data/README.md); the other protocols
are that file's object graph pickled again by Python's own pickler (ada_repickle.py), which at
protocol 3 gives the official file back byte for byte.
"""

import numpy as np
import pytest

import ada_repickle
from conftest import DATA
from pulse_jax.weights.ada_pickle import load_ada_pickle
from pulse_jax.weights.errors import CheckpointFormatError

PKL = DATA / "sg2" / "sg2ada_res64_seed0_gema.pkl"


@pytest.fixture(scope="module")
def official():
    data = PKL.read_bytes()
    return data, ada_repickle.read_graph(data), load_ada_pickle(PKL)


def _assert_same_network(got, want):
    assert got["class_name"] == want["class_name"] == "Generator"
    assert got["init_kwargs"] == want["init_kwargs"]
    assert list(got["state_dict"]) == list(want["state_dict"])
    for k, v in want["state_dict"].items():
        np.testing.assert_array_equal(got["state_dict"][k], v, err_msg=k)
        assert got["state_dict"][k].dtype == v.dtype


def test_committed_pickle_is_the_official_protocol_3_form(official):
    """What a real ADA snapshot holds: protocol 3, sets as builtins.set, numpy 1 names."""
    data, graph, net = official
    assert data[:2] == b"\x80\x03"
    names = ada_repickle.global_names(data)
    assert {"builtins.set", "numpy.core.multiarray.scalar", "numpy.dtype",
            "torch_utils.persistence._reconstruct_persistent_obj",
            "torch.storage._load_from_bytes"} <= names
    assert not any(n.startswith("numpy._core") for n in names)
    # The helper that writes the other protocols gives this file back exactly.
    assert ada_repickle.dumps(graph, 3, numpy_names=1) == data
    assert len(net["state_dict"]) == 94


@pytest.mark.parametrize("numpy_names", [1, 2])
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_protocol_and_numpy_name(official, tmp_path, protocol, numpy_names):
    _, graph, want = official
    data = ada_repickle.dumps(graph, protocol, numpy_names)
    assert data[1] == protocol
    names = ada_repickle.global_names(data)
    core = "numpy.core" if numpy_names == 1 else "numpy._core"
    assert f"{core}.multiarray.scalar" in names
    assert ("builtins.set" in names or "__builtin__.set" in names) == (protocol < 4)
    assert ("_codecs.encode" in names) == (protocol == 2)
    path = tmp_path / f"p{protocol}.pkl"
    path.write_bytes(data)
    _assert_same_network(load_ada_pickle(path), want)


def _init_kwargs(graph):
    """The G_ema record's constructor keyword arguments (a dict inside its meta record)."""
    return graph["G_ema"].args[0]["state"]["_init_kwargs"]


@pytest.mark.parametrize("numpy_names", [1, 2])
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_arrays_sets_and_bytes_at_every_protocol(official, tmp_path, protocol,
                                                       numpy_names):
    """Values a snapshot's kwargs may hold, as numpy and Python pickle them at protocol p."""
    data, _, _ = official
    graph = ada_repickle.read_graph(data)
    extra = {"c": np.arange(6, dtype=np.float32).reshape(2, 3),
             "f": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
             "big": np.arange(4, dtype=">f8"), "scalar": np.float64(0.25),
             "names": {"a", "b"}, "frozen": frozenset({1, 2.5}), "empty": set(),
             "blob": b"\x00\xffx", "none": b""}
    _init_kwargs(graph)["extra"] = extra
    path = tmp_path / "x.pkl"
    path.write_bytes(ada_repickle.dumps(graph, protocol, numpy_names))
    got = load_ada_pickle(path)["init_kwargs"]["extra"]
    assert set(got) == set(extra)
    for k in ("c", "f", "big"):
        np.testing.assert_array_equal(got[k], extra[k])
        assert got[k].dtype == extra[k].dtype.newbyteorder("=") and got[k].dtype.isnative
    assert got["scalar"] == 0.25 and got["scalar"].dtype == np.float64
    for k in ("names", "frozen", "empty", "blob", "none"):
        assert got[k] == extra[k] and type(got[k]) is type(extra[k])


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_sets_of_anything_but_plain_values_are_refused(official, tmp_path, protocol):
    """A set holding a stand-in or a tuple is refused, whichever opcodes built it."""
    data, _, _ = official
    marker = ada_repickle.Global("torch._tensor", "Tensor")
    for i, bad in enumerate([{marker}, frozenset({(1, 2)})]):
        graph = ada_repickle.read_graph(data)
        _init_kwargs(graph)["bad"] = bad
        path = tmp_path / f"bad{i}.pkl"
        path.write_bytes(ada_repickle.dumps(graph, protocol, numpy_names=1))
        with pytest.raises(CheckpointFormatError, match="plain values"):
            load_ada_pickle(path)
