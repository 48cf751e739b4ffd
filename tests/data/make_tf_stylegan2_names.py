"""Write sg2/tf_stylegan2_names.json: for every official PyTorch StyleGAN2 state-dict key of
four generators, the TensorFlow variable that the official converter reads for it and what it
does to it, read out of the converter's own table. Not run by the tests.

    python tests/data/make_tf_stylegan2_names.py --legacy path/to/stylegan2-ada-pytorch/legacy.py

The script parses ``legacy.py`` with ``ast`` (nothing of it is imported or run):
``convert_tf_generator``'s call of ``_populate_module_params`` (pairs of a regex over the
PyTorch key and a lambda ``tf_params[f'...']`` followed by ``[0]``, ``[::-1, ::-1]``,
``.transpose(...)``, ``+ 1``) and its ``kwargs = dnnlib.EasyDict(...)`` table (which TF kwarg,
times which factor, gives each constructor argument). For each key, the first pattern that
matches it (as ``_populate_module_params`` tries them) names the TF variable, its f-string
filled from the regex groups.

The keys and shapes are the official code's (data/sg2/sg2ada_1024_state_dict_shapes.json,
config-f 'skip'; sg2ada_extra_cases.npz: 'skip' with conv_clamp, 'orig', 'resnet'). TF shapes
are the PyTorch shapes with the operations undone. An 'orig' TF network names its ToRGB layers
by level of detail: legacy.py reads ``ToRGB_lod{k}/*`` as ``{R}x{R}/ToRGB/*`` with ``R =
resolution // 2**k``, so those names are written back in that form (the ``tf_name`` column);
``legacy_name`` is the name after that renaming.

Output: ``{"source": ..., "cases": {case: {"init_kwargs", "tf_static_kwargs", "variables":
[{"key", "shape", "legacy_name", "tf_name", "tf_shape", "ops"}]}}}``, ``ops`` applied in order
to the TF array: ``["index", [i, ...]]``, ``["flip", [axis, ...]]``, ``["transpose", perm]``
(``[]``: reverse all axes), ``["add", c]``.
"""

import argparse
import ast
import hashlib
import json
import math
import pathlib
import re

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)


def _eval(node: ast.AST, env: dict):
    """The few expressions legacy.py's lambdas use: names, ints, + - *, int(), np.log2()."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, env)
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, env), _eval(node.right, env)
        return {ast.Add: lambda: a + b, ast.Sub: lambda: a - b,
                ast.Mult: lambda: a * b}[type(node.op)]()
    if isinstance(node, ast.Call) and not node.keywords and len(node.args) == 1:
        f, x = node.func, _eval(node.args[0], env)
        if isinstance(f, ast.Name) and f.id == "int":
            return int(x)
        if isinstance(f, ast.Attribute) and f.attr == "log2":
            return math.log2(x)
    raise ValueError(f"unsupported expression {ast.dump(node)}")


def _fstring(node: ast.AST, env: dict) -> str:
    if isinstance(node, ast.Constant):
        return node.value
    out = []
    for part in node.values:
        out.append(part.value if isinstance(part, ast.Constant) else
                   format(_eval(part.value, env)))
    return "".join(out)


def _value(node: ast.AST, env: dict) -> tuple[str, list]:
    """(TF name, ops) of a lambda body over ``tf_params[...]``."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        assert node.value.id == "tf_params"
        return _fstring(node.slice, env), []
    if isinstance(node, ast.Subscript):
        name, ops = _value(node.value, env)
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if all(isinstance(i, ast.Slice) for i in items):
            assert all(_eval(i.step, env) == -1 and i.lower is None and i.upper is None
                       for i in items)
            return name, ops + [["flip", list(range(len(items)))]]
        return name, ops + [["index", [_eval(i, env) for i in items]]]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        assert node.func.attr == "transpose"
        name, ops = _value(node.func.value, env)
        return name, ops + [["transpose", [_eval(a, env) for a in node.args]]]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        name, ops = _value(node.left, env)
        return name, ops + [["add", _eval(node.right, env)]]
    raise ValueError(f"unsupported value {ast.dump(node)}")


def parse_legacy(src: str) -> tuple[list, dict]:
    """(``[(regex, lambda or None)]`` of the generator table, ``{argument path: (TF kwarg,
    factor)}`` of its kwargs table)."""
    fn = _function(ast.parse(src), "convert_tf_generator")
    call = next(n for n in ast.walk(fn) if isinstance(n, ast.Call)
                and getattr(n.func, "id", None) == "_populate_module_params")
    args = call.args[1:]
    table = [(p.value, None if isinstance(v, ast.Constant) else v)
             for p, v in zip(args[0::2], args[1::2])]
    kwargs = {}

    def walk(node, prefix):
        for kw in node.keywords:
            v, factor = kw.value, 1
            if isinstance(v, ast.BinOp) and isinstance(v.op, ast.Mult):
                v, factor = v.left, v.right.value
            if getattr(v.func, "id", None) == "kwarg":
                kwargs[prefix + kw.arg] = (v.args[0].value, factor)
            else:
                walk(v, prefix + kw.arg + ".")

    assign = next(n for n in fn.body if isinstance(n, ast.Assign)
                  and getattr(n.targets[0], "id", None) == "kwargs")
    walk(assign.value, "")
    return table, kwargs


