"""A Steward that trusts the SIMULATED vendors (``init --simulated``, ``donjon demo``): never production.

The simulated AMD and Intel (:func:`donjon.backends.sim.load_or_create_sim_vendor`) are saved in
one folder, the same one a Keep is given with ``donjon run --sim-vendor DIR``: a Keep with another
vendor (or none: one per process) signs with a root this Steward has never seen. This module puts,
for a Steward:

- the simulated roots, ``<vendor dir>/sim-snp-ark.pem`` and ``sim-tdx-root.pem``, which
  ``steward.toml`` lists under ``[roots] simulated``;
- their collateral where the Steward looks (``[collateral] dir``, by kind):
  ``snp-report/`` the ARK's CRL and the ASK/ARK chain; ``tdx-quote/`` the TCB info, the QE
  identity, their signing chain, the PCK CA's and the root CA's CRLs;
- :func:`simulated_platforms`: the policy tables that accept what the simulators report by
  default (:data:`SIM_MEASUREMENT`).

The SNP CRL is valid until 2049; the simulated Intel collateral is issued at ``init`` for
:data:`SIM_COLLATERAL_VALIDITY` (Intel's own lives a month: that realism is not worth a development
Steward that stops working after one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from donjon.steward.files import PRIVATE_DIR_MODE, PUBLIC_DIR_MODE, make_dir, write_public

__all__ = [
    "SIM_MEASUREMENT",
    "SimulatedVendors",
    "install_simulated_vendors",
    "simulated_platforms",
]

#: How long the simulated Intel collateral that a Steward holds stays current (the simulated PCK
#: chain lives ten years; the SNP simulator's CRL until 2049).
SIM_COLLATERAL_VALIDITY = timedelta(days=9 * 365)

#: What the simulators report when a Keep does not choose (``donjon run --backend sim-*``): 48 zero
#: bytes for the SNP MEASUREMENT and the TDX MRTD. Real hardware never reports this.
SIM_MEASUREMENT = bytes(48)


@dataclass(frozen=True)
class SimulatedVendors:
    """Where the simulated vendors are: ``vendor_dir`` (for ``--sim-vendor``) and their roots."""

    vendor_dir: Path
    roots: tuple[Path, ...]


def install_simulated_vendors(
    collateral_dir: Path, vendor_dir: Path, *, now: datetime | None = None
) -> SimulatedVendors:
    """Load (or create) the simulated vendors in ``vendor_dir``; write their collateral under
    ``collateral_dir`` (replacing what was there). Returns the roots a Steward must trust."""
    from donjon.backends.sim import load_or_create_sim_vendor, sim_root_path

    make_dir(vendor_dir, PRIVATE_DIR_MODE)  # the vendors' private keys: test material, but keys
    amd = load_or_create_sim_vendor("sim-snp", vendor_dir)
    intel = load_or_create_sim_vendor("sim-tdx", vendor_dir)
    snp = collateral_dir / "snp-report"
    tdx = collateral_dir / "tdx-quote"
    for folder in (collateral_dir, snp, tdx):
        make_dir(folder, PUBLIC_DIR_MODE)
    write_public(snp / "ark.crl", amd.crl(), replace=True)
    write_public(snp / "cert_chain.pem", amd.cert_chain_pem(), replace=True)
    # Intel's collateral lives a month; a development Steward should not start refusing sim-tdx
    # Keeps after one. This vendor object was just loaded for this call (and is not saved again),
    # so only the collateral written here lives as long as the simulated chain.
    intel.collateral_validity = SIM_COLLATERAL_VALIDITY
    collateral = intel.collateral(issued_at=(now or datetime.now(UTC)).replace(microsecond=0))
    for name, data in (
        ("tcb_info.json", collateral.tcb_info),
        ("qe_identity.json", collateral.qe_identity),
        ("tcb_chain.pem", collateral.tcb_info_issuer_chain),
        ("pck.crl", collateral.pck_crl),
        ("root.crl", collateral.root_crl),
    ):
        write_public(tdx / name, data, replace=True)
    roots = (sim_root_path("sim-snp", vendor_dir), sim_root_path("sim-tdx", vendor_dir))
    # Written again from the vendors themselves: a root left by another vendor (or by an older
    # Donjon under a wide umask) would make every Keep fail, or be writable by others.
    pem = serialization.Encoding.PEM
    write_public(roots[0], amd.ark.public_bytes(pem), replace=True)
    write_public(roots[1], intel.root.public_bytes(pem), replace=True)
    return SimulatedVendors(vendor_dir=vendor_dir, roots=roots)


def simulated_platforms(measurement: bytes = SIM_MEASUREMENT) -> str:
    """Policy tables accepting simulated SEV-SNP and TDX evidence that reports ``measurement``."""
    return (
        "[platform.sev-snp]\n"
        f'allowed_measurements = ["{measurement.hex()}"]\n'
        "\n"
        "[platform.tdx]\n"
        f'allowed_measurements = ["{measurement.hex()}"]\n'
    )
