"""The Steward's policy: a TOML file, validated at load with line-numbered errors.

What a policy decides (DESIGN.md "What the Steward checks"): which platforms,
measurements, signers and TCB levels are acceptable, which workload digests
map to which identity (SPIFFE path, DNS names) and for how long, and the three
opt-ins that weaken it, each off by default: ``allow_simulated``,
``allow_unattested`` (unsafe) and ``allow_legacy_enarx``. Every key is
documented in docs/steward.md; :data:`STARTER_POLICY` is a commented example.

Evaluation is pure: verified :class:`Claims` (or none, for unattested), the
workload digest and the request kind go in; a :class:`Decision` or
:class:`Refused` (``policy.<rule>``) comes out.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from donjon.attestation.claims import Claims, TcbStatus
from donjon.steward.errors import ConfigError, Refused

__all__ = [
    "MAX_POLICY_BYTES",
    "PLATFORMS",
    "STARTER_POLICY",
    "Decision",
    "LegacyRule",
    "PlatformRule",
    "Policy",
    "WorkloadRule",
    "load_policy",
    "parse_duration",
    "parse_policy",
]

MAX_POLICY_BYTES = 1 << 20
#: Platform names, as ``TeeType`` values.
PLATFORMS = ("sev-snp", "tdx", "sgx", "cca")
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


@dataclass(frozen=True)
class WorkloadRule:
    digest: str
    spiffe_path: str
    dns_names: tuple[str, ...]
    lifetime: int
    platforms: frozenset[str] | None


@dataclass(frozen=True)
class LegacyRule:
    platform: str
    measurement: str
    signer: str | None
    spiffe_path: str
    dns_names: tuple[str, ...]
    lifetime: int


@dataclass(frozen=True)
class Decision:
    """What to issue: a SPIFFE path (already marked /sim or /unattested), DNS names, lifetime."""

    spiffe_path: str
    dns_names: tuple[str, ...]
    lifetime: int
    simulated: bool
    fresh: bool
    rule: str


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
        if rule.allowed_measurements is not None and measurement not in rule.allowed_measurements:
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

    def decide(self, claims: Claims | None, workload_digest: bytes | None) -> Decision:
        """Native request: platform rules (unless unattested), then the workload's identity."""
        if claims is None:
            if not self.allow_unattested:
                raise Refused("policy.unattested", "the CSR has no evidence and allow_unattested is off")
        else:
            self.check_claims(claims)
        if workload_digest is None:
            raise Refused("policy.workload", "the CSR carries no workload digest", status=400)
        digest = workload_digest.hex()
        for wl in self.workloads:
            if wl.digest != digest:
                continue
            if claims is not None and wl.platforms is not None and claims.tee.value not in wl.platforms:
                continue
            if claims is None:
                path = "/unattested" + wl.spiffe_path
            elif claims.simulated:
                path = "/sim" + wl.spiffe_path
            else:
                path = wl.spiffe_path
            return Decision(
                spiffe_path=path,
                dns_names=wl.dns_names,
                lifetime=wl.lifetime,
                simulated=claims is not None and claims.simulated,
                fresh=True,
                rule=f"workload {digest}",
            )
        raise Refused("policy.workload", f"workload digest {digest} is not in the policy")

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
            path = ("/sim" if claims.simulated else "") + rule.spiffe_path
            return Decision(
                spiffe_path=path,
                dns_names=rule.dns_names,
                lifetime=rule.lifetime,
                simulated=claims.simulated,
                fresh=False,
                rule=f"legacy {rule.platform} {measurement}",
            )
        raise Refused(
            "policy.legacy_identity", f"no legacy identity for {claims.tee.value} measurement {measurement}"
        )


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


def _dns_names(ctx: _Ctx, value: Any, table: str, index: int) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ctx.error("dns_names must be a list of host names", table, "dns_names", index)
    for name in value:
        labels = name.split(".")
        if len(name) > 253 or not all(_DNS_LABEL.match(label) for label in labels):
            raise ctx.error(f"dns_names: {name!r} is not a host name", table, "dns_names", index)
    return tuple(name.lower() for name in value)


