"""Backend names, construction, and selection under the workload's allow-list.

``auto`` picks the first *usable attested, non-simulated* backend in
:data:`AUTO_ORDER` (``snp``, ``tdx``, ``cca``, ``sgx``, ``azure-snp``,
``azure-tdx``): a confidential VM has exactly one configfs-tsm provider, so the
order among the first three only decides what is probed first; Gramine comes
next because an enclave inside a confidential VM is the rarer case; the Azure
backends last, as they are usable only where configfs-tsm is not (the vTPM holds
an HCL report). Simulators are never chosen automatically:
simulated evidence must be asked for by name. When nothing attested works,
``auto`` falls back to ``nil`` with a warning — unless the allow-list excludes
``nil``, in which case it refuses to start and says why each backend failed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from donjon.backends.base import Availability, Backend
from donjon.backends.errors import BackendNotAllowed, BackendUnavailable, UnknownBackend
from donjon.backends.nil import NilBackend
from donjon.backends.platform import PlatformRoots

__all__ = [
    "AUTO",
    "AUTO_ORDER",
    "BACKEND_NAMES",
    "create_backend",
    "probe_all",
    "select_backend",
]

log = logging.getLogger(__name__)

#: Every backend name, in the order ``platform info`` lists them (the same set as the
#: workload config's ``backends`` allow-list accepts: donjon.config.model.BACKEND_NAMES).
BACKEND_NAMES: tuple[str, ...] = (
    "snp",
    "tdx",
    "cca",
    "sgx",
    "azure-snp",
    "azure-tdx",
    "sim-snp",
    "sim-tdx",
    "nil",
)
AUTO = "auto"
AUTO_ORDER: tuple[str, ...] = ("snp", "tdx", "cca", "sgx", "azure-snp", "azure-tdx")


def create_backend(
    name: str,
    *,
    roots: PlatformRoots | None = None,
    sim_vendor_dir: str | os.PathLike[str] | None = None,
    privlevel: int | None = None,
) -> Backend:
    """The backend called ``name``, reading this machine's paths from ``roots``."""
    roots = roots or PlatformRoots()
    if name == "nil":
        return NilBackend()
    # Each backend's module is imported only when that backend is built: a Keep on one backend
    # does not pay for the others' imports at start-up (benchmarks/bench_attested_start.py).
    if name in ("snp", "tdx", "cca"):
        from donjon.backends.platform import explain_tsm_absence
        from donjon.backends.tsm import FLAVOURS, TsmBackend

        flavour = FLAVOURS[name]
        return TsmBackend(
            name,
            root=roots.tsm_report,
            privlevel=privlevel if name == "snp" else None,
            explain_absence=lambda: explain_tsm_absence(roots, flavour.module, flavour.what),
        )
    if name == "sgx":
        from donjon.backends.gramine import GramineBackend

        return GramineBackend(root=roots.gramine)
    if name in ("azure-snp", "azure-tdx"):
        from donjon.backends.azure import AzureVtpmBackend

        return AzureVtpmBackend(name, tcti=roots.tpm_tcti, imds=roots.azure_imds)
    if name in ("sim-snp", "sim-tdx"):
        from donjon.backends.sim import SimBackend

        return SimBackend(name, vendor_dir=sim_vendor_dir)
    raise UnknownBackend(name, f"unknown backend; choose one of {', '.join((AUTO, *BACKEND_NAMES))}")


def probe_all(
    factory: Callable[[str], Backend], names: Sequence[str] = BACKEND_NAMES
) -> list[tuple[Backend, Availability]]:
    """Each backend with its probe result, in ``names`` order."""
    out = []
    for name in names:
        backend = factory(name)
        out.append((backend, backend.probe()))
    return out


def select_backend(
    requested: str | None,
    allowed: Sequence[str] | None,
    *,
    roots: PlatformRoots | None = None,
    factory: Callable[[str], Backend] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Backend:
    """The backend to run on: ``requested`` (``None`` or ``"auto"`` for automatic), within ``allowed``.

    ``allowed`` is the workload config's ``backends`` allow-list (``None``: every
    backend). A backend outside it is refused with :class:`BackendNotAllowed`
    *before* anything is probed; an unusable one with :class:`BackendUnavailable`
    carrying its reason and fix. ``factory`` builds backends by name (default:
    :func:`create_backend` over ``roots``); ``warn`` receives the ``nil``
    fall-back warning (default: the log).
    """
    if factory is None:
        chosen_roots = roots or PlatformRoots()

        def factory(name: str) -> Backend:
            return create_backend(name, roots=chosen_roots)

    warn = warn or log.warning
    if allowed is not None:
        for name in allowed:
            if name not in BACKEND_NAMES:
                raise UnknownBackend(name, "the backends allow-list names an unknown backend")
    permitted = tuple(BACKEND_NAMES if allowed is None else allowed)

    if requested is not None and requested != AUTO:
        if requested not in BACKEND_NAMES:
            raise UnknownBackend(
                requested, f"unknown backend; choose one of {', '.join((AUTO, *BACKEND_NAMES))}"
            )
        if requested not in permitted:
            raise BackendNotAllowed(
                requested,
                f"the workload's backends allow-list ({', '.join(permitted) or 'empty'}) does not include it",
                fix="run on an allowed backend, or add it to the backends list in Donjon.toml",
            )
        backend = factory(requested)
        availability = backend.probe()
        if not availability.usable:
            raise BackendUnavailable(requested, availability.reason, fix=availability.fix)
        if not backend.attested:
            warn("backend nil: running WITHOUT a TEE and without attestation evidence")
        return backend

    failures = []
    for name in AUTO_ORDER:
        if name not in permitted:
            continue
        backend = factory(name)
        availability = backend.probe()
        if availability.usable:
            return backend
        failures.append(f"{name}: {availability.reason}")
    if "nil" in permitted:
        detail = "; ".join(failures) if failures else "no attested backend is allowed"
        warn(f"no attested backend is usable here ({detail}); falling back to nil: NO TEE, NO attestation")
        return factory("nil")
    raise BackendUnavailable(
        AUTO,
        "no allowed attested backend is usable here"
        + (f" ({'; '.join(failures)})" if failures else " (the allow-list names none that auto may pick)"),
        fix="run inside a TEE the workload allows (see 'donjon platform info'), or request a backend by name",
    )
