"""``poll_oneoff``: wait for clock timeouts and fd readiness (witx `$subscription` / `$event`).

Clock subscriptions become a ``select`` timeout (the earliest one wins; absolute times are converted
from the named clock); fd subscriptions on files without a host fd to wait on (regular files, null)
are always ready, as POSIX and wasmtime report them. Every ready subscription yields one event.
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import termios
import time
from typing import TYPE_CHECKING

from . import abi
from .errno_map import errno_from_os
from .errors import Errno

if TYPE_CHECKING:
    from .host import WasiHost

MAX_SUBSCRIPTIONS = 4096

_NOW = {
    abi.CLOCK_REALTIME: time.time_ns,
    abi.CLOCK_MONOTONIC: time.monotonic_ns,
    abi.CLOCK_PROCESS_CPUTIME_ID: time.process_time_ns,
    abi.CLOCK_THREAD_CPUTIME_ID: time.thread_time_ns,
}


def poll_oneoff(host: WasiHost, in_ptr: int, out_ptr: int, nsubs: int, nevents_ptr: int) -> None:
    mem = host.memory
    if nsubs == 0:
        raise Errno(abi.EINVAL)  # witx: at least one subscription; wasmtime says EINVAL
    if nsubs > MAX_SUBSCRIPTIONS:
        raise Errno(abi.EINVAL)
    raw = mem.read(in_ptr, nsubs * abi.SUBSCRIPTION_SIZE)
    mem.view(out_ptr, nsubs * abi.EVENT.size)  # EFAULT before blocking, not after

    # (userdata, type, errno, nbytes, flags)
    ready: list[tuple[int, int, int, int, int]] = []
    timeout_ns: int | None = None
    clock_subs: list[tuple[int, int]] = []  # (deadline in monotonic ns, userdata)
    readers: dict[int, list[int]] = {}
    writers: dict[int, list[int]] = {}
    start = time.monotonic_ns()

    for i in range(nsubs):
        base = i * abi.SUBSCRIPTION_SIZE
        userdata, tag = abi.SUBSCRIPTION_HEAD.unpack_from(raw, base)
        if tag == abi.EVENTTYPE_CLOCK:
            clock_id, timeout, _precision, flags = abi.SUBSCRIPTION_CLOCK.unpack_from(raw, base + 16)
            now_fn = _NOW.get(clock_id)
            if now_fn is None:
                ready.append((userdata, tag, abi.EINVAL, 0, 0))
                continue
            # An absolute timeout is a time on the named clock; a relative one starts now.
            delay = max(0, timeout - now_fn()) if flags & abi.SUBCLOCKFLAGS_ABSTIME else timeout
            clock_subs.append((start + delay, userdata))
            timeout_ns = delay if timeout_ns is None else min(timeout_ns, delay)
        elif tag in (abi.EVENTTYPE_FD_READ, abi.EVENTTYPE_FD_WRITE):
            (fd,) = abi.SUBSCRIPTION_FD.unpack_from(raw, base + 16)
            right = abi.RIGHT_FD_READ if tag == abi.EVENTTYPE_FD_READ else abi.RIGHT_FD_WRITE
            try:
                f = host.fds.get(fd)
                if right & ~f.rights_base and abi.RIGHT_POLL_FD_READWRITE & ~f.rights_base:
                    raise Errno(abi.ENOTCAPABLE)
            except Errno as e:
                ready.append((userdata, tag, e.code, 0, 0))
                continue
            host_fd = f.poll_fileno()
            if host_fd is None:
                nbytes = _remaining(f) if tag == abi.EVENTTYPE_FD_READ else 0
                ready.append((userdata, tag, 0, nbytes, 0))
            else:
                (readers if tag == abi.EVENTTYPE_FD_READ else writers).setdefault(host_fd, []).append(
                    userdata
                )
        else:
            raise Errno(abi.EINVAL)

    if ready:
        timeout_ns = 0
    if readers or writers:
        for host_fd, ready_read, ready_write in _wait(readers, writers, timeout_ns):
            if ready_read:
                nbytes = _available(host_fd)
                ready.extend((ud, abi.EVENTTYPE_FD_READ, 0, nbytes, 0) for ud in readers[host_fd])
            if ready_write:
                ready.extend((ud, abi.EVENTTYPE_FD_WRITE, 0, 0, 0) for ud in writers[host_fd])
    elif timeout_ns:
        _wait({}, {}, timeout_ns)

    now = time.monotonic_ns()
    due = [ud for deadline, ud in clock_subs if deadline <= now]
    if not ready and not due and clock_subs:
        # We waited for the earliest clock; it has expired even if the host clock's rounding disagrees.
        due = [min(clock_subs)[1]]
    ready.extend((ud, abi.EVENTTYPE_CLOCK, 0, 0, 0) for ud in due)

    for index, (ud, tag, err, nbytes, flags) in enumerate(ready):
        mem.pack(abi.EVENT, out_ptr + index * abi.EVENT.size, ud, err, tag, nbytes, flags)
    mem.set_u32(nevents_ptr, len(ready))


_MAX_WAIT_MS = 1 << 30  # poll(2) takes an int of milliseconds; longer waits loop
_READ_EVENTS = select.POLLIN | select.POLLHUP | select.POLLERR
_WRITE_EVENTS = select.POLLOUT | select.POLLERR


def _wait(
    readers: dict[int, list[int]], writers: dict[int, list[int]], timeout_ns: int | None
) -> list[tuple[int, bool, bool]]:
    """Wait until a host fd is ready or ``timeout_ns`` passes (None: no timeout)."""
    poller = select.poll()
    for host_fd in set(readers) | set(writers):
        mask = (select.POLLIN if host_fd in readers else 0) | (select.POLLOUT if host_fd in writers else 0)
        poller.register(host_fd, mask)
    deadline = None if timeout_ns is None else time.monotonic_ns() + timeout_ns
    while True:
        if deadline is None:
            wait_ms = None if (readers or writers) else _MAX_WAIT_MS
        else:
            remaining = max(0, deadline - time.monotonic_ns())
            wait_ms = min(_MAX_WAIT_MS, (remaining + 999_999) // 1_000_000)
        try:
            events = poller.poll(wait_ms)
        except OSError as e:
            raise Errno(errno_from_os(e)) from None
        if events or wait_ms == 0:
            return [(fd, bool(ev & _READ_EVENTS), bool(ev & _WRITE_EVENTS)) for fd, ev in events]


def _remaining(f: object) -> int:
    fd = getattr(f, "host_fd", None)
    if fd is None:
        return 0
    try:
        st = os.fstat(fd)
        pos = os.lseek(fd, 0, os.SEEK_CUR)
        return max(0, st.st_size - pos)
    except OSError:
        return 0


def _available(host_fd: int) -> int:
    try:
        buf = array.array("i", [0])
        fcntl.ioctl(host_fd, termios.FIONREAD, buf)
        return int(buf[0])
    except OSError:
        return 0
