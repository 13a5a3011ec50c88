"""The Steward's policy: a TOML file, validated at load with line-numbered errors.

What a policy decides (DESIGN.md "What the Steward checks"): which platforms,
measurements, signers and TCB levels are acceptable (and, for Arm CCA, which
platform keys are pinned), which workload digests map to which identity
(SPIFFE path, DNS names, IP addresses) and for how long, and the three opt-ins
that weaken it, each off by default: ``allow_simulated``, ``allow_unattested``
(unsafe) and ``allow_legacy_enarx``. The first two are necessary, not
sufficient: a workload gets a simulated or unattested certificate only if its
own ``platforms`` list names ``simulated`` or ``unattested`` as well, so a
switch turned on for one development workload cannot hand a production
workload's identity to a non-TEE host. Such certificates carry only the names
listed for that case (``sim_dns_names``..., never production names: a host-name
check cannot see the ``/sim`` or ``/unattested`` marker). Every key is
documented in docs/steward.md; :data:`STARTER_POLICY` is a commented example.

Evaluation is pure: verified :class:`Claims` (or none, for unattested), the
workload digest and the request kind go in; a :class:`Decision` or
:class:`Refused` (``policy.<rule>``) comes out.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation.claims import Claims, TcbStatus
from donjon.steward.errors import ConfigError, Refused

__all__ = [
    "MARKERS",
    "MAX_POLICY_BYTES",
    "PLATFORMS",
    "STARTER_POLICY",
    "Decision",
    "LegacyRule",
    "Names",
    "PlatformRule",
    "Policy",
    "SecretRule",
    "VtpmRule",
    "WorkloadRule",
    "load_policy",
    "parse_duration",
    "parse_policy",
]

MAX_POLICY_BYTES = 1 << 20
#: Platform names, as ``TeeType`` values.
PLATFORMS = ("sev-snp", "tdx", "sgx", "cca")
#: What a workload's ``platforms`` may name besides a platform: the two kinds of issuance
#: without a genuine TEE, each also gated by its top-level ``allow_*`` switch.
MARKERS = ("simulated", "unattested")
#: A policy pins a handful of CCA platform keys, each a small PEM or JWK file.
MAX_PLATFORM_KEYS = 64
MAX_PLATFORM_KEY_BYTES = 4096
#: No certificate lives longer than this, whatever the policy says.
HARD_MAX_LIFETIME = 7 * 24 * 3600
#: A collateral grace period longer than this is refused at load.
MAX_COLLATERAL_GRACE = 30 * 24 * 3600

_HEX = re.compile(r"^[0-9a-f]+$")
_SPIFFE_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_STATUSES = {s.value for s in TcbStatus}


def parse_duration(text: str) -> int:
    """``"90s"``, ``"30m"``, ``"4h"``, ``"7d"`` -> seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 4h, 7d)")
    return int(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class VtpmRule:
    """``[platform.sev-snp.vtpm]`` / ``[platform.tdx.vtpm]``: evidence behind a paravisor's vTPM (Azure).

    ``allowed_measurements`` pins the launch measurement of the paravisor (Azure's HCL: SNP
    MEASUREMENT or TDX MRTD), ``None`` for any; ``pcrs`` maps a PCR index to the SHA-256 values
    allowed for it (the guest's measured boot, from the vTPM quote).
    """

    allowed_measurements: frozenset[str] | None
    pcrs: Mapping[int, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class PlatformRule:
    platform: str
    #: lowercase hex; ``None`` means any measurement (``["*"]`` in the file)
    allowed_measurements: frozenset[str] | None
    denied_measurements: frozenset[str] = frozenset()
    signers: frozenset[str] | None = None
    id_key_digests: frozenset[str] | None = None
    registers: Mapping[str, frozenset[str]] = field(default_factory=dict)
    min_tcb: Mapping[str, int] = field(default_factory=dict)
    allowed_tcb_statuses: frozenset[str] = frozenset({TcbStatus.UP_TO_DATE.value})
    allowed_advisories: frozenset[str] = frozenset()
    #: UNSAFE: accept Intel quotes without QE identity collateral (Enarx's Steward never had it).
    allow_missing_qe_identity: bool = False
    #: Arm CCA: the pinned CPAK public keys (no public vendor root exists for them).
    platform_keys: tuple[ec.EllipticCurvePublicKey, ...] = ()
    #: SEV-SNP/TDX behind a vTPM (Azure); ``None``: such evidence is refused.
    vtpm: VtpmRule | None = None


@dataclass(frozen=True)
class Names:
    """The host names and addresses one certificate may carry besides its SPIFFE ID."""

    dns: tuple[str, ...] = ()
    ip: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()


@dataclass(frozen=True)
class WorkloadRule:
    digest: str
    spiffe_path: str
    dns_names: tuple[str, ...]
    lifetime: int
    #: Platforms (and :data:`MARKERS`) the workload accepts; ``None``: any genuine TEE platform.
    platforms: frozenset[str] | None
    ip_addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    #: Names for ``/sim`` and ``/unattested`` certificates: never the production ones above.
    simulated_names: Names = Names()
    unattested_names: Names = Names()
    #: Admission by signer instead of ``digest`` (which is then ``""``): the fingerprint
    #: (``sha256:<hex>`` of the SubjectPublicKeyInfo) of the key that signed the package, and
    #: optionally the package name (``REGISTRY/REPO``) its signed payload must carry.
    signer: str | None = None
    package: str | None = None

    def admits(self, platform: str | None, *, simulated: bool) -> bool:
        """Does this rule issue for ``platform`` (``None``: no evidence), genuine or simulated?

        Genuine evidence: the platform is listed (or ``platforms`` is omitted). Simulated: the
        list names ``simulated`` and, if it names any platform, this one. No evidence: the list
        names ``unattested``.
        """
        return _platforms_admit(self.platforms, platform, simulated=simulated)


def _platforms_admit(listed: frozenset[str] | None, platform: str | None, *, simulated: bool) -> bool:
    """A rule's ``platforms`` (``None``: omitted) against evidence from ``platform`` (``None``:
    no evidence), as :meth:`WorkloadRule.admits` documents it; ``[[secret]]`` rules alike."""
    if platform is None:
        return listed is not None and "unattested" in listed
    if simulated:
        if listed is None or "simulated" not in listed:
            return False
        named = listed & set(PLATFORMS)
        return not named or platform in named
    return listed is None or platform in listed


@dataclass(frozen=True)
class LegacyRule:
    platform: str
    measurement: str
    signer: str | None
    spiffe_path: str
    dns_names: tuple[str, ...]
    lifetime: int
    ip_addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    #: Also issue (under ``/sim``) on simulated evidence with this measurement.
    simulated: bool = False
    simulated_names: Names = Names()


@dataclass(frozen=True)
class SecretRule:
    """``[[secret]]``: which workloads may be released the secret ``name`` (docs/secrets.md).

    Every field a rule gives must match (AND); several rules for one name are alternatives
    (OR). A client matches when its certificate's SPIFFE path (without the ``/sim`` or
    ``/unattested`` marker) is one of ``spiffe_paths`` (if given), its workload digest is one
    of ``digests`` (if given), the package signer its certificate names is one of ``signers``
    (if given) and the package name it names is one of ``packages`` (if given; only with
    ``signers``), and ``platforms`` admits its evidence as for a ``[[workload]]``: omitted, any
    genuine TEE; a ``/sim`` or ``/unattested`` certificate only where ``platforms`` names
    ``simulated`` or ``unattested`` explicitly. The package and signer are read from the
    certificate the Steward issued (:func:`donjon.dice.package_of`), never from the request.
    """

    name: str
    spiffe_paths: frozenset[str] | None
    digests: frozenset[str] | None
    platforms: frozenset[str] | None
    #: Package signer fingerprints (``sha256:<hex>`` of the SubjectPublicKeyInfo).
    signers: frozenset[str] | None = None
    #: Package names (``REGISTRY/REPO``, as signed); only with ``signers``.
    packages: frozenset[str] | None = None
    #: The rule's position among the policy's ``[[secret]]`` tables, from 1 (for the log).
    index: int = 0

    @property
    def label(self) -> str:
        """How the log names this rule: ``secret NAME #INDEX`` (with the policy digest beside it)."""
        return f"secret {self.name} #{self.index}"

    @property
    def fields(self) -> tuple[str, ...]:
        """The identity fields this rule names, every one of which a match satisfied."""
        named = (
            ("spiffe_paths", self.spiffe_paths),
            ("digests", self.digests),
            ("signers", self.signers),
            ("packages", self.packages),
        )
        return tuple(key for key, value in named if value is not None)

    def admits(self, platform: str | None, *, simulated: bool, unattested: bool) -> bool:
        if unattested:
            return _platforms_admit(self.platforms, None, simulated=False)
        if platform is None:
            return False  # a certificate that names no TEE and is not marked unattested
        return _platforms_admit(self.platforms, platform, simulated=simulated)


@dataclass(frozen=True)
class Decision:
    """What to issue: a SPIFFE path (already marked /sim or /unattested), DNS names and IP
    addresses (for a marked path, only those the rule lists for that case), lifetime."""

    spiffe_path: str
    dns_names: tuple[str, ...]
    lifetime: int
    simulated: bool
    fresh: bool
    rule: str
    ip_addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    unattested: bool = False


@dataclass(frozen=True)
class Policy:
    digest: str
    source: str
    allow_simulated: bool
    allow_unattested: bool
    allow_legacy_enarx: bool
    collateral_grace: int
    max_lifetime: int
    platforms: Mapping[str, PlatformRule]
    workloads: tuple[WorkloadRule, ...]
    legacy: tuple[LegacyRule, ...]
    #: ``[[secret]]`` rules, in file order (docs/secrets.md).
    secrets: tuple[SecretRule, ...] = ()

    def secret_rules(self, name: str) -> tuple[SecretRule, ...]:
        return tuple(rule for rule in self.secrets if rule.name == name)

    # --- evaluation ---

    def check_claims(self, claims: Claims) -> PlatformRule:
        """The platform rules: measurement, signer, ID key, registers, TCB, debug, simulation."""
        platform = claims.tee.value
        rule = self.platforms.get(platform)
        if rule is None:
            raise Refused("policy.platform", f"the policy allows no {platform} evidence")
        if claims.simulated and not self.allow_simulated:
            raise Refused(
                "policy.simulated", "evidence is from a simulated TEE and the policy does not allow it"
            )
        if claims.debug:
            raise Refused("policy.debug", "the TEE runs with debugging enabled")
        measurement = claims.measurement.hex()
        if measurement in rule.denied_measurements:
            raise Refused("policy.measurement_denied", f"measurement {measurement} is denied")
        vtpm = claims.raw.get("vtpm")
        if vtpm is not None:
            # Behind a paravisor the hardware measures the paravisor; the guest is in the PCRs.
            _check_vtpm(rule, measurement, vtpm)
        elif rule.allowed_measurements is not None and measurement not in rule.allowed_measurements:
            raise Refused("policy.measurement", f"measurement {measurement} is not allowed")
        if rule.signers is not None:
            signer = claims.signer.hex() if claims.signer is not None else None
            if signer not in rule.signers:
                raise Refused("policy.signer", f"signer {signer} is not allowed")
        if rule.id_key_digests is not None:
            idk = claims.id_key_digest.hex() if claims.id_key_digest is not None else None
            if idk not in rule.id_key_digests:
                raise Refused("policy.id_key", f"ID key digest {idk} is not allowed")
        for name, allowed in rule.registers.items():
            value = claims.measurements.get(name)
            if value is None or value.hex() not in allowed:
                shown = None if value is None else value.hex()
                raise Refused("policy.register", f"register {name} = {shown} is not allowed")
        if claims.tcb_status.value not in rule.allowed_tcb_statuses:
            raise Refused("policy.tcb_status", f"TCB status {claims.tcb_status.value} is not allowed")
        extra = sorted(set(claims.advisory_ids) - rule.allowed_advisories)
        if extra:
            raise Refused("policy.advisories", f"advisories not allowed: {', '.join(extra)}")
        for name, minimum in rule.min_tcb.items():
            got = _tcb_value(claims.raw, name)
            if got is None:
                raise Refused("policy.min_tcb", f"the evidence has no TCB component {name!r}")
            if got < minimum:
                raise Refused("policy.min_tcb", f"TCB component {name} is {got}, below the minimum {minimum}")
        return rule

    def decide(
        self,
        claims: Claims | None,
        workload_digest: bytes | None,
        *,
        package_signer: str | None = None,
        package_name: str | None = None,
    ) -> Decision:
        """Native request: platform rules (unless unattested), then the workload's identity.

        A rule naming the workload digest wins; without one, a rule naming the package's signer
        (``package_signer``, verified by the caller from the CSR's package evidence) admits it.
        """
        if claims is None:
            if not self.allow_unattested:
                raise Refused("policy.unattested", "the CSR has no evidence and allow_unattested is off")
        else:
            self.check_claims(claims)
        if workload_digest is None:
            raise Refused("policy.workload", "the CSR carries no workload digest", status=400)
        digest = workload_digest.hex()
        platform = claims.tee.value if claims is not None else None
        simulated = claims is not None and claims.simulated
        known = [wl for wl in self.workloads if wl.digest == digest]
        by_signer = False
        if not known and package_signer is not None:
            known = [
                wl
                for wl in self.workloads
                if wl.signer == package_signer and (wl.package is None or wl.package == package_name)
            ]
            by_signer = bool(known)
        for wl in known:
            if not wl.admits(platform, simulated=simulated):
                continue
            if claims is None:
                path, names = "/unattested" + wl.spiffe_path, wl.unattested_names
            elif simulated:
                path, names = "/sim" + wl.spiffe_path, wl.simulated_names
            else:
                path, names = wl.spiffe_path, Names(wl.dns_names, wl.ip_addresses)
            return Decision(
                spiffe_path=path,
                dns_names=names.dns,
                ip_addresses=names.ip,
                lifetime=wl.lifetime,
                simulated=simulated,
                unattested=claims is None,
                fresh=True,
                rule=f"signer {package_signer} (workload {digest})" if by_signer else f"workload {digest}",
            )
        if not known:
            if package_signer is not None:
                raise Refused(
                    "policy.workload",
                    f"workload digest {digest} is not in the policy, nor is its package's signer "
                    f"{package_signer} (package {package_name!r})",
                )
            raise Refused("policy.workload", f"workload digest {digest} is not in the policy")
        # The digest is known, but no rule for it accepts this kind of evidence: name which.
        if claims is None:
            raise Refused(
                "policy.platforms",
                f'workload {digest} does not list "unattested" in platforms: no certificate '
                "without evidence for it, whatever allow_unattested says",
            )
        what = f"simulated {platform}" if simulated else platform
        hint = ' (simulated evidence needs "simulated" there too)' if simulated else ""
        raise Refused(
            "policy.platforms", f"workload {digest} does not accept {what} evidence (platforms){hint}"
        )

    def decide_legacy(self, claims: Claims) -> Decision:
        """Enarx legacy request: opt-in, platform rules, then the *measurement*'s identity."""
        if not self.allow_legacy_enarx:
            raise Refused(
                "policy.legacy", "the policy does not accept legacy Enarx CSRs (allow_legacy_enarx)"
            )
        self.check_claims(claims)
        measurement = claims.measurement.hex()
        signer = claims.signer.hex() if claims.signer is not None else None
        for rule in self.legacy:
            if rule.platform != claims.tee.value or rule.measurement != measurement:
                continue
            if rule.signer is not None and rule.signer != signer:
                continue
            if claims.simulated and not rule.simulated:
                raise Refused(
                    "policy.platforms",
                    f"the legacy rule for {claims.tee.value} measurement {measurement} does not accept "
                    "simulated evidence (simulated = true)",
                )
            if claims.simulated:
                path, names = "/sim" + rule.spiffe_path, rule.simulated_names
            else:
                path, names = rule.spiffe_path, Names(rule.dns_names, rule.ip_addresses)
            return Decision(
                spiffe_path=path,
                dns_names=names.dns,
                ip_addresses=names.ip,
                lifetime=rule.lifetime,
                simulated=claims.simulated,
                fresh=False,
                rule=f"legacy {rule.platform} {measurement}",
            )
        raise Refused(
            "policy.legacy_identity", f"no legacy identity for {claims.tee.value} measurement {measurement}"
        )


def _check_vtpm(rule: PlatformRule, measurement: str, vtpm: Mapping[str, Any]) -> None:
    if rule.vtpm is None:
        raise Refused(
            "policy.vtpm",
            f"the policy allows no {rule.platform} evidence behind a vTPM "
            f"(no [platform.{rule.platform}.vtpm])",
        )
    allowed = rule.vtpm.allowed_measurements
    if allowed is not None and measurement not in allowed:
        raise Refused("policy.measurement", f"paravisor measurement {measurement} is not allowed")
    pcrs = vtpm.get("pcrs", {})
    for index, values in sorted(rule.vtpm.pcrs.items()):
        value = pcrs.get(str(index))
        shown = value.hex() if isinstance(value, bytes) else None
        if shown not in values:
            raise Refused("policy.pcr", f"PCR {index} = {shown} is not allowed")


def _tcb_value(raw: Mapping[str, Any], name: str) -> int | None:
    """A TCB component from the verifier's raw claims: top level, or under a reported-TCB table."""
    candidates: list[Any] = [raw.get(name)]
    for table in ("reported_tcb", "tcb", "tcb_components"):
        sub = raw.get(table)
        if isinstance(sub, Mapping):
            candidates.append(sub.get(name))
    for value in candidates:
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            return value
    return None


# --- loading ---


class _Ctx:
    """Finds the line of a key in the source text, for error messages."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line(self, table: str | None, key: str | None, index: int = 0) -> int | None:
        start = 0
        end = len(self.lines)
        if table is not None:
            headers = [
                i
                for i, raw in enumerate(self.lines)
                if raw.strip().replace(" ", "") in (f"[{table}]", f"[[{table}]]")
            ]
            if len(headers) <= index:
                return None
            start = headers[index]
            if key is None:
                return start + 1
            start += 1
        for i in range(start, end):
            stripped = self.lines[i].strip()
            if table is not None and stripped.startswith("["):
                break
            if table is None and stripped.startswith("["):
                break
            if key is not None and re.match(rf"^\"?{re.escape(key)}\"?\s*=", stripped):
                return i + 1
        return None

    def error(
        self, reason: str, table: str | None = None, key: str | None = None, index: int = 0
    ) -> ConfigError:
        return ConfigError(self.path, reason, line=self.line(table, key, index))


def _hexes(
    ctx: _Ctx, value: Any, table: str | None, key: str, *, wildcard: bool = False
) -> frozenset[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ctx.error(f"{key} must be a list of hex strings", table, key)
    if wildcard and value == ["*"]:
        return None
    out = set()
    for v in value:
        h = v.lower()
        if not _HEX.match(h) or len(h) % 2:
            raise ctx.error(f"{key}: {v!r} is not a hex string", table, key)
        out.add(h)
    return frozenset(out)


def _check_keys(
    ctx: _Ctx, table: Mapping[str, Any], allowed: set[str], where: str | None, index: int = 0
) -> None:
    for key in table:
        if key not in allowed:
            raise ctx.error(f"unknown key {key!r}" + (f" in [{where}]" if where else ""), where, key, index)


def _bool(ctx: _Ctx, doc: Mapping[str, Any], key: str, table: str | None = None) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        raise ctx.error(f"{key} must be true or false", table, key)
    return value


def _duration(
    ctx: _Ctx, doc: Mapping[str, Any], key: str, default: str, table: str | None, index: int = 0
) -> int:
    value = doc.get(key, default)
    if not isinstance(value, str):
        raise ctx.error(f'{key} must be a duration string such as "4h"', table, key, index)
    try:
        return parse_duration(value)
    except ValueError as e:
        raise ctx.error(str(e), table, key, index) from e


def _spiffe_path(ctx: _Ctx, value: Any, table: str, index: int) -> str:
    # SPIFFE-ID section 2.2: path segments of letters, digits, '.', '-', '_'; no empty, '.' or '..' segment.
    if not isinstance(value, str) or not value.startswith("/") or value == "/":
        raise ctx.error("spiffe_path must be a string starting with '/'", table, "spiffe_path", index)
    for seg in value[1:].split("/"):
        if seg in ("", ".", "..") or not _SPIFFE_SEGMENT.match(seg):
            raise ctx.error(
                f"spiffe_path segment {seg!r} is not allowed by SPIFFE", table, "spiffe_path", index
            )
    if value.startswith(("/sim/", "/unattested/")):
        raise ctx.error(
            "spiffe_path may not start with /sim or /unattested (reserved)", table, "spiffe_path", index
        )
    return value


def _dns_names(ctx: _Ctx, value: Any, table: str, key: str, index: int) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ctx.error(f"{key} must be a list of host names", table, key, index)
    for name in value:
        labels = name.split(".")
        if len(name) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
            raise ctx.error(f"{key}: {name!r} is not a host name", table, key, index)
    return tuple(dict.fromkeys(name.lower() for name in value))


def _names_for(ctx: _Ctx, entry: Mapping[str, Any], case: str, table: str, index: int) -> Names:
    """``<case>_dns_names`` and ``<case>_ip``: the names of a ``/sim`` or ``/unattested`` certificate."""
    return Names(
        dns=_dns_names(ctx, entry.get(f"{case}_dns_names", []), table, f"{case}_dns_names", index),
        ip=_ip_addresses(ctx, entry.get(f"{case}_ip", []), table, f"{case}_ip", index),
    )


def _unused(ctx: _Ctx, names: Names, case: str, needs: str, index: int, *, table: str = "workload") -> None:
    if names.dns or names.ip:
        key = f"{case}_dns_names" if names.dns else f"{case}_ip"
        raise ctx.error(f"{key} is never used: the rule does not list {needs}", table, key, index)


def _no_shared_names(ctx: _Ctx, workloads: Sequence[WorkloadRule], legacy: Sequence[LegacyRule]) -> None:
    """A ``/sim`` or ``/unattested`` certificate never carries a name a genuine one carries.

    DESIGN.md "Certificates the Steward issues": a client checking a host name cannot see the
    marker in the SPIFFE path, so sharing a name would let a non-TEE host pass as the real one.
    """
    tables: tuple[tuple[str, Sequence[WorkloadRule | LegacyRule]], ...] = (
        ("workload", workloads),
        ("legacy", legacy),
    )
    production: set[object] = set()
    for _, rules in tables:
        for rule in rules:
            production.update(rule.dns_names, rule.ip_addresses)
    for table, rules in tables:
        for i, rule in enumerate(rules):
            marked = [("sim", rule.simulated_names)]
            if isinstance(rule, WorkloadRule):
                marked.append(("unattested", rule.unattested_names))
            for case, names in marked:
                for key, values in ((f"{case}_dns_names", names.dns), (f"{case}_ip", names.ip)):
                    shared = [str(v) for v in values if v in production]
                    if shared:
                        raise ctx.error(
                            f"{key}: {', '.join(shared)} is also a production name (dns_names/ip): "
                            "a host-name check could not tell the non-TEE certificate from the real one",
                            table,
                            key,
                            i,
                        )


def _ip_addresses(
    ctx: _Ctx, value: Any, table: str, key: str, index: int
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ctx.error(f"{key} must be a list of IP addresses", table, key, index)
    out: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for text in value:
        try:
            # Only the plain textual forms: no zone index, no prefix length (an IP SAN is one address).
            address = ipaddress.ip_address(text)
        except ValueError as e:
            raise ctx.error(f"{key}: {text!r} is not an IPv4 or IPv6 address", table, key, index) from e
        if address.is_unspecified or address.is_multicast:
            raise ctx.error(f"{key}: {text!r} cannot name a server", table, key, index)
        if address not in out:
            out.append(address)
    return tuple(out)


def _platform_keys(
    ctx: _Ctx, value: Any, table: str, read: Callable[[str], bytes]
) -> tuple[ec.EllipticCurvePublicKey, ...]:
    """``platform_keys``: PEM (SubjectPublicKeyInfo) or JWK files of pinned CCA platform keys."""
    # Here, not at the top: only a policy pinning CCA keys needs the CCA verifier's key loader.
    from donjon.attestation.cca import load_platform_key
    from donjon.attestation.errors import AttestationError

    key = "platform_keys"
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ctx.error(f"{key} must be a list of file names (PEM or JWK public keys)", table, key)
    if len(value) > MAX_PLATFORM_KEYS:
        raise ctx.error(f"{key} lists {len(value)} files, more than {MAX_PLATFORM_KEYS}", table, key)
    keys = []
    for name in value:
        try:
            data = read(name)
        except OSError as e:
            raise ctx.error(f"{key}: cannot read {name}: {e.strerror or e}", table, key) from e
        if len(data) > MAX_PLATFORM_KEY_BYTES:
            raise ctx.error(f"{key}: {name} is larger than {MAX_PLATFORM_KEY_BYTES} bytes", table, key)
        try:
            keys.append(load_platform_key(data))
        except AttestationError as e:
            raise ctx.error(f"{key}: {name}: {e.reason}", table, key) from e
    return tuple(keys)


def _platform_rule(ctx: _Ctx, name: str, doc: Any, read: Callable[[str], bytes]) -> PlatformRule:
    table = f"platform.{name}"
    if name not in PLATFORMS:
        raise ctx.error(f"unknown platform {name!r} (known: {', '.join(PLATFORMS)})", table)
    if not isinstance(doc, dict):
        raise ctx.error(f"[{table}] must be a table", table)
    _check_keys(
        ctx,
        doc,
        {
            "allowed_measurements",
            "denied_measurements",
            "signers",
            "id_key_digests",
            "registers",
            "min_tcb",
            "allowed_tcb_statuses",
            "allowed_advisories",
            "allow_missing_qe_identity",
            *(("platform_keys",) if name == "cca" else ()),
            *(("vtpm",) if name in ("sev-snp", "tdx") else ()),
        },
        table,
    )
    if "allowed_measurements" not in doc:
        raise ctx.error('allowed_measurements is required (a list of hex, or ["*"] for any)', table)
    allowed = _hexes(ctx, doc["allowed_measurements"], table, "allowed_measurements", wildcard=True)
    if allowed is not None and not allowed:
        raise ctx.error(
            "allowed_measurements is empty: nothing could ever be issued", table, "allowed_measurements"
        )
    denied = _hexes(ctx, doc.get("denied_measurements", []), table, "denied_measurements") or frozenset()
    signers = _hexes(ctx, doc["signers"], table, "signers") if "signers" in doc else None
    idk = _hexes(ctx, doc["id_key_digests"], table, "id_key_digests") if "id_key_digests" in doc else None
    registers: dict[str, frozenset[str]] = {}
    regs = doc.get("registers", {})
    if not isinstance(regs, dict):
        raise ctx.error("registers must be a table of name = [hex...]", table, "registers")
    for reg, values in regs.items():
        registers[reg] = _hexes(ctx, values, f"{table}.registers", reg) or frozenset()
    min_tcb = doc.get("min_tcb", {})
    if not isinstance(min_tcb, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in min_tcb.values()
    ):
        raise ctx.error("min_tcb must be a table of component = non-negative integer", table, "min_tcb")
    statuses = doc.get("allowed_tcb_statuses", [TcbStatus.UP_TO_DATE.value])
    if not isinstance(statuses, list) or not all(isinstance(s, str) and s in _STATUSES for s in statuses):
        raise ctx.error(
            f"allowed_tcb_statuses must list values from {sorted(_STATUSES)}", table, "allowed_tcb_statuses"
        )
    advisories = doc.get("allowed_advisories", [])
    if not isinstance(advisories, list) or not all(isinstance(a, str) for a in advisories):
        raise ctx.error("allowed_advisories must be a list of strings", table, "allowed_advisories")
    return PlatformRule(
        platform=name,
        allowed_measurements=allowed,
        denied_measurements=denied,
        signers=signers,
        id_key_digests=idk,
        registers=registers,
        min_tcb=dict(min_tcb),
        allowed_tcb_statuses=frozenset(statuses),
        allowed_advisories=frozenset(advisories),
        allow_missing_qe_identity=_bool(ctx, doc, "allow_missing_qe_identity", table),
        platform_keys=_platform_keys(ctx, doc.get("platform_keys", []), table, read),
        vtpm=_vtpm_rule(ctx, doc["vtpm"], f"{table}.vtpm") if "vtpm" in doc else None,
    )


#: A TPM has 24 PCRs (TCG PC Client Platform TPM Profile); values are SHA-256 (the bank quoted).
_PCR_COUNT = 24


def _vtpm_rule(ctx: _Ctx, doc: Any, table: str) -> VtpmRule:
    if not isinstance(doc, dict):
        raise ctx.error(f"[{table}] must be a table", table)
    _check_keys(ctx, doc, {"allowed_measurements", "pcrs"}, table)
    if "allowed_measurements" not in doc:
        raise ctx.error('allowed_measurements is required (the paravisor\'s, or ["*"] for any)', table)
    allowed = _hexes(ctx, doc["allowed_measurements"], table, "allowed_measurements", wildcard=True)
    if allowed is not None and not allowed:
        raise ctx.error("allowed_measurements is empty: nothing could ever be issued", table)
    pcrs_doc = doc.get("pcrs", {})
    if not isinstance(pcrs_doc, dict):
        raise ctx.error("pcrs must be a table of index = [hex...], e.g. pcrs = { 7 = [...] }", table, "pcrs")
    pcrs: dict[int, frozenset[str]] = {}
    for key, values in pcrs_doc.items():
        if not (key.isdigit() and int(key) < _PCR_COUNT):
            raise ctx.error(f"pcrs: {key!r} is not a PCR index 0..{_PCR_COUNT - 1}", table, "pcrs")
        hexes = _hexes(ctx, values, table, f"pcrs.{key}") or frozenset()
        if not hexes or any(len(h) != 64 for h in hexes):
            raise ctx.error(f"pcrs.{key} must list SHA-256 values (64 hex digits)", table, "pcrs")
        pcrs[int(key)] = hexes
    return VtpmRule(allowed_measurements=allowed, pcrs=pcrs)


def _fingerprint(
    ctx: _Ctx,
    value: Any,
    where: str,
    table: str,
    key: str,
    i: int,
    read: Callable[[str], bytes],
    signer_files: list[bytes],
) -> str:
    """A package signer named by its fingerprint (``sha256:<64 hex>``, any case) or by a PEM
    public key file (relative to the policy; its SPKI hash then joins the policy digest).
    ``where`` starts every error (``signer``, ``secret 'app-key': signers``)."""
    if not isinstance(value, str) or not value:
        raise ctx.error(f"{where} must be sha256:<64 hex> or a PEM public key file", table, key, i)
    if value.startswith("sha256:"):
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", value.lower()):
            raise ctx.error(f"{where} fingerprint {value!r} is not sha256:<64 hex>", table, key, i)
        return value.lower()
    from donjon.oci.errors import OciError
    from donjon.oci.signature import fingerprint, load_public_key

    try:
        public = load_public_key(read(value), what=value)
    except (OSError, OciError) as e:
        raise ctx.error(f"{where} {value}: {e}", table, key, i) from e
    found = fingerprint(public)
    signer_files.append(bytes.fromhex(found.removeprefix("sha256:")))
    return found


def _package_name(value: Any) -> bool:
    """A package name as a signed payload carries it: ``REGISTRY/REPO``, bounded."""
    return isinstance(value, str) and "/" in value and len(value.encode("utf-8", "replace")) <= 1024


def _signer_of(
    ctx: _Ctx, entry: Mapping[str, Any], i: int, read: Callable[[str], bytes], signer_files: list[bytes]
) -> tuple[str | None, str | None]:
    """A ``[[workload]]``'s ``signer`` (a fingerprint, or a PEM public key file) and ``package``.

    Exactly one of ``digest`` and ``signer``; ``package`` only with ``signer``.
    """
    signer = entry.get("signer")
    package = entry.get("package")
    if signer is None:
        if package is not None:
            raise ctx.error("package needs signer (it names the signed package)", "workload", "package", i)
        return None, None
    if "digest" in entry:
        raise ctx.error("give digest or signer, not both", "workload", "signer", i)
    if package is not None and not _package_name(package):
        raise ctx.error("package must be REGISTRY/REPOSITORY, as signed", "workload", "package", i)
    return _fingerprint(ctx, signer, "signer", "workload", "signer", i, read, signer_files), package


def _reader(path: str) -> Callable[[str], bytes]:
    """Files a policy names (``platform_keys``) are relative to the policy file's directory."""
    base = Path(path).parent

    def read(name: str) -> bytes:
        with open(base / name, "rb") as f:
            return f.read(MAX_PLATFORM_KEY_BYTES + 1)

    return read


def parse_policy(
    text: str, *, path: str = "<policy>", read_file: Callable[[str], bytes] | None = None
) -> Policy:
    """Parse and validate a policy; raise :class:`ConfigError` with the line of the first problem.

    ``read_file`` reads the files the policy names (CCA ``platform_keys``); by default they are
    read relative to the directory of ``path``.
    """
    raw = text.encode()
    if len(raw) > MAX_POLICY_BYTES:
        raise ConfigError(path, f"policy of {len(raw)} bytes exceeds {MAX_POLICY_BYTES}")
    ctx = _Ctx(path, text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        line = getattr(e, "lineno", None)
        m = re.search(r"line (\d+)", str(e))
        raise ConfigError(path, f"not valid TOML: {e}", line=line or (int(m.group(1)) if m else None)) from e
    _check_keys(
        ctx,
        doc,
        {
            "version",
            "allow_simulated",
            "allow_unattested",
            "allow_legacy_enarx",
            "collateral_grace",
            "max_lifetime",
            "lifetime",
            "platform",
            "workload",
            "legacy",
            "secret",
        },
        None,
    )
    if doc.get("version", 1) != 1:
        raise ctx.error("unsupported policy version (this Steward knows version 1)", None, "version")
    max_lifetime = _duration(ctx, doc, "max_lifetime", "24h", None)
    default_lifetime = _duration(ctx, doc, "lifetime", "4h", None)
    if max_lifetime > HARD_MAX_LIFETIME or max_lifetime <= 0:
        raise ctx.error("max_lifetime must be between 1s and 7d", None, "max_lifetime")
    if default_lifetime > max_lifetime or default_lifetime <= 0:
        raise ctx.error("lifetime must be positive and at most max_lifetime", None, "lifetime")
    grace = _duration(ctx, doc, "collateral_grace", "0s", None)
    if grace > MAX_COLLATERAL_GRACE:
        raise ctx.error("collateral_grace may not exceed 30d", None, "collateral_grace")
    platforms_doc = doc.get("platform", {})
    if not isinstance(platforms_doc, dict):
        raise ctx.error("platform must be a table of [platform.<name>] tables", None, "platform")
    read = read_file if read_file is not None else _reader(path)
    platforms = {name: _platform_rule(ctx, name, sub, read) for name, sub in platforms_doc.items()}

    def lifetime_of(entry: Mapping[str, Any], table: str, index: int) -> int:
        value = _duration(ctx, entry, "lifetime", f"{default_lifetime}s", table, index)
        if value <= 0 or value > max_lifetime:
            raise ctx.error("lifetime must be positive and at most max_lifetime", table, "lifetime", index)
        return value

    workloads: list[WorkloadRule] = []
    signer_files: list[bytes] = []
    wl_doc = doc.get("workload", [])
    if not isinstance(wl_doc, list):
        raise ctx.error("workload must be an array of tables ([[workload]])", None, "workload")
    for i, entry in enumerate(wl_doc):
        _check_keys(
            ctx,
            entry,
            {
                "digest",
                "signer",
                "package",
                "spiffe_path",
                "dns_names",
                "ip",
                "lifetime",
                "platforms",
                "sim_dns_names",
                "sim_ip",
                "unattested_dns_names",
                "unattested_ip",
            },
            "workload",
            i,
        )
        digest = entry.get("digest")
        signer, package = _signer_of(ctx, entry, i, read, signer_files)
        if signer is not None:
            digest = ""
        elif not isinstance(digest, str) or not _HEX.match(digest.lower()) or len(digest) != 64:
            raise ctx.error("digest must be a workload digest: 64 hex characters", "workload", "digest", i)
        plats = entry.get("platforms")
        choices = PLATFORMS + MARKERS
        if plats is not None and (
            not isinstance(plats, list) or not plats or not all(p in choices for p in plats)
        ):
            raise ctx.error(f"platforms must list values from {list(choices)}", "workload", "platforms", i)
        sim_names = _names_for(ctx, entry, "sim", "workload", i)
        unattested_names = _names_for(ctx, entry, "unattested", "workload", i)
        if plats is None or "simulated" not in plats:
            _unused(ctx, sim_names, "sim", '"simulated"', i)
        if plats is None or "unattested" not in plats:
            _unused(ctx, unattested_names, "unattested", '"unattested"', i)
        workloads.append(
            WorkloadRule(
                digest=digest.lower(),
                spiffe_path=_spiffe_path(ctx, entry.get("spiffe_path"), "workload", i),
                dns_names=_dns_names(ctx, entry.get("dns_names", []), "workload", "dns_names", i),
                ip_addresses=_ip_addresses(ctx, entry.get("ip", []), "workload", "ip", i),
                lifetime=lifetime_of(entry, "workload", i),
                platforms=frozenset(plats) if plats is not None else None,
                simulated_names=sim_names,
                unattested_names=unattested_names,
                signer=signer,
                package=package,
            )
        )
    legacy: list[LegacyRule] = []
    lg_doc = doc.get("legacy", [])
    if not isinstance(lg_doc, list):
        raise ctx.error("legacy must be an array of tables ([[legacy]])", None, "legacy")
    for i, entry in enumerate(lg_doc):
        _check_keys(
            ctx,
            entry,
            {
                "platform",
                "measurement",
                "signer",
                "spiffe_path",
                "dns_names",
                "ip",
                "lifetime",
                "simulated",
                "sim_dns_names",
                "sim_ip",
            },
            "legacy",
            i,
        )
        plat = entry.get("platform")
        if plat not in ("sev-snp", "sgx"):
            raise ctx.error('platform must be "sev-snp" or "sgx" (Enarx\'s)', "legacy", "platform", i)
        meas = _hexes(ctx, [entry.get("measurement", "")], "legacy", "measurement") or frozenset()
        signer_v = entry.get("signer")
        signer = None
        if signer_v is not None:
            signer = next(iter(_hexes(ctx, [signer_v], "legacy", "signer") or frozenset()), None)
        if not meas or not next(iter(meas)):
            raise ctx.error("measurement is required", "legacy", "measurement", i)
        simulated = _bool(ctx, entry, "simulated", "legacy")
        sim_names = _names_for(ctx, entry, "sim", "legacy", i)
        if not simulated:
            _unused(ctx, sim_names, "sim", "simulated = true", i, table="legacy")
        legacy.append(
            LegacyRule(
                platform=plat,
                measurement=next(iter(meas)),
                signer=signer,
                spiffe_path=_spiffe_path(ctx, entry.get("spiffe_path"), "legacy", i),
                dns_names=_dns_names(ctx, entry.get("dns_names", []), "legacy", "dns_names", i),
                ip_addresses=_ip_addresses(ctx, entry.get("ip", []), "legacy", "ip", i),
                lifetime=lifetime_of(entry, "legacy", i),
                simulated=simulated,
                simulated_names=sim_names,
            )
        )
    _no_shared_names(ctx, workloads, legacy)
    secrets = _secret_rules(ctx, doc.get("secret", []), read, signer_files)
    return Policy(
        digest=_digest(raw, platforms, signer_files),
        source=path,
        allow_simulated=_bool(ctx, doc, "allow_simulated"),
        allow_unattested=_bool(ctx, doc, "allow_unattested"),
        allow_legacy_enarx=_bool(ctx, doc, "allow_legacy_enarx"),
        collateral_grace=grace,
        max_lifetime=max_lifetime,
        platforms=platforms,
        workloads=tuple(workloads),
        legacy=tuple(legacy),
        secrets=secrets,
    )


def _secret_rules(
    ctx: _Ctx, value: Any, read: Callable[[str], bytes], signer_files: list[bytes]
) -> tuple[SecretRule, ...]:
    """``[[secret]]`` tables (docs/secrets.md "The policy: who gets which secret")."""
    from donjon.steward.secrets.errors import BadSecretName
    from donjon.steward.secrets.names import check_name

    if not isinstance(value, list):
        raise ctx.error("secret must be an array of tables ([[secret]])", None, "secret")
    rules: list[SecretRule] = []
    for i, entry in enumerate(value):
        _check_keys(
            ctx, entry, {"name", "spiffe_paths", "digests", "signers", "packages", "platforms"}, "secret", i
        )
        name = entry.get("name")
        try:
            check_name(name)
        except BadSecretName as e:
            raise ctx.error(f"name: {e}", "secret", "name", i) from e
        paths: frozenset[str] | None = None
        if "spiffe_paths" in entry:
            raw = entry["spiffe_paths"]
            if not isinstance(raw, list) or not raw:
                raise ctx.error(
                    "spiffe_paths must be a non-empty list of SPIFFE paths", "secret", "spiffe_paths", i
                )
            checked = []
            for item in raw:
                try:
                    checked.append(_spiffe_path(ctx, item, "secret", i))
                except ConfigError as e:
                    # _spiffe_path names the key spiffe_path; the error is about this list.
                    raise ctx.error(f"spiffe_paths: {e.reason}", "secret", "spiffe_paths", i) from e
            paths = frozenset(checked)
        digests: frozenset[str] | None = None
        if "digests" in entry:
            raw = entry["digests"]
            if (
                not isinstance(raw, list)
                or not raw
                or not all(isinstance(d, str) and len(d) == 64 and _HEX.match(d.lower()) for d in raw)
            ):
                raise ctx.error(
                    "digests must be a non-empty list of workload digests (64 hex characters)",
                    "secret",
                    "digests",
                    i,
                )
            digests = frozenset(d.lower() for d in raw)
        signers, packages = _secret_signers(ctx, entry, name, i, read, signer_files)
        if paths is None and digests is None and signers is None:
            raise ctx.error(
                f"secret {name!r} names no workload: give spiffe_paths, digests or signers (each one "
                "given must match)",
                "secret",
                None,
                i,
            )
        plats = entry.get("platforms")
        choices = PLATFORMS + MARKERS
        if plats is not None and (
            not isinstance(plats, list) or not plats or not all(p in choices for p in plats)
        ):
            raise ctx.error(f"platforms must list values from {list(choices)}", "secret", "platforms", i)
        rules.append(
            SecretRule(
                name=name,
                spiffe_paths=paths,
                digests=digests,
                platforms=frozenset(plats) if plats is not None else None,
                signers=signers,
                packages=packages,
                index=i + 1,
            )
        )
    return tuple(rules)


def _secret_signers(
    ctx: _Ctx,
    entry: Mapping[str, Any],
    name: str,
    i: int,
    read: Callable[[str], bytes],
    signer_files: list[bytes],
) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """A ``[[secret]]``'s ``signers`` and ``packages``: non-empty lists; ``packages`` only with
    ``signers`` (a package name proves nothing by itself: anyone can sign under any name)."""
    signers: frozenset[str] | None = None
    if "signers" in entry:
        raw = entry["signers"]
        if not isinstance(raw, list) or not raw:
            raise ctx.error(
                f"secret {name!r}: signers must be a non-empty list of signer fingerprints "
                "(sha256:<64 hex>) or PEM public key files",
                "secret",
                "signers",
                i,
            )
        where = f"secret {name!r}: signers:"
        signers = frozenset(
            _fingerprint(ctx, item, where, "secret", "signers", i, read, signer_files) for item in raw
        )
    packages: frozenset[str] | None = None
    if "packages" in entry:
        raw = entry["packages"]
        if signers is None:
            raise ctx.error(
                f"secret {name!r}: packages needs signers (a package name alone proves nothing: "
                "only its signer's key does)",
                "secret",
                "packages",
                i,
            )
        if not isinstance(raw, list) or not raw or not all(_package_name(p) for p in raw):
            raise ctx.error(
                f"secret {name!r}: packages must be a non-empty list of package names "
                "(REGISTRY/REPOSITORY, as signed)",
                "secret",
                "packages",
                i,
            )
        packages = frozenset(raw)
    return signers, packages


def _digest(raw: bytes, platforms: Mapping[str, PlatformRule], signer_files: Sequence[bytes] = ()) -> str:
    """SHA-256 of the policy text; with CCA keys pinned, of the text and the keys' SPKI hashes.

    The digest names the policy in every log entry, so a key file swapped under an unchanged
    text must change it too. So does a package signer named by key file (``signer_files``: the
    SHA-256 of each such key's SubjectPublicKeyInfo).
    """
    keys = sorted(
        hashlib.sha256(
            key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        ).digest()
        for rule in platforms.values()
        for key in rule.platform_keys
    )
    keys += sorted(signer_files)
    if not keys:
        return hashlib.sha256(raw).hexdigest()
    return hashlib.sha256(raw + b"\x00donjon-policy-keys\x00" + b"".join(keys)).hexdigest()


def load_policy(path: str) -> Policy:
    """Read and parse a policy file; :class:`ConfigError` for a missing, unreadable or invalid file."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_POLICY_BYTES + 1)
    except OSError as e:
        raise ConfigError(path, f"cannot read policy: {e.strerror or e}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(path, "policy is not UTF-8") from e
    return parse_policy(text, path=path)


def _names(values: Sequence[str]) -> str:
    return ", ".join(f'"{v}"' for v in values)


STARTER_POLICY = f"""\
# Donjon Steward policy (version 1). Every key is described in docs/steward.md.
# The Steward validates this file at start and on SIGHUP; a bad file is refused
# (the previous policy stays in force) and the error names the line.
version = 1

# Certificates live this long unless a [[workload]] says otherwise; never longer than max_lifetime.
lifetime = "4h"
max_lifetime = "24h"

# Accept evidence signed by a *simulated* vendor (sim-snp, sim-tdx) or a published sample
# key (Arm CCA). Certificates issued for it carry a SPIFFE path under /sim/, and only for a
# workload whose platforms list "simulated". Never enable this in production.
allow_simulated = false

# UNSAFE: issue to Keeps without any TEE evidence (the nil backend), under /unattested/,
# and only for a workload whose platforms list "unattested".
allow_unattested = false

# Accept CSRs from Enarx Keeps (POST /). They carry no nonce and no workload digest:
# identity comes from the measurement ([[legacy]] below) and the log marks them
# "without freshness".
allow_legacy_enarx = false

# When the Steward has no current collateral (CRLs, TCB info) for some evidence,
# refuse (0s), or accept for at most this long past the collateral's next update (logged).
collateral_grace = "0s"

# One table per platform that may be accepted: {_names(PLATFORMS)}.
# [platform.sev-snp]
# allowed_measurements = ["<96 hex: SNP MEASUREMENT of the Keep image>"]   # or ["*"] for any
# denied_measurements = []
# id_key_digests = []                 # SNP ID key digests (omit to accept any)
# registers = {{ host_data = ["<hex>"] }}   # pins of other registers in the claims
# min_tcb = {{ bootloader = 3, tee = 0, snp = 8, microcode = 115 }}
# allowed_tcb_statuses = ["UpToDate"]
#
# [platform.sev-snp.vtpm]             # Azure CVMs: SEV-SNP behind the paravisor's vTPM (docs/azure.md)
# allowed_measurements = ["<96 hex: the paravisor's (HCL's) MEASUREMENT>"]
# pcrs = {{ 7 = ["<64 hex: SHA-256 PCR 7, Secure Boot policy>"] }}
#
# [platform.tdx]
# allowed_measurements = ["<96 hex: MRTD>"]
# registers = {{ rtmr0 = ["<hex>"], rtmr1 = ["<hex>"], rtmr2 = ["<hex>"], mrconfigid = ["<hex>"] }}
# allowed_tcb_statuses = ["UpToDate"]
# allowed_advisories = []
#
# [platform.sgx]
# allowed_measurements = ["<64 hex: MRENCLAVE>"]
# signers = ["<64 hex: MRSIGNER>"]
# allowed_tcb_statuses = ["UpToDate", "SWHardeningNeeded"]
# allowed_advisories = ["INTEL-SA-00615"]
#
# [platform.cca]
# allowed_measurements = ["<hex: realm initial measurement (RIM)>"]
# platform_keys = ["cpak.pem", "cpak.jwk"]  # pinned CPAK public keys (PEM or JWK), relative to this file

# Workloads, by workload digest (donjon prints it), and the identity each receives:
# spiffe://<trust domain from steward.toml><spiffe_path>, plus DNS names and IP addresses.
# [[workload]]
# digest = "<64 hex: workload digest>"
# spiffe_path = "/frontend"
# dns_names = ["frontend.example.org"]
# ip = ["192.0.2.10"]
# lifetime = "2h"
# platforms = ["sev-snp", "tdx"]      # omit for any genuine TEE platform allowed above
#
# A development workload: simulated TEEs and nil Keeps too (with allow_simulated and
# allow_unattested above). Their certificates carry only the sim_*/unattested_* names,
# never production ones (a client checking a host name cannot see the /sim marker).
# [[workload]]
# digest = "<64 hex: workload digest>"
# spiffe_path = "/dev/frontend"
# platforms = ["sev-snp", "simulated", "unattested"]
# sim_dns_names = ["localhost"]
# sim_ip = ["127.0.0.1", "::1"]
# unattested_dns_names = ["localhost"]

# Secrets (docs/secrets.md): which workloads the Steward releases each stored secret to.
# A /sim or /unattested certificate gets one only where platforms names "simulated" or
# "unattested" explicitly.
# Every field a rule names must match; several rules for one name are alternatives.
# [[secret]]
# name = "db-password"
# spiffe_paths = ["/frontend"]       # and/or digests = ["<64 hex: workload digest>"]
# platforms = ["sev-snp", "tdx"]     # omit for any genuine TEE platform allowed above
#
# The content key of an encrypted package, to every Keep a [[workload]] signer rule
# admitted for a package signed by this key (docs/deploy.md "Encrypted packages"):
# [[secret]]
# name = "app-key"
# signers = ["sha256:<64 hex: signer fingerprint>"]   # or a PEM public key file
# packages = ["registry.example/team/app"]           # optional, only with signers

# Legacy Enarx Keeps, by the measurement of the Enarx runtime (needs allow_legacy_enarx).
# [[legacy]]
# platform = "sgx"
# measurement = "<MRENCLAVE hex>"
# signer = "<MRSIGNER hex>"
# spiffe_path = "/enarx/app"
# simulated = false                   # true: also on simulated evidence, under /sim/
"""
