"""Picking local devices and laying them out as a 1-D mesh (shared by batch runs and training)."""

from __future__ import annotations

from typing import Any, Optional

import jax
import numpy as np

__all__ = ["faces_mesh", "local_devices", "make_mesh"]


def local_devices(devices: Any = None) -> list:
    """The devices that ``devices`` names: None or 0 = all local devices, an int n = the first
    n local devices (ValueError unless ``1 <= n <=`` their number), or a sequence of devices
    (taken as given)."""
    local = jax.local_devices()
    if devices is None or (isinstance(devices, int) and devices == 0):
        return local
    if isinstance(devices, int):
        if not 1 <= devices <= len(local):
            raise ValueError(f"devices={devices}, but this process has {len(local)} local "
                             f"device(s) ({local[0].platform}); use 0 for all of them")
        return local[:devices]
    return list(devices)


def make_mesh(devices: Any = None, axis: str = "faces") -> jax.sharding.Mesh:
    """A 1-D mesh with axis ``axis`` over :func:`local_devices` ``(devices)``; a ``Mesh`` is
    returned as is."""
    if isinstance(devices, jax.sharding.Mesh):
        return devices
    return jax.sharding.Mesh(np.array(local_devices(devices)), (axis,))


def faces_mesh(devices: Any = None) -> Optional[jax.sharding.Mesh]:
    """A 1-D mesh (axis ``"faces"``) over local devices, or None for a single device.

    ``devices``: None or 0 = all local devices; an int n = the first n local devices; a
    sequence of devices; or a ``Mesh`` (returned as is, if it has more than one device).
    """
    if isinstance(devices, jax.sharding.Mesh):
        return devices if devices.size > 1 else None
    devs = local_devices(devices)
    return make_mesh(devs, axis="faces") if len(devs) > 1 else None
