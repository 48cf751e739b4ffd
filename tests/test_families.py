"""Each generator family module provides every function of :class:`pulse_jax.families.Family`
under its name, with a compatible signature, and dispatch finds it from the config."""

import inspect

import pytest

from pulse_jax import families, stylegan, stylegan2
from pulse_jax.families import Family

MODULES = [stylegan, stylegan2]


def _protocol_functions() -> dict[str, inspect.Signature]:
    out = {}
    for name, member in vars(Family).items():
        if inspect.isfunction(member) and not name.startswith("_"):
            sig = inspect.signature(member)
            out[name] = sig.replace(parameters=list(sig.parameters.values())[1:])  # no self
    return out


def test_protocol_lists_the_family_functions():
    assert set(_protocol_functions()) == {
        "synthesize", "map_latents", "mapping_apply", "prepare_synthesis",
        "synthesis_prepared", "init_params", "param_shapes", "noise_zeros", "noise_normal"}
    assert "FAMILY" in Family.__annotations__


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_family_module_satisfies_the_protocol(module):
    assert isinstance(module.FAMILY, str) and families.module_for(
        families.config_from_dict(module.FAMILY, {})) is module
    for name, want in _protocol_functions().items():
        fn = getattr(module, name, None)
        assert callable(fn), f"{module.__name__} has no {name}"
        got = inspect.signature(fn).parameters
        for p in want.parameters.values():
            assert p.name in got, f"{module.__name__}.{name} lacks {p.name!r}"
            q = got[p.name]
            assert q.kind == p.kind, f"{module.__name__}.{name}: {p.name!r} is {q.kind}"
            assert q.default == p.default, f"{module.__name__}.{name}: {p.name!r} default"
        # The protocol's parameters come first and in its order; extra ones are optional.
        assert list(got)[:len(want.parameters)] == list(want.parameters), name
        for extra in list(got)[len(want.parameters):]:
            assert got[extra].default is not inspect.Parameter.empty, (name, extra)


def test_dispatch_rejects_what_is_not_a_config():
    with pytest.raises(ValueError, match="not a generator config"):
        families.module_for(object())
    with pytest.raises(ValueError, match="unknown generator family"):
        families.config_from_dict("stylegan3", {})
