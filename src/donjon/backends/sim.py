"""``sim-snp``, ``sim-tdx``: format-faithful simulated evidence, for development and tests.

Not TEEs. The simulators live in the attestation library
(:mod:`donjon.attestation.simsnp`: a simulated AMD with ARK/ASK/ASVK and
VCEK/VLEK, signing real ATTESTATION_REPORT layouts; :mod:`donjon.attestation.simtdx`:
a simulated Intel root, PCK chain, collateral and quoting enclave, signing real
v4/v5 TD quotes). This module adapts them to the
:class:`~donjon.backends.base.Backend` seam, importing them lazily so a build
without them still runs every other backend.

Where the simulated vendor comes from (the Keep and the Steward must use the
SAME one, or the Steward refuses the evidence):

1. an object passed in (``SimBackend(..., vendor=v)``): one process running
   both sides, such as the tests and ``donjon demo``;
2. a directory (``vendor_dir=``, or the environment variable
   ``DONJON_SIM_VENDOR``): :func:`load_or_create_sim_vendor` loads the vendor
   saved there, or generates and saves it on first use. The directory then holds
   ``sim-snp-vendor.json`` (keys and certificates: test material, mode 0600)
   and ``sim-snp-ark.pem`` (the root the Steward's policy names), and likewise
   ``sim-tdx-*`` when the TDX simulator can be saved;
3. neither: one vendor per process (:func:`donjon.attestation.simsnp.default_vendor`),
   only useful when the Steward runs in the same process.
"""

from __future__ import annotations

import errno
import importlib
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from threading import Lock
from types import ModuleType
from typing import Any

from cryptography.hazmat.primitives import serialization

from donjon.backends.base import Availability, Evidence, EvidenceKind, check_binding
from donjon.backends.errors import BackendUnavailable, EvidenceError, MalformedPlatformOutput
from donjon.backends.layout import dcap_pck_chain, report_data_of

__all__ = [
    "SIM_BACKENDS",
    "SIM_VENDOR_ENV",
    "SimBackend",
    "load_or_create_sim_vendor",
    "sim_root_path",
]

#: backend name -> simulator module
SIM_BACKENDS: dict[str, str] = {
    "sim-snp": "donjon.attestation.simsnp",
    "sim-tdx": "donjon.attestation.simtdx",
}
SIM_VENDOR_ENV = "DONJON_SIM_VENDOR"
#: A saved vendor is three PEM keys and certificates: a few KiB.
_MAX_VENDOR_FILE = 1 << 20

_process_tdx: Any = None
_process_lock = Lock()


def _load(name: str) -> ModuleType | None:
    module = SIM_BACKENDS[name]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        return None


def _require(name: str) -> ModuleType:
    module = _load(name)
    if module is None:
        raise BackendUnavailable(name, f"the simulator module {SIM_BACKENDS[name]} is not in this build")
    return module


def _vendor_class(name: str) -> Any:
    module = _require(name)
    return module.SimulatedAmd if name == "sim-snp" else module.SimulatedTdx


def _saveable(name: str) -> bool:
    cls = _vendor_class(name)
    return callable(getattr(cls, "load", None)) and callable(getattr(cls, "dump", None))


def sim_root_path(name: str, directory: str | os.PathLike[str]) -> Path:
    """The PEM file of the simulated vendor's root in ``directory``: what a Steward's policy trusts."""
    return Path(directory) / ("sim-snp-ark.pem" if name == "sim-snp" else "sim-tdx-root.pem")


def _new_vendor(name: str, product: str) -> Any:
    cls = _vendor_class(name)
    if name == "sim-snp":
        return cls.generate(product)
    # The TDX simulator reads no clock; its chain and collateral are issued "now".
    return cls(issued_at=datetime.now(UTC).replace(microsecond=0))


def _process_vendor(name: str, product: str) -> Any:
    global _process_tdx
    module = _require(name)
    if name == "sim-snp":
        return module.default_vendor(product)
    with _process_lock:
        if _process_tdx is None:
            _process_tdx = _new_vendor(name, product)
        return _process_tdx


def _root_pem(name: str, vendor: Any) -> bytes:
    cert = vendor.ark if name == "sim-snp" else vendor.root
    pem: bytes = cert.public_bytes(serialization.Encoding.PEM)
    return pem


def _write_new(path: Path, data: bytes, mode: int) -> bool:
    """Publish ``path`` with ``data`` whole, or return ``False`` if it already exists.

    The bytes go to a private temporary file first, then ``link(2)`` gives it
    its name atomically: a second process either loses the race or reads the
    complete file, never a half-written vendor.
    """
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask took away
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        return True
    finally:
        temp.unlink(missing_ok=True)