def _platform_rule(ctx: _Ctx, name: str, doc: Any) -> PlatformRule:
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
    )


def parse_policy(text: str, *, path: str = "<policy>") -> Policy:
    """Parse and validate a policy; raise :class:`ConfigError` with the line of the first problem."""
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
    platforms = {name: _platform_rule(ctx, name, sub) for name, sub in platforms_doc.items()}

    def lifetime_of(entry: Mapping[str, Any], table: str, index: int) -> int:
        value = _duration(ctx, entry, "lifetime", f"{default_lifetime}s", table, index)
        if value <= 0 or value > max_lifetime:
            raise ctx.error("lifetime must be positive and at most max_lifetime", table, "lifetime", index)
        return value

    workloads: list[WorkloadRule] = []
    wl_doc = doc.get("workload", [])
    if not isinstance(wl_doc, list):
        raise ctx.error("workload must be an array of tables ([[workload]])", None, "workload")
    for i, entry in enumerate(wl_doc):
        _check_keys(
            ctx, entry, {"digest", "spiffe_path", "dns_names", "lifetime", "platforms"}, "workload", i
        )
        digest = entry.get("digest")
        if not isinstance(digest, str) or not _HEX.match(digest.lower()) or len(digest) != 64:
            raise ctx.error("digest must be a workload digest: 64 hex characters", "workload", "digest", i)
        plats = entry.get("platforms")
        if plats is not None and (not isinstance(plats, list) or not all(p in PLATFORMS for p in plats)):
            raise ctx.error(f"platforms must list values from {list(PLATFORMS)}", "workload", "platforms", i)
        workloads.append(
            WorkloadRule(
                digest=digest.lower(),
                spiffe_path=_spiffe_path(ctx, entry.get("spiffe_path"), "workload", i),
                dns_names=_dns_names(ctx, entry.get("dns_names", []), "workload", i),
                lifetime=lifetime_of(entry, "workload", i),
                platforms=frozenset(plats) if plats is not None else None,
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
            {"platform", "measurement", "signer", "spiffe_path", "dns_names", "lifetime"},
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
        legacy.append(
            LegacyRule(
                platform=plat,
                measurement=next(iter(meas)),
                signer=signer,
                spiffe_path=_spiffe_path(ctx, entry.get("spiffe_path"), "legacy", i),
                dns_names=_dns_names(ctx, entry.get("dns_names", []), "legacy", i),
                lifetime=lifetime_of(entry, "legacy", i),
            )
        )
    return Policy(
        digest=hashlib.sha256(raw).hexdigest(),
        source=path,
        allow_simulated=_bool(ctx, doc, "allow_simulated"),
        allow_unattested=_bool(ctx, doc, "allow_unattested"),
        allow_legacy_enarx=_bool(ctx, doc, "allow_legacy_enarx"),
        collateral_grace=grace,
        max_lifetime=max_lifetime,
        platforms=platforms,
        workloads=tuple(workloads),
        legacy=tuple(legacy),
    )


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

# Accept evidence signed by a *simulated* vendor (sim-snp, sim-tdx). Certificates issued
# for it carry a SPIFFE path under /sim/. Never enable this in production.
allow_simulated = false

# UNSAFE: issue to Keeps without any TEE evidence (the nil backend), under /unattested/.
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

# Workloads, by workload digest (donjon prints it), and the identity each receives:
# spiffe://<trust domain from steward.toml><spiffe_path>, plus DNS names.
# [[workload]]
# digest = "<64 hex: workload digest>"
# spiffe_path = "/frontend"
# dns_names = ["frontend.example.org"]
# lifetime = "2h"
# platforms = ["sev-snp", "tdx"]      # omit for any platform allowed above

# Legacy Enarx Keeps, by the measurement of the Enarx runtime (needs allow_legacy_enarx).
# [[legacy]]
# platform = "sgx"
# measurement = "<MRENCLAVE hex>"
# signer = "<MRSIGNER hex>"
# spiffe_path = "/enarx/app"
"""
