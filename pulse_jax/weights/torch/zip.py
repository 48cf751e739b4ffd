"""Read the zip format of ``torch.save`` (the default since PyTorch 1.6).

The archive has one top-level folder (any name; a bare ``data.pkl`` at the root is also read)
holding ``data.pkl`` (the pickled object), ``data/<key>`` (one raw record per storage) and
optionally ``byteorder`` (``little``/``big``, the byte order of those records; absent means
little). ``data.pkl`` refers to storages by persistent id ``('storage', storage_type, key,
location, numel)``; ``location`` is ignored.

Refused, as :class:`~..errors.CheckpointFormatError` or :class:`~..safe_pickle.FormatProblem`: a
corrupt or truncated archive, no or several ``data.pkl``, a missing or unreadable record, an
unknown byte order, a storage record whose size is not ``numel`` elements, and one key named
with two different types or sizes. Forbidden globals are :mod:`.unpickler`'s to refuse.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any, BinaryIO

import numpy as np

from ..errors import CheckpointFormatError
from ..safe_pickle import FormatProblem as _Bad
from .storage import Storage
from .unpickler import TorchUnpickler, check_storage_record, finalize

__all__ = ["load_zip"]


def load_zip(fh: BinaryIO, path: str) -> Any:
    """The object saved in the zip checkpoint ``fh`` (named ``path`` in errors), finalised."""
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointFormatError(f"{path}: corrupt or truncated zip archive ({e})") from e
    with zf:
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkls and "data.pkl" in names:
            pkls = ["data.pkl"]
        if len(pkls) != 1:
            raise CheckpointFormatError(
                f"{path}: not a PyTorch zip checkpoint (expected one '<folder>/data.pkl', found "
                f"{len(pkls)})"
            )
        prefix = pkls[0][: -len("data.pkl")]

        def read(name: str) -> bytes:
            try:
                return zf.read(name)
            except KeyError as e:
                raise _Bad(f"missing archive record '{name}'") from e
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError,
                    RuntimeError) as e:
                raise _Bad(f"cannot read archive record '{name}' ({e})") from e

        big_endian = False
        if prefix + "byteorder" in names:
            order = read(prefix + "byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise _Bad(f"unknown byteorder record {order!r}")
            big_endian = order == "big"

        storages: dict[str, Storage] = {}

        def persistent_load(pid: Any) -> Storage:
            storage_type, key, numel = check_storage_record(pid, (5,))
            st = storages.get(key)
            if st is None:
                st = Storage(key, storage_type.dtype, numel, big_endian)
                raw = read(f"{prefix}data/{key}")
                if len(raw) != st.nbytes:
                    raise _Bad(
                        f"storage record 'data/{key}' holds {len(raw)} bytes but "
                        f"{numel} x {storage_type.name} needs {st.nbytes}"
                    )
                st.raw = np.frombuffer(raw, dtype=np.uint8)
                storages[key] = st
            elif st.dtype != storage_type.dtype or st.numel != numel:
                raise _Bad(f"storage {key!r} is referenced with inconsistent types or sizes")
            return st

        data = read(pkls[0])
        obj = TorchUnpickler(io.BytesIO(data), path, persistent_load).load()
        return finalize(obj)
