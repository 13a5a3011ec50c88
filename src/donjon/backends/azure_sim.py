"""A software TPM laid out like Azure's vTPM, for tests and demos of ``azure-snp``/``azure-tdx``.

Not a TEE. :class:`SoftwareTpm` runs Debian's ``swtpm`` on loopback;
:func:`provision` gives a TPM what the Azure paravisor gives its vTPM: an RSA
attestation key at persistent handle ``0x81000003`` and, in NV index
``0x01400001``, an HCL report whose runtime claims carry that key and whose
hardware report (from a simulated vendor, :mod:`donjon.attestation.simsnp` or
:mod:`~donjon.attestation.simtdx`) binds them. Evidence the backends read from
it verifies only against the simulated vendor's root, as ``simulated``.

swtpm's NV indices hold at most 2048 bytes (Azure's holds 2600), so the HCL
report is stored at its own size, without Azure's zero padding.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from donjon.attestation.simazure import SimulatedVtpm, runtime_claims
from donjon.backends.azure import AK_HANDLE, HCL_NV_INDEX

__all__ = ["SoftwareTpm", "provision"]

_START_TIMEOUT = 10.0


def _free_pair() -> int:
    # The swtpm TCTI finds the control channel at the server port + 1.
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise OSError("no two consecutive free loopback ports")


class SoftwareTpm:
    """``swtpm`` serving a fresh TPM 2.0 on 127.0.0.1 (state in ``state_dir``); a context manager."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def start(self) -> SoftwareTpm:
        binary = shutil.which("swtpm")
        if binary is None:
            raise FileNotFoundError("swtpm is not installed (Debian: apt-get install swtpm)")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_pair()
        argv = [binary, "socket", "--tpm2", "--tpmstate", f"dir={self.state_dir}"]
        argv += ["--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1"]
        argv += ["--ctrl", f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1"]
        argv += ["--flags", "not-need-init,startup-clear"]
        self._proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while True:  # ready when it accepts connections
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise OSError("swtpm did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None

    def __enter__(self) -> SoftwareTpm:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def provision(
    tcti: str,
    hardware_report: Callable[[bytes], bytes],
    *,
    tdx: bool = False,
    vm_configuration: Mapping[str, Any] | None = None,
    extend: Mapping[int, bytes] | None = None,
) -> rsa.RSAPublicKey:
    """Lay out the TPM at ``tcti`` as Azure's vTPM; return the AK's public key.

    ``hardware_report(report_data)`` returns the SNP report or TD report binding
    ``report_data`` (SHA-256 of the runtime claims, zero-padded). ``extend``
    maps PCR indices to SHA-256 digests to extend (a measured boot's events).
    """
    from tpm2_pytss import (
        ESAPI,
        ESYS_TR,
        TPM2_ALG,
        TPM2B_NV_PUBLIC,
        TPM2B_PUBLIC,
        TPML_DIGEST_VALUES,
        TPMS_NV_PUBLIC,
        TPMT_HA,
    )
    from tpm2_pytss.constants import TPMA_NV, TPMA_OBJECT

    # An attestation key: restricted RSA-2048 signing, RSASSA/SHA-256, made inside the TPM.
    attributes = (
        TPMA_OBJECT.RESTRICTED
        | TPMA_OBJECT.SIGN_ENCRYPT
        | TPMA_OBJECT.FIXEDTPM
        | TPMA_OBJECT.FIXEDPARENT
        | TPMA_OBJECT.SENSITIVEDATAORIGIN
        | TPMA_OBJECT.USERWITHAUTH
    )
    config = vm_configuration or {"secure-boot": True, "tpm-enabled": True, "vmUniqueId": "swtpm"}
    with ESAPI(tcti) as e:
        template = TPM2B_PUBLIC.parse("rsa2048:rsassa-sha256:null", objectAttributes=attributes)
        handle, public, *_ = e.create_primary(None, template, ESYS_TR.ENDORSEMENT)
        e.evict_control(ESYS_TR.OWNER, handle, AK_HANDLE)
        modulus = int.from_bytes(bytes(public.publicArea.unique.rsa), "big")
        ak = rsa.RSAPublicNumbers(65537, modulus).public_key()
        claims = runtime_claims(ak, config)
        report = SimulatedVtpm.hcl_report(
            hardware_report(SimulatedVtpm.report_data(claims)), claims, tdx=tdx, nv_size=0
        )
        nv_public = TPM2B_NV_PUBLIC(
            nvPublic=TPMS_NV_PUBLIC(
                nvIndex=HCL_NV_INDEX,
                nameAlg=TPM2_ALG.SHA256,
                attributes=TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD | TPMA_NV.AUTHWRITE,
                dataSize=len(report),
            )
        )
        index = e.nv_define_space(None, nv_public, ESYS_TR.OWNER)
        for offset in range(0, len(report), 1024):
            e.nv_write(index, report[offset : offset + 1024], offset, ESYS_TR.OWNER)
        for pcr, value in sorted((extend or {}).items()):
            digest = TPMT_HA(hashAlg=TPM2_ALG.SHA256)
            digest.digest.sha256 = value
            e.pcr_extend(getattr(ESYS_TR, f"PCR{pcr}"), TPML_DIGEST_VALUES([digest]))
    return ak