def load_or_create_sim_vendor(
    name: str, directory: str | os.PathLike[str] | None = None, *, product: str = "Milan"
) -> Any:
    """The simulated vendor for ``name`` (``sim-snp`` or ``sim-tdx``), shared through ``directory``.

    With a directory: load ``<name>-vendor.json`` if it exists, else generate a
    vendor, save it (mode 0600; it holds private keys, but only of a simulated
    vendor) and save its root as :func:`sim_root_path` (mode 0644), which is
    what a Steward's policy names to accept this simulator. Without one: a
    vendor per process. Returns a :class:`~donjon.attestation.simsnp.SimulatedAmd`
    or :class:`~donjon.attestation.simtdx.SimulatedTdx`; the Steward side calls
    ``trust_roots()`` (SNP) or uses ``root`` and ``collateral()`` (TDX) on it.
    """
    if name not in SIM_BACKENDS:
        raise ValueError(f"simulated backends are {sorted(SIM_BACKENDS)}, not {name!r}")
    if directory is None:
        return _process_vendor(name, product)
    if not _saveable(name):
        raise BackendUnavailable(
            name,
            "this build's simulator cannot be saved to a directory, so a Keep and a Steward in "
            "different processes cannot share it",
            fix=f"run the Keep and the Steward in one process (donjon demo), or unset {SIM_VENDOR_ENV}",
        )
    folder = Path(directory)
    vendor_file = folder / f"{name}-vendor.json"
    cls = _vendor_class(name)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not vendor_file.exists():
            vendor = _new_vendor(name, product)
            if _write_new(vendor_file, vendor.dump(), 0o600):
                _write_new(sim_root_path(name, folder), _root_pem(name, vendor), 0o644)
                return vendor
        with vendor_file.open("rb") as f:
            data = f.read(_MAX_VENDOR_FILE + 1)
    except OSError as e:
        raise BackendUnavailable(
            name, f"cannot use the simulated vendor directory {folder}: {e.strerror or e}", errno=e.errno
        ) from e
    if len(data) > _MAX_VENDOR_FILE:
        raise BackendUnavailable(
            name, f"{vendor_file} is larger than {_MAX_VENDOR_FILE} bytes", errno=errno.EFBIG
        )
    try:
        vendor = cls.load(data)
    except (ValueError, KeyError, TypeError) as e:
        raise BackendUnavailable(name, f"{vendor_file} is not a saved simulated vendor: {e}") from e
    root = sim_root_path(name, folder)
    if not root.exists():
        _write_new(root, _root_pem(name, vendor), 0o644)
    return vendor


class SimBackend:
    """A simulated TEE: evidence in the real format, signed by a simulated vendor chain.

    ``report_options`` are passed to the simulator for every report or quote
    (for example ``measurement=`` for SNP, ``mrtd=``/``rtmrs=`` for TDX), so a
    demo can present the measurements its Steward policy pins.
    """

    attested = True
    simulated = True

    def __init__(
        self,
        name: str,
        *,
        vendor: Any = None,
        vendor_dir: str | os.PathLike[str] | None = None,
        product: str = "Milan",
        report_options: Mapping[str, Any] | None = None,
    ) -> None:
        if name not in SIM_BACKENDS:
            raise ValueError(f"simulated backends are {sorted(SIM_BACKENDS)}, not {name!r}")
        self._name = name
        self._vendor = vendor
        env = os.environ.get(SIM_VENDOR_ENV)
        self._vendor_dir = Path(vendor_dir) if vendor_dir is not None else (Path(env) if env else None)
        self._product = product
        self._options = dict(report_options or {})

    @property
    def name(self) -> str:
        return self._name

    @property
    def vendor_dir(self) -> Path | None:
        return self._vendor_dir

    def __repr__(self) -> str:
        return f"SimBackend({self._name!r}, vendor_dir={self._vendor_dir!s})"

    def vendor(self) -> Any:
        """The simulated vendor this backend signs with (loaded or generated on first use)."""
        if self._vendor is None:
            self._vendor = load_or_create_sim_vendor(self._name, self._vendor_dir, product=self._product)
        return self._vendor

    def probe(self) -> Availability:
        if _load(self._name) is None:
            return Availability(
                usable=False,
                reason=f"the simulator module {SIM_BACKENDS[self._name]} is not in this build",
            )
        where = (
            f"vendor in {self._vendor_dir}"
            if self._vendor_dir is not None
            else f"a per-process vendor (set {SIM_VENDOR_ENV} to share one with a Steward)"
        )
        return Availability(
            usable=True,
            reason=f"simulated: NOT a TEE; evidence signed by a simulated vendor, {where}",
        )

    def evidence(self, binding: bytes) -> Evidence:
        binding = check_binding(binding, backend=self._name)
        vendor = self.vendor()
        try:
            if self._name == "sim-snp":
                signed = vendor.evidence(binding, **self._options)
                kind, data, certs = EvidenceKind.SNP_REPORT, bytes(signed.report), tuple(signed.certs)
            else:
                kind = EvidenceKind.TDX_QUOTE
                data = bytes(vendor.quote(binding, **self._options))
                certs = dcap_pck_chain(data, backend=self._name)
        except (ValueError, TypeError) as e:
            raise EvidenceError(self._name, f"the simulator refused: {e}") from e
        if report_data_of(kind, data, backend=self._name) != binding:
            raise MalformedPlatformOutput(self._name, "the simulator's evidence does not carry the binding")
        return Evidence(
            kind=kind,
            data=data,
            binding=binding,
            backend=self._name,
            provider=self._name,
            certs=certs,
            simulated=True,
        )
