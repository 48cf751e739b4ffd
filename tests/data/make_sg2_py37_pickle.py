"""Write sg2/sg2ada_res64_seed0_gema.pkl: the shared StyleGAN2-ADA fixture's G_ema pickled as
NVIDIA's own training code pickles it, at Python 3.7's default pickle protocol (3), with
numpy 1 and torch 1.7.1 (the versions NVlabs/stylegan2-ada-pytorch names). Not run by the tests.

Run with a Python 3.7 interpreter that has torch 1.7.1, numpy < 1.22 and requests, from the
repository root (see data/README.md):

    python3.7 tests/data/make_sg2_py37_pickle.py --ada_dir path/to/stylegan2-ada-pytorch \
        --source path/to/shared/fixtures/sg2/sg2ada_res64_seed0.pkl \
        --npz path/to/shared/fixtures/sg2/sg2ada_res64_seed0.npz --out tests/data/sg2

Steps: the source pickle (written with numpy 2 names) is read with the official
``legacy._LegacyUnpickler``, numpy 2 module names mapped to numpy 1's; a fresh official
``Generator(**init_kwargs)`` takes its parameters and buffers (``misc.copy_params_and_buffers``)
so that every module's state is what torch 1.7.1 pickles; its outputs are checked against the
fixture's; the snapshot dict of ``training_loop.py`` is pickled with ``pickle.dump`` (protocol
3) once with the real module sources (reloaded by the official unpickler of
``legacy.load_network_pkl``, which runs those sources, and checked again) and once with each
class's module source replaced by a one-line placeholder (the committed file, so the repository
carries no NVIDIA code). The two opcode streams are checked to differ only in those source
strings.
"""

import argparse
import copy
import io
import os
import pickle
import pickletools
import sys

import numpy as np

PLACEHOLDER = "# module source left out (see tests/data/README.md)\n"


def _numpy1_unpickler(legacy):
    class Unpickler(legacy._LegacyUnpickler):
        def find_class(self, module, name):
            if module.startswith("numpy._core"):
                module = "numpy.core" + module[len("numpy._core"):]
            return super().find_class(module, name)
    return Unpickler


def _check_outputs(G, ref, torch, what):
    with torch.no_grad():
        for mode in ("const", "none"):
            img = G.synthesis(torch.from_numpy(ref["ws"]), noise_mode=mode).numpy()
            want = ref[f"img_{mode}"]
            err = np.abs(img - want).max()
            print(f"{what}: img_{mode} max abs diff {err:.3g} "
                  f"(max |value| {np.abs(want).max():.3g})")
            assert err <= 1e-5 * np.abs(want).max(), err
        w = G.mapping(torch.from_numpy(ref["z"]), None).numpy()
        assert np.abs(w - ref["w"]).max() <= 2e-5


def _ops(data, sources):
    """(opcode, argument) pairs of a pickle, source strings replaced by a token."""
    return [(op.name, "<src>" if arg in sources else arg)
            for op, arg, _ in pickletools.genops(data) if op.name not in ("BINPUT", "LONG_BINPUT")]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ada_dir", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--npz", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    sys.path.insert(0, a.ada_dir)
    import torch
    import legacy
    from torch_utils import misc, persistence
    from training import networks
    assert sys.version_info[:2] == (3, 7) and pickle.DEFAULT_PROTOCOL == 3
    assert np.__version__.startswith("1."), np.__version__
    print("python", sys.version.split()[0], "torch", torch.__version__, "numpy", np.__version__)
    ref = dict(np.load(a.npz))
    with open(a.source, "rb") as f:
        src_G = _numpy1_unpickler(legacy)(f).load()["G_ema"]
    G = networks.Generator(**src_G.init_kwargs).eval().requires_grad_(False)
    misc.copy_params_and_buffers(src_G, G, require_all=True)
    _check_outputs(G, ref, torch, "torch 1.7.1 G_ema")
    # training_loop.py's snapshot; G is G_ema (one copy of the weights), D is left out.
    snapshot = dict(training_set_kwargs=dict(
        class_name="training.dataset.ImageFolderDataset", path="ffhq64.zip", use_labels=False,
        max_size=70000, xflip=False, resolution=64))
    G = copy.deepcopy(G).eval().requires_grad_(False).cpu()
    snapshot.update(G=G, G_ema=G, augment_pipe=None)

    buf = io.BytesIO()
    pickle.dump(snapshot, buf)
    real = buf.getvalue()
    reloaded = legacy._LegacyUnpickler(io.BytesIO(real)).load()["G_ema"]  # no D to validate
    _check_outputs(reloaded, ref, torch, "official reload")
    sources = {d._orig_module_src for d in persistence._decorators}
    for d in persistence._decorators:
        d._orig_module_src = PLACEHOLDER
    buf = io.BytesIO()
    pickle.dump(snapshot, buf)
    data = buf.getvalue()
    assert _ops(real, sources) == _ops(data, {PLACEHOLDER}), "pickles differ beyond the sources"
    assert data[:2] == b"\x80\x03"
    out = os.path.join(a.out, "sg2ada_res64_seed0_gema.pkl")
    with open(out, "wb") as f:
        f.write(data)
    print(f"wrote {out}: {len(data)} bytes, protocol {data[1]}")


if __name__ == "__main__":
    main()
