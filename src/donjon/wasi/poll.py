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
from .errno_map import wasi_error
from .errors import Errno
from .sockets import SocketFile

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
    sockets: list[tuple[int, int, SocketFile]] = []
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
            if isinstance(f, SocketFile):
                sockets.append((userdata, tag, f))
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
    if sockets:
        ready.extend(_wait_sockets(host, sockets, readers, writers, timeout_ns))
    elif readers or writers:
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
            raise wasi_error(e) from None
        if events or wait_ms == 0:
            return [(fd, bool(ev & _READ_EVENTS), bool(ev & _WRITE_EVENTS)) for fd, ev in events]


def _wait_sockets(
    host: WasiHost,
    sockets: list[tuple[int, int, SocketFile]],
    readers: dict[int, list[int]],
    writers: dict[int, list[int]],
    timeout_ns: int | None,
) -> list[tuple[int, int, int, int, int]]:
    """Wait for socket (and other host fd) subscriptions; the events of the ones that are ready.

    A socket's readiness is decided by the socket file after each wake-up (``poll_confirm``: a TLS
    socket can wake up with only half a record), so this loops until something is really ready or
    ``timeout_ns`` (the guest's earliest clock) passes. Each wait is bounded by the earliest stream
    deadline too (a handshake that must time out), and moves closed sockets' lingering output.
    """
    end = None if timeout_ns is None else time.monotonic_ns() + timeout_ns
    lingering = host.lingering
    while True:
        ready: list[tuple[int, int, int, int, int]] = []
        pending: list[tuple[int, int, SocketFile]] = []
        for userdata, tag, f in sockets:
            nbytes = f.poll_ready(tag == abi.EVENTTYPE_FD_READ)
            if nbytes is None:
                pending.append((userdata, tag, f))
            else:
                ready.append((userdata, tag, 0, nbytes, 0))
        masks: dict[int, int] = {}
        for host_fd in readers:
            masks[host_fd] = select.POLLIN
        for host_fd in writers:
            masks[host_fd] = masks.get(host_fd, 0) | select.POLLOUT
        wake: float | None = None  # earliest stream deadline, time.monotonic()
        for _userdata, tag, f in pending:
            fd = f.fileno()
            masks[fd] = masks.get(fd, 0) | f.poll_events(tag == abi.EVENTTYPE_FD_READ)
            deadline = f.poll_deadline()
            if deadline is not None and (wake is None or deadline < wake):
                wake = deadline
        lingering.register(masks)
        now = time.monotonic_ns()
        if ready:
            wait_ms: int | None = 0
        elif end is None:
            wait_ms = None
        else:
            wait_ms = min(_MAX_WAIT_MS, max(0, (end - now + 999_999) // 1_000_000))
        if wake is not None:
            wake_ms = max(0, int((wake - now / 1e9) * 1000) + 1)
            wait_ms = wake_ms if wait_ms is None else min(wait_ms, wake_ms)
        poller = select.poll()
        for fd, mask in masks.items():
            poller.register(fd, mask)
        try:
            events = dict(poller.poll(wait_ms))
        except OSError as e:
            raise wasi_error(e) from None
        lingering.step()
        deadline_passed = wake is not None and time.monotonic() >= wake
        for userdata, tag, f in pending:
            revents = events.get(f.fileno(), 0)
            if not revents and not deadline_passed:
                continue
            nbytes = f.poll_confirm(tag == abi.EVENTTYPE_FD_READ, revents)
            if nbytes is not None:
                ready.append((userdata, tag, 0, nbytes, 0))
        for host_fd, revents in events.items():
            if host_fd in readers and revents & _READ_EVENTS:
                nbytes = _available(host_fd)
                ready.extend((ud, abi.EVENTTYPE_FD_READ, 0, nbytes, 0) for ud in readers[host_fd])
            if host_fd in writers and revents & _WRITE_EVENTS:
                ready.extend((ud, abi.EVENTTYPE_FD_WRITE, 0, 0, 0) for ud in writers[host_fd])
        if ready or (end is not None and time.monotonic_ns() >= end):
            return ready


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
