"""``snp``, ``tdx``, ``cca``: evidence through Linux configfs-tsm (``/sys/kernel/config/tsm/report``).

Kernel interface (Documentation/ABI/testing/configfs-tsm-report, Linux 6.7+;
drivers/virt/coco/guest/report.c):

- ``mkdir $root/$name`` creates a report entry; the kernel refuses with
  ``ENXIO`` when no TSM provider (sev-guest, tdx-guest, arm-cca-guest) is
  registered.
- ``provider`` (RO) names the format of ``outblob``: ``sev_guest`` (an SEV-SNP
  ATTESTATION_REPORT), ``tdx_guest`` (a TDX DCAP quote), ``arm_cca_guest`` (a
  CCA attestation token).
- ``generation`` (RO) counts writes to ``inblob`` and the options. "Userspace
  can detect conflicts by checking generation before writing to any attribute
  and making sure the number of writes matches expectations after reading
  @outblob, or it can prevent conflicts by creating a report instance per
  requesting context." Donjon does both: a fresh entry per request, and the count.
- ``privlevel`` (WO, SEV-SNP only) selects the VMPL, from ``privlevel_floor`` to 3.
- ``inblob`` (WO) takes up to 64 bytes; Donjon writes exactly the 64-byte binding.
- ``outblob`` (RO) is generated on first read after a write; ``auxblob`` (RO)
  holds, for ``sev_guest``, the certificate table of the extended guest request
  (see :mod:`donjon.backends.certtable`). Reads fail with ``EFBIG`` past the
  kernel's maximum, ``EINVAL`` before any ``inblob`` write, and with the
  provider's error (``EIO``, ``EBUSY``...) when the firmware or the host's
  quoting service fails.
- ``rmdir`` removes the entry.

All file access goes through a :class:`~donjon.backends.fs.PseudoFs`, so the
tests run this exact code over an in-process emulation of the kernel.
"""

from __future__ import annotations

import errno as errno_codes
import logging
import os
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from donjon.backends.base import Availability, Evidence, EvidenceKind, check_binding
from donjon.backends.certtable import chain_from_table, parse_cert_table
from donjon.backends.errors import (
    BackendError,
    BackendUnavailable,
    EvidenceError,
    GenerationRace,
    MalformedPlatformOutput,
)
from donjon.backends.fs import OsPseudoFs, PseudoFs
from donjon.backends.layout import dcap_pck_chain, report_data_of

__all__ = [
    "DEFAULT_TSM_REPORT_ROOT",
    "FLAVOURS",
    "MAX_BLOB",
    "TsmBackend",
    "TsmFlavour",
]

log = logging.getLogger(__name__)

DEFAULT_TSM_REPORT_ROOT = "/sys/kernel/config/tsm/report"
#: The kernel caps outblob and auxblob at TSM_REPORT_OUTBLOB_MAX (32 KiB in 6.7-6.17;
#: larger in trees with TDX Connect). Evidence is kilobytes; refuse more than this.
MAX_BLOB = 1 << 20
#: ``generation`` is a decimal ``unsigned long`` and a newline.
_MAX_SMALL = 64
#: SEV-SNP privilege levels (VMPL) are 0..3 (TSM_REPORT_PRIVLEVEL_MAX).
PRIVLEVEL_MAX = 3


@dataclass(frozen=True)
class TsmFlavour:
    """What one backend expects of configfs-tsm."""

    backend: str
    provider: str
    kind: EvidenceKind
    module: str
    what: str


FLAVOURS: dict[str, TsmFlavour] = {
    "snp": TsmFlavour("snp", "sev_guest", EvidenceKind.SNP_REPORT, "sev-guest", "AMD SEV-SNP guest"),
    "tdx": TsmFlavour("tdx", "tdx_guest", EvidenceKind.TDX_QUOTE, "tdx-guest", "Intel TDX guest"),
    "cca": TsmFlavour("cca", "arm_cca_guest", EvidenceKind.CCA_TOKEN, "arm-cca-guest", "Arm CCA realm"),
}
_BY_PROVIDER = {flavour.provider: flavour for flavour in FLAVOURS.values()}


