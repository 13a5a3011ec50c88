"""Fakes for the backends' tests: the kernel's configfs-tsm and Gramine's /dev/attestation, in-process.

Both implement :class:`donjon.backends.fs.PseudoFs`, the interface the real
backends use, so the backend code under test runs unchanged (STYLE.md 10).

:class:`FakeTsmKernel` follows drivers/virt/coco/guest/report.c: ``mkdir`` makes
an entry (``ENXIO`` without a provider), writes to ``inblob``/``privlevel``
advance ``write_generation`` (``EBUSY`` when it would wrap onto
``read_generation``), reading ``outblob``/``auxblob`` regenerates the report
from the *platform* when the generations differ (``EINVAL`` before any
``inblob``), attributes a provider hides are absent, and errors can be injected
per operation. The *platform* is a function ``(inblob, privlevel) -> (outblob,
auxblob)``: recorded real evidence, a synthetic report, or a simulator.

The classes are handed to tests through fixtures (pytest's importlib mode
makes sibling modules unimportable).
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from donjon.backends.certtable import ARK_GUID, ASK_GUID, VCEK_GUID, build_cert_table

Platform = Callable[[bytes, int], tuple[bytes, bytes]]

_COMMON = {"generation", "provider", "inblob", "outblob"}
#: What each provider shows (report_attr_visible / report_bin_attr_visible in the drivers).
_VISIBLE = {
    "sev_guest": _COMMON | {"auxblob", "privlevel", "privlevel_floor"},
    "tdx_guest": set(_COMMON),
    "arm_cca_guest": set(_COMMON),
}
_READ_ONLY = {"generation", "provider", "outblob", "auxblob", "privlevel_floor"}
_WRITE_ONLY = {"inblob", "privlevel"}
_ULONG = 1 << 64


def _oserror(code: int, what: str) -> OSError:
    return OSError(code, f"{errno.errorcode.get(code, code)}: {what}")


@dataclass
class _Entry:
    inblob: bytes = b""
    privlevel: int = 0
    write_generation: int = 0
    read_generation: int = 0
    outblob: bytes | None = None
    auxblob: bytes | None = None


class FakeTsmKernel:
    """An emulated ``/sys/kernel/config/tsm/report``."""

    def __init__(
        self,
        provider: str | None,
        platform: Platform,
        *,
        present: bool = True,
        privlevel_floor: int = 0,
        root: str = "/fake/sys/kernel/config/tsm/report",
    ) -> None:
        self.provider = provider
        self.platform = platform
        self.present = present
        self.privlevel_floor = privlevel_floor
        self._root = root
        self.entries: dict[str, _Entry] = {}
        self.made: list[str] = []
        self.removed: list[str] = []
        self.reports_generated = 0
        #: "mkdir", "rmdir", "write:<attr>", "read:<attr>" -> errno to fail with
        self.faults: dict[str, int] = {}
        #: called after every successful attribute write: (kernel, entry, attribute)
        self.after_write: Callable[[FakeTsmKernel, str, str], None] | None = None

    @property
    def root(self) -> str:
        return self._root

    def _split(self, path: str) -> tuple[str, str]:
        entry, _, attr = path.partition("/")
        return entry, attr

    def _fault(self, key: str) -> None:
        code = self.faults.get(key)
        if code is not None:
            raise _oserror(code, key)

    def _visible(self) -> set[str]:
        return _VISIBLE.get(self.provider or "", set(_COMMON))

    def exists(self, path: str = "") -> bool:
        if not self.present:
            return False
        if not path:
            return True
        entry, attr = self._split(path)
        return entry in self.entries and (not attr or attr in self._visible())

    def is_dir(self, path: str = "") -> bool:
        if not self.present:
            return False
        return not path or (path in self.entries)

    def mkdir(self, path: str) -> None:
        self._fault("mkdir")
        if not self.present:
            raise _oserror(errno.ENOENT, path)
        if "/" in path:
            raise _oserror(errno.EPERM, path)
        if self.provider is None:
            raise _oserror(errno.ENXIO, path)
        if path in self.entries:
            raise _oserror(errno.EEXIST, path)
        self.entries[path] = _Entry()
        self.made.append(path)

    def rmdir(self, path: str) -> None:
        self._fault("rmdir")
        if path not in self.entries:
            raise _oserror(errno.ENOENT, path)
        del self.entries[path]
        self.removed.append(path)

    def _entry(self, path: str) -> tuple[_Entry, str]:
        name, attr = self._split(path)
        entry = self.entries.get(name)
        if entry is None or attr not in self._visible():
            raise _oserror(errno.ENOENT, path)
        return entry, attr

    @staticmethod
    def _advance(entry: _Entry) -> None:
        # try_advance_write_generation: refuse to wrap onto the last read generation.
        if entry.write_generation == (entry.read_generation - 1) % _ULONG:
            raise _oserror(errno.EBUSY, "write generation would wrap")
        entry.write_generation = (entry.write_generation + 1) % _ULONG

    def write_file(self, path: str, data: bytes) -> None:
        entry, attr = self._entry(path)
        self._fault(f"write:{attr}")
        if attr in _READ_ONLY:
            raise _oserror(errno.EACCES, path)
        if attr == "inblob":
            if len(data) > 64:  # TSM_REPORT_INBLOB_MAX: configfs refuses larger binary writes
                raise _oserror(errno.EFBIG, path)
            self._advance(entry)
            entry.inblob = bytes(data)
        elif attr == "privlevel":
            try:
                value = int(data.decode("ascii").strip(), 0)
            except (UnicodeDecodeError, ValueError):
                raise _oserror(errno.EINVAL, path) from None
            if value < self.privlevel_floor or value > 3:
                raise _oserror(errno.EINVAL, path)
            self._advance(entry)
            entry.privlevel = value
        if self.after_write is not None:
            self.after_write(self, self._split(path)[0], attr)

    def read_file(self, path: str, limit: int) -> bytes:
        entry, attr = self._entry(path)
        self._fault(f"read:{attr}")
        if attr in _WRITE_ONLY:
            raise _oserror(errno.EACCES, path)
        if attr == "generation":
            data = f"{entry.write_generation}\n".encode()
        elif attr == "provider":
            if self.provider is None:
                raise _oserror(errno.ENXIO, path)
            data = f"{self.provider}\n".encode()
        elif attr == "privlevel_floor":
            data = f"{self.privlevel_floor}\n".encode()
        else:
            if not entry.inblob:
                raise _oserror(errno.EINVAL, path)
            if entry.outblob is None or entry.read_generation != entry.write_generation:
                entry.outblob, entry.auxblob = None, None
                out, aux = self.platform(entry.inblob, entry.privlevel)
                self.reports_generated += 1
                entry.outblob, entry.auxblob = out, aux
                entry.read_generation = entry.write_generation
            data = entry.outblob if attr == "outblob" else (entry.auxblob or b"")
        if len(data) > limit:
            raise _oserror(errno.EFBIG, path)
        return data


class FakeGramine:
    """An emulated Gramine ``/dev/attestation`` (the low-level files the sgx backend uses)."""

    def __init__(
        self,
        quote: Callable[[bytes], bytes],
        *,
        attestation_type: str = "dcap",
        present: bool = True,
        root: str = "/fake/dev/attestation",
    ) -> None:
        self.quote = quote
        self.attestation_type = attestation_type
        self.present = present
        self._root = root
        self.user_report_data = bytes(64)
        self.quotes_made = 0
        self.faults: dict[str, int] = {}

    @property
    def root(self) -> str:
        return self._root

    _FILES = ("attestation_type", "user_report_data", "quote", "report", "target_info", "my_target_info")

    def exists(self, path: str = "") -> bool:
        return self.present and (not path or path in self._FILES)

    def is_dir(self, path: str = "") -> bool:
        return self.present and not path

    def mkdir(self, path: str) -> None:
        raise _oserror(errno.EPERM, path)

    def rmdir(self, path: str) -> None:
        raise _oserror(errno.EPERM, path)

    def write_file(self, path: str, data: bytes) -> None:
        if not self.exists(path) or not path:
            raise _oserror(errno.ENOENT, path)
        if f"write:{path}" in self.faults:
            raise _oserror(self.faults[f"write:{path}"], path)
        if path != "user_report_data":
            raise _oserror(errno.EACCES, path)
        self.user_report_data = bytes(data)

    def read_file(self, path: str, limit: int) -> bytes:
        if not self.exists(path) or not path:
            raise _oserror(errno.ENOENT, path)
        if f"read:{path}" in self.faults:
            raise _oserror(self.faults[f"read:{path}"], path)
        if path == "attestation_type":
            data = self.attestation_type.encode()
        elif path == "user_report_data":
            data = self.user_report_data
        elif path == "quote":
            self.quotes_made += 1
            data = self.quote(self.user_report_data)
        else:
            raise _oserror(errno.EACCES, path)
        if len(data) > limit:
            raise _oserror(errno.EFBIG, path)
        return data


# --- platforms ------------------------------------------------------------------------------------------


def recorded(outblob: bytes, auxblob: bytes = b"") -> Platform:
    """Real recorded evidence, whatever the inblob (decode-path tests)."""
    return lambda inblob, privlevel: (outblob, auxblob)


def synthetic_snp(inblob: bytes, privlevel: int) -> tuple[bytes, bytes]:
    """A report-shaped 1184-byte blob: version 2, VMPL, REPORT_DATA = inblob. Unsigned: flow tests only."""
    report = bytearray(0x4A0)
    struct.pack_into("<I", report, 0x00, 2)
    struct.pack_into("<I", report, 0x30, privlevel)
    report[0x50 : 0x50 + len(inblob)] = inblob
    return bytes(report), b""


def sim_snp_platform(vendor: object) -> Platform:
    """The SEV-SNP simulator behind the fake kernel, with its chain as the certificate table."""

    def platform(inblob: bytes, privlevel: int) -> tuple[bytes, bytes]:
        signed = vendor.evidence(inblob.ljust(64, b"\0"), vmpl=privlevel)  # type: ignore[attr-defined]
        vcek, ask, ark = signed.certs
        return signed.report, build_cert_table([(VCEK_GUID, vcek), (ASK_GUID, ask), (ARK_GUID, ark)])

    return platform


def milan_chain_der(vectors: Path) -> tuple[bytes, bytes, bytes]:
    """(VCEK, ASK, ARK) DER for go-sev-guest's real Milan report."""
    vcek = (vectors / "snp/gosevguest/vcek_milan.der").read_bytes()
    ask, ark = x509.load_pem_x509_certificates(
        (vectors / "snp/gosevguest/milan_cert_chain_vcek.pem").read_bytes()
    )
    der = serialization.Encoding.DER
    return vcek, ask.public_bytes(der), ark.public_bytes(der)


@pytest.fixture(scope="session")
def tsm_kernel() -> type[FakeTsmKernel]:
    return FakeTsmKernel


@pytest.fixture(scope="session")
def gramine_fs() -> type[FakeGramine]:
    return FakeGramine


@dataclass(frozen=True)
class Platforms:
    recorded: Callable[..., Platform] = recorded
    synthetic_snp: Platform = synthetic_snp
    sim_snp: Callable[[object], Platform] = sim_snp_platform
    milan_chain_der: Callable[[Path], tuple[bytes, bytes, bytes]] = milan_chain_der


@pytest.fixture
def platforms() -> Platforms:
    return Platforms()


@pytest.fixture(scope="session")
def sim_amd() -> object:
    """One simulated AMD for the session (three RSA-4096 keys: seconds, so only once)."""
    from donjon.attestation.simsnp import default_vendor

    return default_vendor("Milan")


@pytest.fixture(scope="session")
def sim_intel() -> object:
    from datetime import UTC, datetime

    from donjon.attestation.simtdx import SimulatedTdx

    return SimulatedTdx(issued_at=datetime(2026, 1, 1, tzinfo=UTC))
