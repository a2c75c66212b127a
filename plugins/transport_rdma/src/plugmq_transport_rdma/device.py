"""Is RDMA usable here, on which address, and may this process pin the memory it needs?

Nothing here imports pyverbs at module import time: the plugin must load (and ``plugmq broker
--help`` must work) on machines without python3-pyverbs or without any RDMA device.
"""

from __future__ import annotations

import errno
import importlib
import ipaddress
import resource
from dataclasses import dataclass, field
from pathlib import Path

#: Bit of CAP_IPC_LOCK in /proc/self/status CapEff (pinning is then unlimited).
CAP_IPC_LOCK = 14
PYVERBS_HINT = (
    "install Debian's python3-pyverbs (the PyPI package needs rdma-core >= 59) and expose "
    "/usr/lib/python3/dist-packages/pyverbs to this Python (a .pth file or "
    "--system-site-packages)"
)


@dataclass(frozen=True)
class Availability:
    """Whether RDMA can be used, and if not, why (one sentence for the log)."""

    available: bool
    reason: str
    devices: tuple[str, ...] = field(default=())


class PinError(OSError):
    """Registering (pinning) RDMA buffers was refused; the message says which limit to raise."""


def probe() -> Availability:
    """Check pyverbs imports and that at least one RDMA device exists."""
    try:
        device = importlib.import_module("pyverbs.device")
    except ImportError as error:
        return Availability(False, f"pyverbs cannot be imported ({error}); {PYVERBS_HINT}")
    try:
        devices = tuple(d.name.decode() for d in device.get_device_list())
    except Exception as error:  # pyverbs raises PyverbsRDMAError (not an OSError)
        return Availability(
            False,
            f"the kernel offers no RDMA (get_device_list failed: {error}); "
            "load rdma_rxe/siw or an RDMA NIC driver (ib_uverbs, rdma_ucm)",
        )
    if not devices:
        return Availability(
            False,
            "no RDMA device (for Soft-RoCE: `rdma link add rxe0 type rxe netdev eth0`)",
        )
    return Availability(True, f"RDMA devices: {', '.join(devices)}", devices)


def default_address() -> str | None:
    """The IPv4 address of the first active RDMA port (from its GID table), or None."""
    device = importlib.import_module("pyverbs.device")
    for info in device.get_device_list():
        with device.Context(name=info.name.decode()) as context:
            address = _ipv4_gid(context)
        if address is not None:
            return address
    return None


def _ipv4_gid(context: object) -> str | None:
    port = context.query_port(1)  # type: ignore[attr-defined]
    for index in range(port.gid_tbl_len):
        try:
            gid = str(context.query_gid(1, index))  # type: ignore[attr-defined]
        except Exception:  # unpopulated GID entries raise PyverbsRDMAError
            break
        address = ipv4_from_gid(gid)
        if address is not None:
            return address
    return None


def ipv4_from_gid(gid: str) -> str | None:
    """``0000:...:ffff:0a00:020f`` (an IPv4-mapped RoCE GID) -> ``10.0.2.15``, else None."""
    try:
        mapped = ipaddress.IPv6Address(gid).ipv4_mapped
    except ValueError:
        return None
    return str(mapped) if mapped is not None and not mapped.is_unspecified else None


# -- pinned memory -------------------------------------------------------------------------------


def memlock_limit() -> int | None:
    """The soft RLIMIT_MEMLOCK in bytes, or None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return None if soft == resource.RLIM_INFINITY else soft


def may_lock_unlimited(status: Path = Path("/proc/self/status")) -> bool:
    """True when this process has CAP_IPC_LOCK (root usually does): no memlock limit applies."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_IPC_LOCK & 1)
    except OSError:
        pass
    return False


def pin_advice(need: int, pinned: int, limit: int | None) -> str:
    """The sentence telling an operator how to let this connection pin ``need`` bytes."""
    shown = "unlimited" if limit is None else f"{limit} bytes ({limit // 1024} KiB)"
    return (
        f"cannot pin {need} bytes of RDMA buffers for a connection ({pinned} bytes already "
        f"pinned; RLIMIT_MEMLOCK is {shown}): raise the memlock limit (`ulimit -l`, "
        "`memlock` in /etc/security/limits.conf, or LimitMEMLOCK= in a systemd unit) or lower "
        "--rdma-buffers / --rdma-buffer-size"
    )


def check_pinnable(need: int, pinned: int) -> None:
    """Raise :class:`PinError` up front when ``pinned + need`` exceeds the memlock limit."""
    limit = memlock_limit()
    if limit is None or may_lock_unlimited():
        return
    if pinned + need > limit:
        raise PinError(errno.ENOMEM, pin_advice(need, pinned, limit))


def pin_error(need: int, pinned: int, error: BaseException) -> PinError:
    """Turn a failed memory registration into a :class:`PinError` naming the limit."""
    return PinError(
        errno.ENOMEM, f"{pin_advice(need, pinned, memlock_limit())} (the device said: {error})"
    )
