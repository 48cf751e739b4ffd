"""Generate the extra PULSE reference fixtures (``pulse_ref_extra.npz`` and
``extra_256_synthesis_legacy.pt``) from the official PyTorch PULSE code.

This is our own harness. It does not contain reference code: it imports ``stylegan.py``,
``bicubic.py`` and ``loss.py`` from an untouched checkout of GitHub ``adamian98/pulse``
(commit ``40cacb9``) given by ``--pulse_dir``. ``stylegan.py`` and ``bicubic.py`` are imported
unmodified (``BicubicDownSample`` is constructed with ``cuda=False``). ``loss.py`` hard-codes the
1024 HR size and 18 latent rows, so its source text is read, these literals are substituted
(each asserted to occur exactly as counted), the result is written to a scratch directory
(``--scratch``, outside this repository) and imported from there:

* ``factor=1024//im_size`` and ``assert im_size*factor==1024``: 1024 -> 256 (2 occurrences);
* GEOCROSS ``view(-1, 1, 18, 512)`` / ``view(-1, 18, 1, 512)``: 18 -> 14 (1 occurrence each);
* ``BicubicDownSample(factor=factor)`` -> ``BicubicDownSample(factor=factor, cuda=False)``
  (1 occurrence; the CPU switch).

How the committed files were produced (CPU only, no GPU):

    nice -n 10 path/to/torch-venv/bin/python tests/data/make_extra_fixtures.py \\
        --pulse_dir path/to/pulse --scratch path/to/scratch --out tests/data

with PyTorch 2.13.0+cpu, NumPy 2.4, ``torch.set_num_threads(1)`` (this script's ``--threads`` default),
reference commit 40cacb9 (``git log`` of the checkout: "Update Readme").

See ``README.md`` next to this file for the meaning of every key and the measured
float32-vs-float64 differences (also printed by this script).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

SEED_A_INIT = 1          # torch.manual_seed before constructing config A's G_synthesis
SEED_A_PERTURB = 101     # torch.Generator for the constant-initialized parameters' offsets
SEED_A_INPUTS = 2        # torch.Generator for z, dlatent normals, noise, reference LR images
GAUSS_SEED = 0           # PULSE's hard-coded seed for the Gaussian fit
GAUSS_N = 256            # instead of PULSE's 1,000,000

CONFIG_A = dict(resolution=256, fmap_base=1024, fmap_max=64, fmap_decay=1.0)
BATCH_A = 3
LOSS_STR = "100*L2+0.05*GEOCROSS+2*L1"
LOSS_EPS = 2e-3

MAPPING_RECIPE = (
    "Config A mapping weights (G_mapping() defaults, not stored): for the k-th entry of "
    "G_mapping().state_dict() in order (k = 0..15: dense0.weight, dense0.bias, dense1.weight, ...), "
    "a = np.random.default_rng(2000 + k).standard_normal(shape).astype(np.float32); "
    "keys ending in '.weight': a * np.float32(100.0) (the reference init std 1/lrmul); "
    "keys ending in '.bias': a * np.float32(10.0) (effective offset std 0.1 after the 0.01 "
    "runtime bias multiplier). No bfloat16 rounding."
)

WEIGHTS_RECIPE_B = (
    "Config B synthesis weights (G_synthesis() defaults, resolution 1024, 100 state_dict entries): "
    "for the k-th entry of G_synthesis().state_dict() in order (k = 0, 1, ..., 99, counting every "
    "entry including the blur buffers; entry 0 is 'torgb.weight'), "
    "a = np.random.default_rng(1000 + k).standard_normal(shape).astype(np.float32); "
    "if the key ends with '.bias' or 'noise.weight' or '.const': a = a * np.float32(0.1); "
    "then if the key is 'blocks.4x4.const' or 'blocks.4x4.bias': a = a + np.float32(1.0); "
    "keys ending in '.intermediate.kernel' (blur buffers) are NOT generated: they keep the "
    "reference value [1,2,1]x[1,2,1]/16 (k still advances past them). All arithmetic float32."
)
DLATENTS_RECIPE_B = "np.random.default_rng(7).standard_normal((1, 18, 512)).astype(np.float32)"
NOISE_RECIPE_B = ("noise i (i = 0..17, r = 2**(i//2+2)): "
                  "np.random.default_rng(100 + i).standard_normal((1, 1, r, r)).astype(np.float32)")


def bf16(t: torch.Tensor) -> torch.Tensor:
    """Round to the nearest bfloat16-representable float32 (round half to even)."""
    return t.to(torch.bfloat16).to(torch.float32)


def is_const_init(key: str) -> bool:
    """Synthesis parameters the reference initializes to a constant."""
    return key.endswith(".bias") or key.endswith("noise.weight") or key.endswith(".const")


def np32(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def load_reference(pulse_dir: str, scratch: str):
    sys.path.insert(0, pulse_dir)
    stylegan = importlib.import_module("stylegan")
    bicubic = importlib.import_module("bicubic")
    # loss.py: literal substitutions into a scratch copy (outside the repository).
    with open(os.path.join(pulse_dir, "loss.py")) as f:
        src = f.read()
    subs = [("1024", "256", 2),
            ("view(-1, 1, 18, 512)", "view(-1, 1, 14, 512)", 1),
            ("view(-1, 18, 1, 512)", "view(-1, 14, 1, 512)", 1),
            ("BicubicDownSample(factor=factor)", "BicubicDownSample(factor=factor, cuda=False)", 1)]
    for old, new, count in subs:
        assert src.count(old) == count, (old, src.count(old))
        src = src.replace(old, new)
    os.makedirs(scratch, exist_ok=True)
    with open(os.path.join(scratch, "loss_r256_l14.py"), "w") as f:
        f.write(src)
    sys.path.insert(0, scratch)
    loss_mod = importlib.import_module("loss_r256_l14")
    assert loss_mod.BicubicDownSample is bicubic.BicubicDownSample
    return stylegan, bicubic, loss_mod


def block_hooks(syn, store: dict, sample: int | None):
    """Record each block's output ([C,R,R] of one sample) into store[name]."""
    handles = []
    for name, blk in syn.blocks.items():
        def hook(_m, _inp, out, name=name):
            store[name] = out.detach()[sample].clone() if sample is not None else out.detach().clone()
        handles.append(blk.register_forward_hook(hook))
    return handles