class TsmBackend:
    """Evidence from configfs-tsm for one TEE (``snp``, ``tdx`` or ``cca``).

    ``root`` is the report directory (a parameter so tests point it at a fake
    tree); ``fs`` replaces the real file access entirely (the tests' kernel
    emulation). ``privlevel`` asks SEV-SNP for a report at that VMPL; ``None``
    leaves the kernel's default (its floor). ``explain_absence`` is called when
    the report directory does not exist, to say precisely why
    (:func:`donjon.backends.platform.explain_tsm_absence`).
    """

    attested = True
    simulated = False

    def __init__(
        self,
        name: str,
        *,
        root: str | os.PathLike[str] = DEFAULT_TSM_REPORT_ROOT,
        fs: PseudoFs | None = None,
        privlevel: int | None = None,
        max_attempts: int = 3,
        max_blob: int = MAX_BLOB,
        explain_absence: Callable[[], Availability] | None = None,
    ) -> None:
        if name not in FLAVOURS:
            raise ValueError(f"configfs-tsm backends are {sorted(FLAVOURS)}, not {name!r}")
        self._flavour = FLAVOURS[name]
        if privlevel is not None:
            if name != "snp":
                raise ValueError("privlevel (VMPL) exists only for snp")
            if not 0 <= privlevel <= PRIVLEVEL_MAX:
                raise ValueError(f"privlevel must be 0..{PRIVLEVEL_MAX}, got {privlevel}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._fs: PseudoFs = fs if fs is not None else OsPseudoFs(root)
        self._privlevel = privlevel
        self._max_attempts = max_attempts
        self._max_blob = max_blob
        self._explain_absence = explain_absence

    @property
    def name(self) -> str:
        return self._flavour.backend

    @property
    def flavour(self) -> TsmFlavour:
        return self._flavour

    def __repr__(self) -> str:
        return f"TsmBackend({self.name!r}, root={self._fs.root!r})"

    # -- probe ---------------------------------------------------------------------------------

    def probe(self) -> Availability:
        """Usable when the report directory exists, an entry can be made, and the provider is ours.

        Making (and removing) an entry generates no report: it is how the kernel
        says which provider is registered and whether this user may ask.
        """
        if not self._fs.is_dir(""):
            return self._absent()
        entry = self._entry_name("probe")
        try:
            self._mkdir(entry)
        except BackendError as e:
            return Availability(usable=False, reason=e.reason, fix=e.fix)
        try:
            provider = self._read_text(f"{entry}/provider")
        except BackendError as e:
            return Availability(usable=False, reason=e.reason, fix=e.fix)
        finally:
            self._rmdir(entry)
        mismatch = self._provider_mismatch(provider)
        if mismatch is not None:
            return Availability(usable=False, reason=mismatch.reason, fix=mismatch.fix)
        return Availability(usable=True, reason=f"configfs-tsm provider {provider} at {self._fs.root}")

    def _absent(self) -> Availability:
        if self._explain_absence is not None:
            return self._explain_absence()
        return Availability(
            usable=False,
            reason=f"{self._fs.root} does not exist (configfs not mounted, kernel older than 6.7, "
            f"or no TSM provider loaded)",
            fix="mount -t configfs none /sys/kernel/config; run a 6.7+ kernel with CONFIG_TSM_REPORTS "
            f"inside an {self._flavour.what}",
        )

    def _provider_mismatch(self, provider: str) -> BackendUnavailable | None:
        if provider == self._flavour.provider:
            return None
        other = _BY_PROVIDER.get(provider)
        if other is not None:
            return BackendUnavailable(
                self.name,
                f"this machine's TSM provider is {provider} ({other.what}), not {self._flavour.provider}",
                fix=f"use backend {other.backend}",
            )
        return BackendUnavailable(
            self.name,
            f"unknown configfs-tsm provider {provider!r} (expected {self._flavour.provider})",
        )

    # -- evidence ------------------------------------------------------------------------------

    def evidence(self, binding: bytes) -> Evidence:
        binding = check_binding(binding, backend=self.name)
        if not self._fs.is_dir(""):
            absent = self._absent()
            raise BackendUnavailable(self.name, absent.reason, fix=absent.fix)
        for attempt in range(1, self._max_attempts + 1):
            entry = self._entry_name("report")
            self._mkdir(entry)
            try:
                result = self._one_request(entry, binding)
            finally:
                self._rmdir(entry)
            if result is not None:
                return result
            log.warning(
                "configfs-tsm entry %s/%s was written by someone else (attempt %d)",
                self._fs.root,
                entry,
                attempt,
            )
        raise GenerationRace(
            self.name,
            f"another writer changed the report entry during each of {self._max_attempts} attempts",
            fix="find the other process writing under the configfs-tsm report directory",
        )

    def _one_request(self, entry: str, binding: bytes) -> Evidence | None:
        """One request in a fresh entry; ``None`` when the generation count shows another writer."""
        provider = self._read_text(f"{entry}/provider")
        mismatch = self._provider_mismatch(provider)
        if mismatch is not None:
            raise mismatch
        before = self._read_generation(entry)
        writes = 0
        if self._privlevel is not None:
            self._write(entry, "privlevel", f"{self._privlevel}\n".encode())
            writes += 1
        self._write(entry, "inblob", binding)
        writes += 1
        outblob = self._read_blob(entry, "outblob")
        auxblob = b""
        if self._flavour.kind is EvidenceKind.SNP_REPORT and self._fs.exists(f"{entry}/auxblob"):
            auxblob = self._read_blob(entry, "auxblob", allow_empty=True)
        after = self._read_generation(entry)
        if after != before + writes:
            return None
        return self._make_evidence(binding, provider, outblob, auxblob, after)

    def _make_evidence(
        self, binding: bytes, provider: str, outblob: bytes, auxblob: bytes, generation: int
    ) -> Evidence:
        kind = self._flavour.kind
        bound = report_data_of(kind, outblob, backend=self.name)
        if bound is not None and bound != binding:
            raise MalformedPlatformOutput(
                self.name,
                f"the {kind.value} binds {bound.hex()}, not the binding written to inblob ({binding.hex()})",
            )
        if kind is EvidenceKind.SNP_REPORT:
            certs = tuple(
                _der(cert, self.name)
                for cert in chain_from_table(parse_cert_table(auxblob, backend=self.name))
            )
        elif kind is EvidenceKind.TDX_QUOTE:
            certs = dcap_pck_chain(outblob, backend=self.name)
        else:
            certs = ()
        return Evidence(
            kind=kind,
            data=outblob,
            binding=binding,
            backend=self.name,
            provider=provider,
            certs=certs,
            generation=generation,
        )

    # -- file operations, with the kernel's errors turned into messages ----------------------------

    def _entry_name(self, purpose: str) -> str:
        return f"donjon-{purpose}-{os.getpid()}-{secrets.token_hex(6)}"

    def _mkdir(self, entry: str) -> None:
        try:
            self._fs.mkdir(entry)
        except OSError as e:
            raise self._error(e, f"creating report entry {self._fs.root}/{entry}") from e

    def _rmdir(self, entry: str) -> None:
        try:
            self._fs.rmdir(entry)
        except OSError as e:
            # The evidence (or the error being raised) matters more than the leftover entry.
            log.warning("could not remove configfs-tsm entry %s/%s: %s", self._fs.root, entry, e)

    def _write(self, entry: str, attribute: str, data: bytes) -> None:
        try:
            self._fs.write_file(f"{entry}/{attribute}", data)
        except OSError as e:
            raise self._error(e, f"writing {attribute}") from e

    def _read_blob(self, entry: str, attribute: str, *, allow_empty: bool = False) -> bytes:
        try:
            data = self._fs.read_file(f"{entry}/{attribute}", self._max_blob)
        except OSError as e:
            raise self._error(e, f"reading {attribute}") from e
        if not data and not allow_empty:
            raise MalformedPlatformOutput(self.name, f"{attribute} is empty")
        return data

    def _read_text(self, path: str) -> str:
        try:
            raw = self._fs.read_file(path, _MAX_SMALL)
        except OSError as e:
            raise self._error(e, f"reading {path.rsplit('/', 1)[-1]}") from e
        try:
            return raw.decode("ascii").strip()
        except UnicodeDecodeError as e:
            raise MalformedPlatformOutput(self.name, f"{path.rsplit('/', 1)[-1]} is not ASCII text") from e

    def _read_generation(self, entry: str) -> int:
        text = self._read_text(f"{entry}/generation")
        if not text.isdigit():
            raise MalformedPlatformOutput(self.name, f"generation is not a decimal number: {text!r}")
        return int(text)

    def _error(self, e: OSError, action: str) -> BackendError:
        """Map a kernel errno to an error that says what happened and what to do."""
        code = e.errno
        flavour = self._flavour
        where = self._fs.root
        if code in (errno_codes.EACCES, errno_codes.EPERM, errno_codes.EROFS):
            return BackendUnavailable(
                self.name,
                f"permission denied {action}",
                fix=f"run as root, or give this user write access to {where}",
                errno=code,
            )
        if code == errno_codes.ENXIO:
            return BackendUnavailable(
                self.name,
                f"no TSM provider is registered ({action}): the {flavour.module} driver is not loaded "
                f"or this is not an {flavour.what}",
                fix=f"modprobe {flavour.module} (inside an {flavour.what})",
                errno=code,
            )
        if code == errno_codes.ENOENT:
            return BackendUnavailable(
                self.name,
                f"{action}: no such file under {where} (the provider does not offer this attribute, "
                f"or the report directory vanished)",
                errno=code,
            )
        if code == errno_codes.EBUSY:
            return EvidenceError(
                self.name,
                f"{action}: the kernel says busy (too many writes to the entry without a read, "
                f"or the {flavour.module} driver is busy)",
                fix="retry; make sure nothing else writes under " + where,
                errno=code,
            )
        if code == errno_codes.EINVAL:
            reason = f"{action}: the kernel rejected the request as invalid"
            if "privlevel" in action:
                reason += f" (privlevel {self._privlevel} is below privlevel_floor or above {PRIVLEVEL_MAX})"
            return EvidenceError(self.name, reason, errno=code)
        if code == errno_codes.EFBIG:
            return MalformedPlatformOutput(
                self.name,
                f"{action}: the report exceeds the configfs-tsm maximum (or Donjon's {self._max_blob} bytes)",
                errno=code,
            )
        if code == errno_codes.EIO:
            fix = {
                "snp": "check dmesg for sev-guest errors; the host's SNP firmware or its certificate "
                "table (snphost / the VMM's extended guest request support) may be misconfigured",
                "tdx": "check that the host runs the TDX Quote Generation Service (QGS) and that the "
                "guest can reach it (vsock or TDVMCALL GetQuote); dmesg shows tdx-guest errors",
                "cca": "check dmesg for arm-cca-guest errors; the RMM failed to produce the token",
            }[self.name]
            return EvidenceError(
                self.name,
                f"{action}: the platform failed to produce the report (I/O error from the "
                f"{flavour.module} driver)",
                fix=fix,
                errno=code,
            )
        if code in (errno_codes.EAGAIN, errno_codes.ETIMEDOUT, errno_codes.EINTR):
            return EvidenceError(
                self.name,
                f"{action}: the platform did not answer in time ({e.strerror})",
                fix="retry",
                errno=code,
            )
        return EvidenceError(self.name, f"{action}: {e.strerror or e}", errno=code)


def _der(cert: bytes, backend: str) -> bytes:
    """One certificate-table entry as exactly one DER certificate.

    Entries are DER, but hosts round them up (zero padding after the
    certificate) and a few write PEM; both are tolerated, anything else is not.
    Only the DER framing is checked here: X.509 is the verifier's business (and
    real AMD certificates carry serial numbers stricter parsers warn about).
    """
    if cert.lstrip().startswith(b"-----BEGIN CERTIFICATE-----"):
        try:
            cert = ssl.PEM_cert_to_DER_cert(cert.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError) as e:
            raise MalformedPlatformOutput(backend, f"auxblob PEM certificate does not decode: {e}") from e
    size = _der_size(cert)
    if size is None or any(cert[size:]):
        raise MalformedPlatformOutput(
            backend, "auxblob certificate is not X.509 DER (one SEQUENCE, zero padding)"
        )
    return cert[:size]


def _der_size(data: bytes) -> int | None:
    """Total size of the DER SEQUENCE at the start of ``data`` (X.690 8.1.3 definite length), if any."""
    if len(data) < 2 or data[0] != 0x30:
        return None
    first = data[1]
    if first < 0x80:
        size = 2 + first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            return None
        size = 2 + count + int.from_bytes(data[2 : 2 + count], "big")
    return size if size <= len(data) else None
