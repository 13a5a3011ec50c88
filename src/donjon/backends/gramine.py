"""``sgx``: SGX DCAP quotes through Gramine's ``/dev/attestation`` pseudo-filesystem.

Gramine documentation, "Attestation and Secret Provisioning", section
"Low-level /dev/attestation interface":

- ``attestation_type`` (read) names the scheme: ``none``, ``epid`` or ``dcap``
  (set by the manifest's ``sgx.remote_attestation``).
- ``user_report_data`` (write) takes the 64 bytes embedded in the report and quote.
- ``quote`` (read) is the SGX quote produced by the Quoting Enclave for the
  user report data written last.

The files are process-local inside the enclave, so no locking is needed.
Donjon accepts only ``dcap``: EPID attestation (IAS) is end of life and the
attestation library verifies DCAP quotes. Like configfs-tsm, the access goes
through a :class:`~donjon.backends.fs.PseudoFs` so the tests run this code
over an emulation.
"""

from __future__ import annotations

import os

from donjon.backends.base import Availability, Evidence, EvidenceKind, check_binding
from donjon.backends.errors import BackendError, BackendUnavailable, EvidenceError, MalformedPlatformOutput
from donjon.backends.fs import OsPseudoFs, PseudoFs
from donjon.backends.layout import dcap_pck_chain, report_data_of

__all__ = ["DEFAULT_GRAMINE_ROOT", "MAX_QUOTE", "GramineBackend"]

DEFAULT_GRAMINE_ROOT = "/dev/attestation"
#: A DCAP quote with its PCK chain is about 5 KiB; Gramine's own buffer is 8 KiB.
MAX_QUOTE = 64 * 1024
_MAX_TYPE = 64

_FIX_MANIFEST = 'set sgx.remote_attestation = "dcap" in the Gramine manifest and rebuild/re-sign it'


class GramineBackend:
    """SGX evidence from inside a Gramine enclave (``gramine-sgx``)."""

    name = "sgx"
    attested = True
    simulated = False

    def __init__(
        self,
        *,
        root: str | os.PathLike[str] = DEFAULT_GRAMINE_ROOT,
        fs: PseudoFs | None = None,
        max_quote: int = MAX_QUOTE,
    ) -> None:
        self._fs: PseudoFs = fs if fs is not None else OsPseudoFs(root)
        self._max_quote = max_quote

    def __repr__(self) -> str:
        return f"GramineBackend(root={self._fs.root!r})"

    def probe(self) -> Availability:
        if not self._fs.is_dir(""):
            return Availability(
                usable=False,
                reason=f"not running under Gramine SGX ({self._fs.root} does not exist)",
                fix="run Donjon inside an SGX enclave with gramine-sgx; " + _FIX_MANIFEST,
            )
        try:
            kind = self._attestation_type()
        except BackendError as e:
            return Availability(usable=False, reason=e.reason, fix=e.fix)
        problem = _type_problem(kind)
        if problem is not None:
            return Availability(usable=False, reason=problem, fix=_FIX_MANIFEST)
        return Availability(usable=True, reason=f"Gramine SGX with DCAP attestation at {self._fs.root}")

    def evidence(self, binding: bytes) -> Evidence:
        binding = check_binding(binding, backend=self.name)
        if not self._fs.is_dir(""):
            raise BackendUnavailable(
                self.name, f"not running under Gramine SGX ({self._fs.root} does not exist)"
            )
        problem = _type_problem(self._attestation_type())
        if problem is not None:
            raise BackendUnavailable(self.name, problem, fix=_FIX_MANIFEST)
        try:
            self._fs.write_file("user_report_data", binding)
        except OSError as e:
            raise EvidenceError(
                self.name, f"writing user_report_data: {e.strerror or e}", errno=e.errno
            ) from e
        try:
            quote = self._fs.read_file("quote", self._max_quote)
        except OSError as e:
            raise EvidenceError(
                self.name,
                f"reading quote: {e.strerror or e}",
                fix="check that the host runs the AESM service with the DCAP quote provider "
                "(libsgx-dcap-default-qpl) configured for a PCCS",
                errno=e.errno,
            ) from e
        if not quote:
            raise MalformedPlatformOutput(self.name, "quote is empty")
        bound = report_data_of(EvidenceKind.SGX_QUOTE, quote, backend=self.name)
        if bound != binding:
            shown = "nothing" if bound is None else bound.hex()
            raise MalformedPlatformOutput(
                self.name, f"the quote binds {shown}, not the binding written to user_report_data"
            )
        return Evidence(
            kind=EvidenceKind.SGX_QUOTE,
            data=quote,
            binding=binding,
            backend=self.name,
            provider="gramine-dcap",
            certs=dcap_pck_chain(quote, backend=self.name),
        )

    def _attestation_type(self) -> str:
        try:
            raw = self._fs.read_file("attestation_type", _MAX_TYPE)
        except OSError as e:
            raise BackendUnavailable(
                self.name, f"cannot read {self._fs.root}/attestation_type: {e.strerror or e}", errno=e.errno
            ) from e
        try:
            return raw.decode("ascii").strip("\x00").strip()
        except UnicodeDecodeError as e:
            raise MalformedPlatformOutput(self.name, "attestation_type is not ASCII text") from e


def _type_problem(kind: str) -> str | None:
    if kind == "dcap":
        return None
    if kind == "none":
        return "Gramine runs without remote attestation (attestation_type is none)"
    if kind == "epid":
        return "Gramine uses EPID attestation, which is end of life; Donjon verifies DCAP quotes only"
    return f"unknown Gramine attestation_type {kind!r}"
