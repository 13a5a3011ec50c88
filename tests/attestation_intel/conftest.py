"""Intel TDX/SGX bundles from ../shared/vectors (see its MANIFEST.tsv and VERIFY_TIMES.tsv).

Each bundle is the quote, its collateral and the verification time that
VERIFY_TIMES.tsv suggests, plus the explicit opt-ins a bundle needs because its
source repository did not keep every piece of collateral.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from donjon.attestation.dcap_verify import IntelCollateral


@dataclass(frozen=True)
class Bundle:
    name: str
    quote: bytes
    collateral: IntelCollateral
    at: datetime
    options: dict[str, Any] = field(default_factory=dict)


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def load_bundles(vectors: Path) -> dict[str, Bundle]:
    def rd(path: str) -> bytes:
        return (vectors / path).read_bytes()

    root = x509.load_der_x509_certificate(rd("roots/intel/steward_sgx_root.der"))
    root_pem = root.public_bytes(serialization.Encoding.PEM)
    # TCB Info / QE Identity issued after 2025-05-21 need Intel's re-issued TCB signing cert.
    tcb_2025 = rd("roots/intel/intel_sgx_tcb_signing_2025-05-06_2032-05-06.pem") + root_pem

    def dcapqvl(prefix: str) -> IntelCollateral:
        return IntelCollateral(
            tcb_info=rd(f"{prefix}.coll.tcbinfo.json"),
            tcb_info_issuer_chain=rd(f"{prefix}.coll.tcb_info_issuer_chain.pem"),
            qe_identity=rd(f"{prefix}.coll.qe_identity.json"),
            qe_identity_issuer_chain=rd(f"{prefix}.coll.qe_identity_issuer_chain.pem"),
            pck_crl=rd(f"{prefix}.coll.pck_crl.der"),
            root_crl=rd(f"{prefix}.coll.root_ca_crl.der"),
        )

    def steward(host: str, pck_ca: str) -> IntelCollateral:
        return IntelCollateral(
            tcb_info=rd(f"sgx/steward/{host}.tcbinfo.json"),
            tcb_info_issuer_chain=rd(f"sgx/steward/{host}.tcbinfo_issuer_chain.pem"),
            pck_crl=rd(f"sgx/steward/{host}.pck_{pck_ca}.crl.der"),
            root_crl=rd(f"sgx/steward/{host}.rootca.crl.der"),
        )

    gotdx = IntelCollateral(
        tcb_info=rd("tdx/gotdxguest/tcbinfo_fmspc_50806f000000.json"),
        tcb_info_issuer_chain=rd("tdx/gotdxguest/tcbinfo_issuer_chain.pem"),
        qe_identity=rd("tdx/gotdxguest/qe_identity_tdx.json"),
        qe_identity_issuer_chain=rd("tdx/gotdxguest/qe_identity_issuer_chain.pem"),
        pck_crl=rd("tdx/gotdxguest/pckcrl.der"),
        root_crl=rd("tdx/gotdxguest/rootcrl.der"),
    )
    bundles = [
        Bundle(
            "tdx-dcapqvl",
            rd("tdx/dcapqvl/tdx_quote"),
            dcapqvl("tdx/dcapqvl/tdx_quote"),
            _t("2025-07-19T10:00:34Z"),
        ),
        Bundle(
            "tdx-dcapqvl-near",
            rd("tdx/dcapqvl/near_quote.derived.bin"),
            dcapqvl("tdx/dcapqvl/near_quote"),
            _t("2025-09-10T00:00:00Z"),
        ),
        Bundle(
            "sgx-dcapqvl",
            rd("sgx/dcapqvl/sgx_quote"),
            dcapqvl("sgx/dcapqvl/sgx_quote"),
            _t("2025-07-19T10:01:17Z"),
        ),
        Bundle(
            "tdx-dcapqvl-outdated",
            rd("tdx/dcapqvl/tdx_quote_outdated"),
            dcapqvl("tdx/dcapqvl/tdx_quote_outdated"),
            _t("2026-03-01T00:00:00Z"),
        ),
        Bundle(
            "tdx-gotdx-spr-e4",
            rd("tdx/gotdxguest/tdx_prod_quote_SPR_E4.dat"),
            gotdx,
            _t("2023-07-01T01:00:00Z"),
        ),
        # go-tdx-guest kept no QE identity or CRLs of the v5 sample's date.
        Bundle(
            "tdx-gotdx-v5",
            rd("tdx/gotdxguest/quote_v5_sample.dat"),
            IntelCollateral(
                tcb_info=rd("tdx/gotdxguest/tcbinfo_fmspc_90c06f000000.json"), tcb_info_issuer_chain=tcb_2025
            ),
            _t("2026-02-03T01:00:00Z"),
            {"allow_missing_qe_identity": True, "allow_missing_crls": True},
        ),
        # trustee kept TCB info and QE identity but no CRLs.
        Bundle(
            "tdx-trustee-q6",
            rd("tdx/trustee/tdx_quote_6.dat"),
            IntelCollateral(
                tcb_info=rd("tdx/trustee/tcbInfo.json"),
                tcb_info_issuer_chain=tcb_2025,
                qe_identity=rd("tdx/trustee/enclaveIdentity.json"),
                qe_identity_issuer_chain=tcb_2025,
            ),
            _t("2025-11-01T00:00:00Z"),
            {"allow_missing_crls": True},
        ),
        # enarx/steward kept no QE identity for its SGX quotes.
        Bundle(
            "sgx-steward-xeon",
            rd("sgx/steward/xeon.quote.dat"),
            steward("xeon", "platform"),
            _t("2023-02-01T00:00:00Z"),
            {"allow_missing_qe_identity": True},
        ),
        Bundle(
            "sgx-steward-i5",
            rd("sgx/steward/i5.quote.dat"),
            steward("i5", "processor"),
            _t("2023-02-01T00:00:00Z"),
            {"allow_missing_qe_identity": True},
        ),
    ]
    return {b.name: b for b in bundles}


@pytest.fixture
def intel_bundles(vectors: Path) -> dict[str, Bundle]:
    return load_bundles(vectors)