def bicubic_f64(D, x: torch.Tensor) -> torch.Tensor:
    """Float64 version of the reference BicubicDownSample forward (its filters are forced to
    float32, so float64 inputs fail); used only for the float64 tolerance measurement."""
    f = D.factor
    pad = 4 * f - f
    top, left = pad // 2, pad // 2
    x = F.pad(x, (0, 0, top, pad - top), "reflect")
    x = F.conv2d(x, D.k1.double(), stride=(f, 1), groups=3)
    x = F.pad(x, (left, pad - left, 0, 0), "reflect")
    return F.conv2d(x, D.k2.double(), stride=(1, f), groups=3)


class Bicubic64(torch.nn.Module):
    """Module wrapper of bicubic_f64 (LossBuilder.D must be a module)."""

    def __init__(self, D):
        super().__init__()
        self.ref = D

    def forward(self, x):
        return bicubic_f64(self.ref, x)


def maxabs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pulse_dir", required=True, help="untouched checkout of adamian98/pulse")
    ap.add_argument("--scratch", required=True, help="scratch dir (outside the repo) for patched loss.py")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (committed files: 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    stylegan, bicubic, loss_mod = load_reference(args.pulse_dir, args.scratch)
    out: dict[str, np.ndarray] = {}
    report: dict[str, float] = {}

    # ------------------------------------------------------------------ config A weights
    torch.manual_seed(SEED_A_INIT)
    synA = stylegan.G_synthesis(**CONFIG_A).eval()
    sdA = synA.state_dict()
    gp = torch.Generator().manual_seed(SEED_A_PERTURB)
    perturbed = []
    with torch.no_grad():
        params = dict(synA.named_parameters())
        for key in sdA:
            if key not in params:
                continue  # blur buffers
            p = params[key]
            if is_const_init(key):
                p.add_(0.1 * torch.randn(p.shape, generator=gp))
                perturbed.append(key)
            p.copy_(bf16(p))
    for p in synA.parameters():
        p.requires_grad_(False)
    assert len(sdA) == 78, len(sdA)

    mapA = stylegan.G_mapping().eval()
    msd = OrderedDict()
    for k, (key, v) in enumerate(mapA.state_dict().items()):
        a = np.random.default_rng(2000 + k).standard_normal(tuple(v.shape)).astype(np.float32)
        if key.endswith(".weight"):
            a = a * np.float32(100.0)
        else:
            assert key.endswith(".bias")
            a = a * np.float32(10.0)
        msd[key] = torch.from_numpy(a)
    mapA.load_state_dict(msd, strict=True)
    for p in mapA.parameters():
        p.requires_grad_(False)

    # ------------------------------------------------------------------ config A mapping / fit
    gi = torch.Generator().manual_seed(SEED_A_INPUTS)
    z = bf16(torch.randn((4, 512), generator=gi))
    with torch.no_grad():
        w = mapA(z)
    out["extraA/mapping_io/z"] = np32(z)
    out["extraA/mapping_io/w"] = np32(w)

    # PULSE.__init__'s Gaussian fit (it needs CUDA, so its three lines are re-stated here):
    # seed 0, z ~ randn((N, 512)), LeakyReLU(negative_slope=5)(mapping(z)), mean(0), std(0) (unbiased).
    with torch.no_grad():
        torch.manual_seed(GAUSS_SEED)
        gz = torch.randn((GAUSS_N, 512), dtype=torch.float32)
        lo = torch.nn.LeakyReLU(5)(mapA(gz))
        gmean, gstd = lo.mean(0), lo.std(0)
    out["extraA/gaussian/z"] = np32(gz)
    out["extraA/gaussian/mean"] = np32(gmean)
    out["extraA/gaussian/std"] = np32(gstd)

    # ------------------------------------------------------------------ config A synthesis
    nlA = 14
    dl_normal = torch.randn((BATCH_A, nlA, 512), generator=gi)
    dlatA = bf16(torch.nn.LeakyReLU(0.2)(dl_normal * gstd + gmean))
    noiseA = []
    for i in range(nlA):
        r = 2 ** (i // 2 + 2)
        noiseA.append(bf16(torch.randn((BATCH_A, 1, r, r), generator=gi)))
    out["extraA/synthesis_io/dlatents"] = np32(dlatA)
    for i, n in enumerate(noiseA):
        out[f"extraA/synthesis_io/noise_{i:02d}"] = np32(n)
    blocksA: dict = {}
    hs = block_hooks(synA, blocksA, sample=2)
    with torch.no_grad():
        rawA = synA(dlatA, noiseA)
    for h in hs:
        h.remove()
    out["extraA/synthesis_io/image_raw"] = np32(rawA)
    for name, t in blocksA.items():
        if int(name.split("x")[0]) <= 64:
            out[f"extraA/synthesis_io/block_out_sample2/{name}"] = np32(t)

    # ------------------------------------------------------------------ config A losses
    genA = (rawA + 1) / 2
    losses64 = {}
    for fac, S in ((4, 64), (8, 32)):
        ref_lr = torch.randint(0, 256, (BATCH_A, 3, S, S), generator=gi).to(torch.float32) / 255
        lb = loss_mod.LossBuilder(ref_lr, LOSS_STR, LOSS_EPS)
        assert lb.D.factor == fac
        with torch.no_grad():
            total, terms = lb(dlatA, genA)
            gen_lr = lb.D(genA)
        pre = f"extraA/loss_f{fac}"
        out[f"{pre}/ref_lr"] = np32(ref_lr)
        out[f"{pre}/gen_im_lr"] = np32(gen_lr)
        out[f"{pre}/total"] = np.float32(total.item())
        for name in ("L2", "GEOCROSS", "L1"):
            out[f"{pre}/{name}"] = np.float32(terms[name].item())
        # float64 rerun for the tolerance report (float64 bicubic filters, see bicubic_f64)
        lb64 = loss_mod.LossBuilder(ref_lr.double(), LOSS_STR, LOSS_EPS)
        lb64.D = Bicubic64(lb.D)
        losses64[fac] = (lb64, pre)

    # ------------------------------------------------------------------ config A float64 rerun
    synA64 = copy.deepcopy(synA).double()
    mapA64 = copy.deepcopy(mapA).double()
    with torch.no_grad():
        w64 = mapA64(z.double())
        lo64 = torch.nn.LeakyReLU(5)(mapA64(gz.double()))
        blocksA64: dict = {}
        hs = block_hooks(synA64, blocksA64, sample=2)
        rawA64 = synA64(dlatA.double(), [n.double() for n in noiseA])
        for h in hs:
            h.remove()
    report["A mapping_io/w max abs"] = maxabs(out["extraA/mapping_io/w"], w64)
    report["A gaussian mean/std max abs"] = max(maxabs(gmean, lo64.mean(0)), maxabs(gstd, lo64.std(0)))
    report["A image_raw max abs"] = maxabs(rawA, rawA64)
    report["A image_raw mean abs"] = float(np.mean(np.abs(rawA.double().numpy() - rawA64.numpy())))
    report["A image_raw max |value|"] = float(rawA.abs().max())
    report["A block_out max abs (<=64)"] = max(
        maxabs(blocksA[n], blocksA64[n]) for n in blocksA if int(n.split("x")[0]) <= 64)
    report["A block_out max |value| (<=64)"] = max(
        float(blocksA[n].abs().max()) for n in blocksA if int(n.split("x")[0]) <= 64)
    genA64 = (rawA64 + 1) / 2
    for fac, (lb64, pre) in losses64.items():
        with torch.no_grad():
            total64, terms64 = lb64(dlatA.double(), genA64)
            lr64 = lb64.D(genA64)
        report[f"A loss_f{fac} gen_im_lr max abs"] = maxabs(out[f"{pre}/gen_im_lr"], lr64)
        rel = [abs(float(out[f"{pre}/total"]) - total64.item()) / abs(total64.item())]
        rel += [abs(float(out[f"{pre}/{n}"]) - terms64[n].item()) / abs(terms64[n].item())
                for n in ("L2", "GEOCROSS", "L1")]
        report[f"A loss_f{fac} scalars max rel"] = max(rel)

    # config A json + legacy checkpoint
    cfgA = dict(
        generator=dict(CONFIG_A), batch=BATCH_A, num_layers=nlA,
        widths={f"{2**r}x{2**r}": min(int(1024 / 2.0 ** (r - 1)), 64) for r in range(2, 9)},
        fused_blocks=["128x128", "256x256"],
        init_seed=SEED_A_INIT, perturb_seed=SEED_A_PERTURB, perturb_std=0.1,
        inputs_seed=SEED_A_INPUTS, perturbed_params=perturbed,
        mapping_recipe=MAPPING_RECIPE, gaussian_seed=GAUSS_SEED, gaussian_samples=GAUSS_N,
        loss_str=LOSS_STR, loss_eps=LOSS_EPS, torch_version=torch.__version__,
        torch_threads=torch.get_num_threads(), reference_commit="40cacb9")
    out["extraA/config_json"] = np.array([json.dumps(cfgA)])
    sd_save = synA.state_dict()
    pt_path = os.path.join(args.out, "extra_256_synthesis_legacy.pt")
    torch.save(sd_save, pt_path, _use_new_zipfile_serialization=False)
    back = torch.load(pt_path, weights_only=True)
    assert list(back) == list(sd_save) and all(torch.equal(back[k], sd_save[k]) for k in back)

    # ------------------------------------------------------------------ config B (1024 default)
    torch.manual_seed(0)
    synB = stylegan.G_synthesis().eval()
    sdB = synB.state_dict()
    assert len(sdB) == 100
    newB = OrderedDict()
    for k, (key, v) in enumerate(sdB.items()):
        if key.endswith(".intermediate.kernel"):
            newB[key] = v.clone()
            continue
        a = np.random.default_rng(1000 + k).standard_normal(tuple(v.shape)).astype(np.float32)
        if key.endswith(".bias") or key.endswith("noise.weight") or key.endswith(".const"):
            a = a * np.float32(0.1)
        if key in ("blocks.4x4.const", "blocks.4x4.bias"):
            a = a + np.float32(1.0)
        newB[key] = torch.from_numpy(a)
    synB.load_state_dict(newB, strict=True)
    for p in synB.parameters():
        p.requires_grad_(False)
    dlatB = torch.from_numpy(np.random.default_rng(7).standard_normal((1, 18, 512)).astype(np.float32))
    noiseB = [torch.from_numpy(np.random.default_rng(100 + i).standard_normal(
        (1, 1, 2 ** (i // 2 + 2), 2 ** (i // 2 + 2))).astype(np.float32)) for i in range(18)]
    blocksB: dict = {}
    hs = block_hooks(synB, blocksB, sample=0)
    with torch.no_grad():
        rawB = synB(dlatB, noiseB)
    for h in hs:
        h.remove()
    crops = {"tl": (slice(0, 64), slice(0, 64)), "c": (slice(480, 544), slice(480, 544)),
             "br": (slice(960, 1024), slice(960, 1024))}
    for c, (ys, xs) in crops.items():
        out[f"extraB/crop_{c}"] = np32(rawB[:, :, ys, xs])
    rB = rawB.double().numpy()
    out["extraB/image_raw_channel_mean"] = rB.mean(axis=(0, 2, 3))
    out["extraB/image_raw_abs_mean"] = np.float64(np.abs(rB).mean())
    for name, t in blocksB.items():
        R = int(name.split("x")[0])
        t64 = t.double().numpy()
        out[f"extraB/block_out_sample0_chmean/{name}"] = t64.mean(axis=(1, 2))
        if R <= 16:
            out[f"extraB/block_out_sample0/{name}"] = np32(t)
        elif R <= 64:
            out[f"extraB/block_out_sample0_ch0to15/{name}"] = np32(t[:16])
    genB = (rawB + 1) / 2
    D32 = bicubic.BicubicDownSample(factor=32, cuda=False)
    D64 = bicubic.BicubicDownSample(factor=64, cuda=False)
    with torch.no_grad():
        lr32, lr16 = D32(genB), D64(genB)
    out["extraB/lr32"] = np32(lr32)
    out["extraB/lr16"] = np32(lr16)
    out["extraB/weights_recipe"] = np.array([WEIGHTS_RECIPE_B])
    cfgB = dict(generator="G_synthesis() defaults (resolution 1024, fmap_base 8192, fmap_max 512)",
                batch=1, num_layers=18, weights_recipe=WEIGHTS_RECIPE_B,
                dlatents_recipe=DLATENTS_RECIPE_B, noise_recipe=NOISE_RECIPE_B,
                crops={"tl": "rows 0:64, cols 0:64", "c": "rows 480:544, cols 480:544",
                       "br": "rows 960:1024, cols 960:1024"},
                torch_version=torch.__version__, torch_threads=torch.get_num_threads(),
                reference_commit="40cacb9")
    out["extraB/config_json"] = np.array([json.dumps(cfgB)])

    # config B float64 rerun
    synB64 = copy.deepcopy(synB).double()
    blocksB64: dict = {}
    hs = block_hooks(synB64, blocksB64, sample=0)
    with torch.no_grad():
        rawB64 = synB64(dlatB.double(), [n.double() for n in noiseB])
    for h in hs:
        h.remove()
    for c, (ys, xs) in crops.items():
        report[f"B crop_{c} max abs"] = maxabs(out[f"extraB/crop_{c}"], rawB64[:, :, ys, xs])
        report[f"B crop_{c} max |value|"] = float(np.abs(out[f"extraB/crop_{c}"]).max())
    report["B image_raw max abs (whole)"] = maxabs(rawB, rawB64)
    report["B image_raw mean abs (whole)"] = float(np.mean(np.abs(rB - rawB64.numpy())))
    report["B image_raw max |value|"] = float(rawB.abs().max())
    report["B channel_mean max abs"] = maxabs(out["extraB/image_raw_channel_mean"],
                                              rawB64.numpy().mean(axis=(0, 2, 3)))
    report["B abs_mean abs diff"] = abs(float(out["extraB/image_raw_abs_mean"])
                                        - float(np.abs(rawB64.numpy()).mean()))
    for name in blocksB:
        report[f"B block {name} max abs"] = maxabs(blocksB[name], blocksB64[name])
        report[f"B block {name} max |value|"] = float(blocksB[name].abs().max())
        report[f"B block {name} chmean max abs"] = maxabs(
            out[f"extraB/block_out_sample0_chmean/{name}"], blocksB64[name].numpy().mean(axis=(1, 2)))
    genB64 = (rawB64 + 1) / 2
    report["B lr32 max abs"] = maxabs(lr32, bicubic_f64(D32, genB64))
    report["B lr16 max abs"] = maxabs(lr16, bicubic_f64(D64, genB64))
    report["B lr32 max |value|"] = float(lr32.abs().max())

    # ------------------------------------------------------------------ write
    for k, v in out.items():
        assert v.dtype != object, k
    npz_path = os.path.join(args.out, "pulse_ref_extra.npz")
    np.savez_compressed(npz_path, **out)
    with np.load(npz_path, allow_pickle=False) as f:
        assert sorted(f.files) == sorted(out)
        for k in f.files:
            assert np.array_equal(f[k], out[k]), k
    for k in sorted(out):
        print(f"{k}\t{out[k].dtype}\t{list(out[k].shape)}")
    print("--- float32 vs float64 ---")
    for k, v in report.items():
        print(f"{k}\t{v:.3g}")
    for p in (npz_path, pt_path):
        print(p, os.path.getsize(p))


if __name__ == "__main__":
    main()