def _undo(shape: list, ops: list) -> list:
    for op, arg in reversed(ops):
        if op == "transpose":
            perm = arg or list(range(len(shape)))[::-1]
            src = [0] * len(shape)
            for i, p in enumerate(perm):
                src[p] = shape[i]
            shape = src
        elif op == "index":
            shape = [1] * len(arg) + shape
    return shape


def _tf_kwargs(init_kwargs: dict, kwargs_table: dict) -> dict:
    out = {}
    for path, (tf_name, factor) in kwargs_table.items():
        node = init_kwargs
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            out[tf_name] = node // factor if factor != 1 else node
    return out


def _cases() -> dict:
    official = json.loads((HERE / "sg2" / "sg2ada_1024_state_dict_shapes.json").read_text())
    cases = {"config_f_1024": (official["init_kwargs"], official["state_dict_shapes"])}
    with np.load(HERE / "sg2" / "sg2ada_extra_cases.npz") as f:
        for case in ("res32_clamp_map3", "res16_orig", "res16_resnet_clamp"):
            prefix = f"{case}/sd/"
            shapes = {k[len(prefix):]: list(f[k].shape) for k in f.files if k.startswith(prefix)}
            cases[case] = (json.loads(str(f[f"{case}/init_kwargs"])), shapes)
    return cases


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--legacy", required=True, help="NVlabs/stylegan2-ada-pytorch legacy.py")
    p.add_argument("--out", default=str(HERE / "sg2" / "tf_stylegan2_names.json"))
    a = p.parse_args()
    src = pathlib.Path(a.legacy).read_text(encoding="utf-8-sig")
    assert "re.fullmatch(r'ToRGB_lod(\\d+)/(.*)', name)" in src  # the rename undone below
    table, kwargs_table = parse_legacy(src)
    out = {"source": {"file": "NVlabs/stylegan2-ada-pytorch legacy.py",
                      "sha256": hashlib.sha256(src.encode()).hexdigest()}, "cases": {}}
    for case, (init_kwargs, shapes) in _cases().items():
        res = init_kwargs["img_resolution"]
        orig = init_kwargs.get("synthesis_kwargs", {}).get("architecture") == "orig"
        rows = []
        for key, shape in shapes.items():
            pattern, fn = next((pt, fn) for pt, fn in table if re.fullmatch(pt, key))
            if fn is None:
                continue
            groups = re.fullmatch(pattern, key).groups()
            name, ops = _value(fn.body, dict(zip([x.arg for x in fn.args.args], groups)))
            tf_name = name
            m = re.fullmatch(r"synthesis/(\d+)x\1/ToRGB/(.*)", name)
            if orig and m:
                lod = int(math.log2(res // int(m.group(1))))
                tf_name = f"synthesis/ToRGB_lod{lod}/{m.group(2)}"
            rows.append({"key": key, "shape": list(shape), "legacy_name": name,
                         "tf_name": tf_name, "tf_shape": _undo(list(shape), ops), "ops": ops})
        out["cases"][case] = {"init_kwargs": init_kwargs,
                              "tf_static_kwargs": _tf_kwargs(init_kwargs, kwargs_table),
                              "variables": rows}
    lines = ["{", f' "source": {json.dumps(out["source"])},', ' "cases": {']
    for i, (case, v) in enumerate(out["cases"].items()):  # one line per variable
        head = {k: v[k] for k in ("init_kwargs", "tf_static_kwargs")}
        lines.append(f"  {json.dumps(case)}: {json.dumps(head)[:-1]}, \"variables\": [")
        rows = v["variables"]
        lines += ["   " + json.dumps(r) + ("," if j < len(rows) - 1 else "")
                  for j, r in enumerate(rows)]
        lines.append("  ]}" + ("," if i < len(out["cases"]) - 1 else ""))
    text = "\n".join(lines + [" }", "}"])
    assert json.loads(text) == out
    pathlib.Path(a.out).write_text(text + "\n")
    print(f"wrote {a.out}: " + ", ".join(f"{c} {len(v['variables'])}"
                                         for c, v in out["cases"].items()))


if __name__ == "__main__":
    main()
