"""The degradation string of the runner (``--config.degradation``) and :func:`parse`.

Grammar (spaces are ignored; docs/degradations.md has the full table)::

    degradation := op ( "|" op )*                 applied left to right to the HR image
    op          := name [ "(" [ key "=" value ( "," key "=" value )* ] ")" ]

    downscale(factor=INT, kernel=bicubic|area|gaussian)   kernel defaults to bicubic
    blur(sigma=FLOAT)          Gaussian PSF, radius ceil(3 sigma)
    blur(kernel=PSF.npy)       a given 2-D PSF (odd sides), used as given
    gray(weights=601|709)      ITU-R luma, default 601
    mask()                     missing pixels: the runner reads {name}_mask.png per face
    mask(file=MASK.png)        one mask for every face (white = observed)
    noise(sigma=FLOAT)         the observation has additive Gaussian noise of this std

e.g. ``"blur(sigma=1.5)|downscale(factor=8,kernel=bicubic)|gray()"``.
"""

from __future__ import annotations

import re
from typing import Callable

from pulse_jax.degrade import operators as ops_lib
from pulse_jax.degrade.downscale import DEGRADATIONS

__all__ = ["GRAMMAR", "parse", "read_mask"]

GRAMMAR = ("ops joined by '|', each name(key=value,...): downscale(factor=INT,"
           f"kernel={'|'.join(DEGRADATIONS)}), blur(sigma=FLOAT) or blur(kernel=PSF.npy), "
           f"gray(weights={'|'.join(ops_lib.GRAY_WEIGHTS)}), mask() or mask(file=MASK.png), "
           "noise(sigma=FLOAT); e.g. 'blur(sigma=1.5)|downscale(factor=8,kernel=bicubic)'")

_OP = re.compile(r"^([A-Za-z_]\w*)\s*(?:\((.*)\))?$", re.S)


def read_mask(path: str) -> ops_lib.Mask:
    """A :class:`~pulse_jax.degrade.operators.Mask` from an image file: the mean of its
    channels, >= 0.5 (white) observed, below (black) missing. ValueError naming the file."""
    from pulse_jax import images
    try:
        x, _ = images.load_image(path)
    except images.ImageError as e:
        raise ValueError(f"cannot read the mask {e}") from None
    try:
        return ops_lib.mask(x.mean(axis=-1), source=str(path))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def _int(v: str) -> int:
    if not re.fullmatch(r"[+]?\d+", v):
        raise ValueError(f"{v!r} is not an integer")
    return int(v)


def _float(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"{v!r} is not a number") from None


# name -> (allowed keys with their converters, builder from the converted arguments)
_OPS: dict[str, tuple[dict[str, Callable], Callable[[dict], ops_lib.Operator]]] = {}


def _downscale(a: dict) -> ops_lib.Operator:
    if "factor" not in a:
        raise ValueError("downscale needs factor=INT")
    return ops_lib.downscale(a["factor"], a.get("kernel", "bicubic"))


def _blur(a: dict) -> ops_lib.Operator:
    if ("sigma" in a) == ("kernel" in a):
        raise ValueError("blur needs exactly one of sigma=FLOAT or kernel=PSF.npy")
    return ops_lib.blur(a["sigma"]) if "sigma" in a else ops_lib.read_psf(a["kernel"])


def _noise(a: dict) -> ops_lib.Operator:
    if "sigma" not in a:
        raise ValueError("noise needs sigma=FLOAT")
    return ops_lib.noise(a["sigma"])


_OPS.update({
    "downscale": ({"factor": _int, "kernel": str}, _downscale),
    "blur": ({"sigma": _float, "kernel": str}, _blur),
    "gray": ({"weights": str}, lambda a: ops_lib.gray(a.get("weights", "601"))),
    "mask": ({"file": str}, lambda a: read_mask(a["file"]) if "file" in a else ops_lib.mask()),
    "noise": ({"sigma": _float}, _noise),
})


def _parse_op(term: str) -> ops_lib.Operator:
    m = _OP.match(term)
    if not m:
        raise ValueError(f"{term!r} is not name(key=value,...)")
    name, body = m.group(1).lower(), m.group(2)
    if name not in _OPS:
        raise ValueError(f"unknown operator {name!r} (valid: {', '.join(_OPS)})")
    keys, build = _OPS[name]
    args: dict = {}
    for item in ([] if body is None or not body.strip() else body.split(",")):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not key or not value:
            raise ValueError(f"argument {item.strip()!r} of {name} is not key=value")
        if key not in keys:
            raise ValueError(f"{name} has no argument {key!r} (valid: {', '.join(keys)})")
        if key in args:
            raise ValueError(f"{name} argument {key!r} given twice")
        try:
            args[key] = keys[key](value)
        except ValueError as e:
            raise ValueError(f"{name}({key}=...): {e}") from None
    return build(args)


def parse(text: str) -> ops_lib.Operator:
    """The operator that a degradation string describes (module doc for the grammar).

    Raises:
      ValueError: naming the bad part and restating the grammar: an empty string or term,
        unknown operator or argument, a value of the wrong kind, a missing required argument,
        an unreadable kernel or mask file, or an order :func:`compose` refuses.
    """
    if not isinstance(text, str):
        raise ValueError(f"a degradation string must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"empty degradation string; expected {GRAMMAR}")
    ops = []
    for term in text.split("|"):
        term = term.strip()
        try:
            if not term:
                raise ValueError("empty operator (a stray '|'?)")
            ops.append(_parse_op(term))
        except ValueError as e:
            raise ValueError(f"bad degradation {text!r}: {e}; expected {GRAMMAR}") from None
    try:
        return ops_lib.compose(*ops)
    except ValueError as e:
        raise ValueError(f"bad degradation {text!r}: {e}") from None
