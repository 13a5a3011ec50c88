"""``azure-snp``, ``azure-tdx``: Azure confidential VMs, through the paravisor's vTPM.

On an Azure CVM the guest reaches no hardware report interface; the paravisor
keeps the hardware report in an *HCL report* in vTPM NV index ``0x01400001``
(docs/azure.md, :mod:`donjon.attestation.hcl`). One request:

1. read the HCL report from the NV index (in chunks of the TPM's NV buffer);
   its report type must be this backend's TEE;
2. quote, by the attestation key (persistent handle ``0x81000003``), the
   SHA-256 PCRs 0-23 with qualifying data ``SHA-256(binding)`` (the 64-byte
   binding does not fit every TPM's TPM2B_DATA: src/donjon/binding.py);
3. read those PCRs; the quote's PCR digest must match them (a PCR extended in
   between: retried, 3 attempts);
4. the hardware endorsement from Azure's instance metadata service (IMDS):
   SEV-SNP, the VCEK and its chain (``/metadata/THIM/amd/certification``);
   TDX, the TD quote of the HCL's TD report (``/acc/tdquote``);
5. the evidence is the v1 JSON document (docs/attestation.md).

The TPM is reached through ``tpm2-pytss`` (the TCG ESAPI over Debian's
``libtss2``), by TCTI: ``device:/dev/tpmrm0`` on Azure, ``swtpm:...`` in tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from donjon.backends.base import Availability, Evidence, EvidenceKind, check_binding
from donjon.backends.errors import BackendUnavailable, EvidenceError, MalformedPlatformOutput

__all__ = [
    "AK_HANDLE",
    "AZURE_BACKENDS",
    "DEFAULT_IMDS",
    "DEFAULT_TCTI",
    "HCL_NV_INDEX",
    "AzureVtpmBackend",
]

HCL_NV_INDEX = 0x01400001
AK_HANDLE = 0x81000003
DEFAULT_TCTI = "device:/dev/tpmrm0"
DEFAULT_IMDS = "http://169.254.169.254"
#: backend -> (TEE in the HCL report, evidence kind)
AZURE_BACKENDS = {"azure-snp": "sev-snp", "azure-tdx": "tdx"}
_PCRS = tuple(range(24))
_ATTEMPTS = 3
#: An IMDS answer is a few KiB (a VCEK chain, a TD quote).
_MAX_IMDS_BYTES = 64 * 1024

#: fetch(method, url, json body or None) -> response body; raises OSError when IMDS cannot answer
Fetch = Callable[[str, str, dict[str, Any] | None], bytes]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _httpx_fetch(timeout: float) -> Fetch:
    def fetch(method: str, url: str, body: dict[str, Any] | None) -> bytes:
        import httpx

        # IMDS answers only requests that carry "Metadata: true" and no proxy (Azure IMDS docs).
        try:
            with (
                httpx.Client(timeout=timeout, trust_env=False) as client,
                client.stream(method, url, json=body, headers={"Metadata": "true"}) as r,
            ):
                r.raise_for_status()
                data = b""
                for chunk in r.iter_bytes():
                    data += chunk
                    if len(data) > _MAX_IMDS_BYTES:
                        raise ValueError(f"IMDS answer larger than {_MAX_IMDS_BYTES} bytes")
                return data
        except httpx.HTTPError as e:
            raise OSError(f"{method} {url}: {e}") from e

    return fetch


class AzureVtpmBackend:
    """Evidence from the paravisor's vTPM on an Azure SEV-SNP or TDX confidential VM."""

    attested = True
    simulated = False

    def __init__(
        self,
        name: str,
        *,
        tcti: str = DEFAULT_TCTI,
        imds: str = DEFAULT_IMDS,
        fetch: Fetch | None = None,
        timeout: float = 10.0,
    ) -> None:
        if name not in AZURE_BACKENDS:
            raise ValueError(f"not an Azure backend: {name!r}")
        self.name = name
        self.tee = AZURE_BACKENDS[name]
        self.kind = EvidenceKind.AZURE_SNP_VTPM if self.tee == "sev-snp" else EvidenceKind.AZURE_TDX_VTPM
        self.tcti = tcti
        self.imds = imds.rstrip("/")
        self.fetch = fetch or _httpx_fetch(timeout)

    # --- the TPM -------------------------------------------------------------------------------------

    def _esapi(self) -> Any:
        device = self.tcti.removeprefix("device:") if self.tcti.startswith("device:") else None
        if device is not None and not Path(device).exists():
            # Checked first: the TSS would log its own errors on stderr for a missing device.
            raise BackendUnavailable(
                self.name, f"no TPM device {device}", fix="run on an Azure confidential VM (vTPM enabled)"
            )
        # The TSS logs its own failures (a missing NV index is an expected answer here) on stderr:
        # quiet unless the operator asks for them (TSS2_LOG, tpm2-tss docs/logging.md).
        os.environ.setdefault("TSS2_LOG", "all+NONE")
        try:
            from tpm2_pytss import ESAPI
        except ImportError as e:
            raise BackendUnavailable(
                self.name,
                "the TPM stack is not installed (tpm2-pytss)",
                fix="apt-get install libtss2-dev; pip install tpm2-pytss",
            ) from e
        try:
            return ESAPI(self.tcti)
        except Exception as e:  # the TSS reports a missing TPM as TSS2_Exception or OSError
            raise BackendUnavailable(
                self.name,
                f"no TPM at {self.tcti} ({e})",
                fix="run on an Azure confidential VM (vTPM enabled)",
            ) from e

    def _read_hcl(self, esapi: Any) -> bytes:
        from tpm2_pytss import TSS2_Exception

        try:
            index = esapi.tr_from_tpmpublic(HCL_NV_INDEX)
            public, _ = esapi.nv_read_public(index)
        except TSS2_Exception as e:
            raise BackendUnavailable(
                self.name,
                f"the vTPM holds no HCL report (NV index {HCL_NV_INDEX:#010x}): not an Azure confidential VM",
                fix="use the snp/tdx backends on other confidential VMs",
            ) from e
        size = int(public.nvPublic.dataSize)
        from donjon.attestation.hcl import MAX_HCL_BYTES

        if size > MAX_HCL_BYTES:
            raise MalformedPlatformOutput(self.name, f"HCL report NV index is {size} bytes")
        chunk = 1024  # TPM2_PT_NV_BUFFER_MAX is at least 1024 on every TPM Donjon knows
        try:
            return b"".join(
                bytes(esapi.nv_read(index, min(chunk, size - off), off, index))
                for off in range(0, size, chunk)
            )
        except TSS2_Exception as e:
            raise EvidenceError(self.name, f"cannot read the HCL report: {e}") from e

    def _hcl(self, raw: bytes) -> Any:
        from donjon.attestation.errors import AttestationError
        from donjon.attestation.hcl import parse_hcl_report

        try:
            report = parse_hcl_report(raw)
        except AttestationError as e:
            raise MalformedPlatformOutput(self.name, f"the HCL report does not parse: {e}") from e
        if report.tee != self.tee:
            raise BackendUnavailable(
                self.name,
                f"the HCL report wraps a {report.tee} report, not {self.tee}",
                fix=f"use the azure-{'snp' if report.tee == 'sev-snp' else 'tdx'} backend",
            )
        return report

    def _quote(self, esapi: Any, qualifying: bytes) -> tuple[bytes, bytes, list[bytes]]:
        from tpm2_pytss import TPM2_ALG, TPMT_SIG_SCHEME, TSS2_Exception

        from donjon.attestation import tpm
        from donjon.attestation.errors import AttestationError

        selection = "sha256:" + ",".join(map(str, _PCRS))
        scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.RSASSA)
        scheme.details.any.hashAlg = TPM2_ALG.SHA256
        try:
            ak = esapi.tr_from_tpmpublic(AK_HANDLE)
            for _ in range(_ATTEMPTS):
                attest, signature = esapi.quote(ak, selection, qualifying, scheme)
                message = bytes(attest)
                values = self._pcr_values(esapi)
                quote = tpm.parse_quote(message)
                if quote.extra_data != qualifying:
                    raise MalformedPlatformOutput(self.name, "the TPM quote does not carry the binding")
                if hashlib.sha256(b"".join(values)).digest() == quote.pcr_digest:
                    return message, bytes(signature.signature.rsassa.sig), values
        except TSS2_Exception as e:
            raise EvidenceError(self.name, f"the vTPM refused the quote: {e}") from e
        except AttestationError as e:
            raise MalformedPlatformOutput(self.name, f"the vTPM's quote does not parse: {e}") from e
        raise EvidenceError(self.name, f"PCRs kept changing during {_ATTEMPTS} quotes", fix="retry")

    def _pcr_values(self, esapi: Any) -> list[bytes]:
        # TPM2_PCR_Read returns at most 8 digests per call, lowest index first.
        values: list[bytes] = []
        remaining = list(_PCRS)
        while remaining:
            _, _, digests = esapi.pcr_read("sha256:" + ",".join(map(str, remaining)))
            got = [bytes(d) for d in digests]
            if not got:
                raise MalformedPlatformOutput(self.name, "the vTPM returned no PCR values")
            values += got
            remaining = remaining[len(got) :]
        return values

    # --- IMDS ------------------------------------------------------------------------------------------

    def _endorsement(self, report: Any) -> tuple[str, bytes, tuple[bytes, ...]]:
        from donjon.attestation.errors import AttestationError
        from donjon.attestation.pki import load_certificates

        try:
            if self.tee == "sev-snp":
                answer = json.loads(self.fetch("GET", f"{self.imds}/metadata/THIM/amd/certification", None))
                certs = load_certificates(
                    (answer["vcekCert"] + answer.get("certificateChain", "")).encode(), what="VCEK"
                )
                from cryptography.hazmat.primitives.serialization import Encoding

                ders = tuple(c.public_bytes(Encoding.DER) for c in certs)
                return "vcek", ders[0], ders
            answer = json.loads(
                self.fetch("POST", f"{self.imds}/acc/tdquote", {"report": _b64url(report.hw_report)})
            )
            text = answer["quote"]
            return "td_quote", base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), ()
        except OSError as e:  # unreachable, or an HTTP error status
            raise EvidenceError(self.name, f"Azure IMDS ({self.imds}) unreachable: {e}", fix="retry") from e
        except (ValueError, KeyError, TypeError, AttestationError) as e:
            raise EvidenceError(
                self.name, f"Azure IMDS ({self.imds}) gave no usable endorsement: {e}", fix="retry"
            ) from e

    # --- the Backend protocol --------------------------------------------------------------------------

    def probe(self) -> Availability:
        try:
            with self._esapi() as esapi:
                self._hcl(self._read_hcl(esapi))
        except BackendUnavailable as e:
            return Availability(usable=False, reason=e.reason, fix=e.fix)
        except EvidenceError as e:
            return Availability(usable=False, reason=e.reason, fix=e.fix)
        return Availability(usable=True, reason=f"the vTPM at {self.tcti} holds a {self.tee} HCL report")

    def evidence(self, binding: bytes) -> Evidence:
        from donjon.binding import vtpm_qualifying_data

        data = check_binding(binding, backend=self.name)
        qualifying = vtpm_qualifying_data(data)
        with self._esapi() as esapi:
            report = self._hcl(self._read_hcl(esapi))
            message, signature, values = self._quote(esapi, qualifying)
        hw_name, hw, certs = self._endorsement(report)
        document = {
            "version": 1,
            "tpm_quote": {
                "signature": signature.hex(),
                "message": message.hex(),
                "pcrs": [v.hex() for v in values],
            },
            "hcl_report": _b64url(report.raw),
            hw_name: _b64url(hw),
        }
        return Evidence(
            kind=self.kind,
            data=json.dumps(document).encode(),
            binding=data,
            backend=self.name,
            provider="azure-vtpm",
            certs=certs,
        )
