"""Read the legacy format of ``torch.save``: before 1.6, or with the zip format turned off.

Written by PyTorch < 1.6 and by ``_use_new_zipfile_serialization=False``: five things back to
back in one stream: a pickled magic number, the pickled protocol version (1001), a pickled
sys-info dict, the pickled object (persistent ids ``('storage', storage_type, root_key,
location, numel, view_metadata)``), the pickled list of storage keys, then for each key in that
order an int64 element count followed by the raw data.

PyTorch's writer converts both the count and the data to little-endian whatever the machine
(``THPStorage_writeFileRaw``) and its reader ignores the sys-info ``little_endian`` flag and
``type_sizes`` (which describe the C types of the saving machine: a Windows ``long`` is 4
bytes, yet ``LongStorage`` is always int64). This reader does the same: both are checked for
being well-formed and are otherwise only informative. ``location`` (``'cpu'``, ``'cuda:0'``,
...) is ignored.

Refused, as :class:`~..safe_pickle.FormatProblem`: a wrong magic number or protocol, a malformed
header or key list, a key that the object does not use or that appears twice, a count that
differs from the declared size, a stream that ends inside a record, a storage with no record,
and a view outside its root storage. Forbidden globals are :mod:`.unpickler`'s to refuse.
"""

from __future__ import annotations

import io
import struct
from typing import Any, BinaryIO

import numpy as np

from ..safe_pickle import FormatProblem as _Bad
from ..safe_pickle import unpickle
from .storage import Storage
from .unpickler import TorchUnpickler, check_storage_record, decode, finalize

__all__ = ["load_legacy"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def load_legacy(fh: BinaryIO, path: str) -> Any:
    """The object saved in the legacy checkpoint ``fh`` (named ``path`` in errors), finalised."""
    # Read into memory: the storages then become zero-copy views of this one buffer.
    data = fh.read()
    fh = io.BytesIO(data)

    def small_pickle(what: str) -> Any:
        return unpickle(TorchUnpickler(fh, path), f"cannot read the {what}")

    magic = small_pickle("magic number")
    if magic != _LEGACY_MAGIC:
        raise _Bad("bad magic number: not a PyTorch checkpoint")
    protocol = small_pickle("protocol version")
    if protocol != _LEGACY_PROTOCOL:
        raise _Bad(f"unsupported legacy protocol version {protocol!r}")
    sys_info = small_pickle("sys-info header")
    if (not isinstance(sys_info, dict) or not isinstance(sys_info.get("little_endian"), bool)
            or not isinstance(sys_info.get("type_sizes", {}), dict)):
        raise _Bad(f"malformed sys-info header {sys_info!r}")

    storages: dict[str, Storage] = {}

    def persistent_load(pid: Any) -> Storage:
        storage_type, root_key, numel = check_storage_record(pid, (5, 6))
        view = decode(pid[5]) if len(pid) == 6 else None
        root = storages.get(root_key)
        if root is None:
            root = Storage(root_key, storage_type.dtype, numel)
            storages[root_key] = root
        elif root.dtype != storage_type.dtype or root.numel != numel:
            raise _Bad(f"storage {root_key!r} is referenced with inconsistent types or sizes")
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise _Bad(f"bad storage view record {view!r}")
        view_key, offset, view_size = decode(view[0]), view[1], view[2]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                   for v in (offset, view_size)) or offset + view_size > numel:
            raise _Bad(f"bad storage view record {view!r} for storage {root_key!r}")
        st = storages.get(view_key)
        if st is None:
            st = Storage(str(view_key), storage_type.dtype, view_size)
            st.base, st.base_offset = root, offset * storage_type.dtype.itemsize
            storages[str(view_key)] = st
        return st

    obj = unpickle(TorchUnpickler(fh, path, persistent_load),
                   "cannot unpickle the saved object")

    keys = small_pickle("storage key list")
    if not isinstance(keys, list) or not all(isinstance(k, (str, bytes)) for k in keys):
        raise _Bad("malformed storage key list")
    for key in map(decode, keys):
        st = storages.get(key)
        if st is None or st.base is not None:
            raise _Bad(f"storage key {key!r} in the key list is not used by the saved object")
        if st.raw is not None:
            raise _Bad(f"storage key {key!r} appears twice in the key list")
        head = fh.read(8)
        if len(head) != 8:
            raise _Bad(f"file ends before the size of storage {key!r}")
        (count,) = struct.unpack("<q", head)
        if count != st.numel:
            raise _Bad(f"storage {key!r} declares {st.numel} elements but its data record "
                       f"says {count}")
        pos = fh.tell()
        have = min(st.nbytes, len(data) - pos)
        if have != st.nbytes:
            raise _Bad(f"file ends inside storage {key!r} ({have} of {st.nbytes} bytes)")
        st.raw = np.frombuffer(data, dtype=np.uint8, count=st.nbytes, offset=pos)
        fh.seek(pos + st.nbytes)
    for key, st in storages.items():
        if st.base is None and st.raw is None:
            raise _Bad(f"missing storage record for key {key!r}")
    return finalize(obj)
