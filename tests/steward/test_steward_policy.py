"""The policy file: validation with line numbers, and what it decides for given claims."""

from __future__ import annotations

import pytest

from donjon.attestation.claims import Claims, TcbStatus, TeeType
from donjon.steward.errors import ConfigError, Refused
from donjon.steward.policy import STARTER_POLICY, parse_duration, parse_policy

M = "ab" * 48
WD = bytes.fromhex("cd" * 32)

BASE = f"""\
version = 1
allow_simulated = true
[platform.sev-snp]
allowed_measurements = ["{M}"]
min_tcb = {{ snp = 8 }}
registers = {{ host_data = ["{"00" * 32}"] }}
[platform.tdx]
allowed_measurements = ["*"]
allowed_tcb_statuses = ["UpToDate", "SWHardeningNeeded"]
allowed_advisories = ["INTEL-SA-00837"]
[[workload]]
digest = "{WD.hex()}"
spiffe_path = "/svc/api"
dns_names = ["api.example.org"]
lifetime = "1h"
"""


def claims(**kw):
    base = dict(
        tee=TeeType.SNP,
        platform="Milan",
        measurement=bytes.fromhex(M),
        report_data=bytes(64),
        debug=False,
        tcb_status=TcbStatus.UP_TO_DATE,
        measurements={"host_data": bytes(32)},
        raw={"reported_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}},
    )
    base.update(kw)
    return Claims(**base)


def test_starter_policy_is_valid_and_refuses_everything():
    policy = parse_policy(STARTER_POLICY)
    assert not (policy.allow_simulated or policy.allow_unattested or policy.allow_legacy_enarx)
    with pytest.raises(Refused) as info:
        policy.decide(claims(), WD)
    assert info.value.check == "policy.platform"


def test_issues_the_workload_identity():
    d = parse_policy(BASE).decide(claims(), WD)
    assert (d.spiffe_path, d.dns_names, d.lifetime, d.simulated, d.fresh) == (
        "/svc/api", ("api.example.org",), 3600, False, True
    )  # fmt: skip
    marked = BASE.replace('lifetime = "1h"', 'lifetime = "1h"\nplatforms = ["sev-snp", "simulated"]')
    assert parse_policy(marked).decide(claims(simulated=True), WD).spiffe_path == "/sim/svc/api"


# --- issue 9 finding 3: platforms governs simulated and unattested issuance too ---


def test_simulated_evidence_needs_simulated_in_the_workload_s_platforms():
    """allow_simulated alone no longer hands a workload's identity to a simulated TEE."""
    policy = parse_policy(BASE)  # allow_simulated = true, the workload lists no platforms
    with pytest.raises(Refused) as info:
        policy.decide(claims(simulated=True), WD)
    assert info.value.check == "policy.platforms" and "simulated" in info.value.reason
    restricted = parse_policy(BASE.replace('lifetime = "1h"', 'lifetime = "1h"\nplatforms = ["sev-snp"]'))
    with pytest.raises(Refused) as info:
        restricted.decide(claims(simulated=True), WD)
    assert info.value.check == "policy.platforms"
    # "simulated" with a platform named: only that platform's simulator.
    sim_snp = parse_policy(
        BASE.replace('lifetime = "1h"', 'lifetime = "1h"\nplatforms = ["sev-snp", "simulated"]')
    )
    assert sim_snp.decide(claims(simulated=True), WD).spiffe_path == "/sim/svc/api"
    with pytest.raises(Refused) as info:
        sim_snp.decide(claims(simulated=True, tee=TeeType.TDX, measurements={}, raw={}), WD)
    assert info.value.check == "policy.platforms"
    # "simulated" alone: any simulator, but no genuine platform.
    sim_only = parse_policy(BASE.replace('lifetime = "1h"', 'lifetime = "1h"\nplatforms = ["simulated"]'))
    assert sim_only.decide(claims(simulated=True), WD).simulated
    with pytest.raises(Refused) as info:
        sim_only.decide(claims(), WD)
    assert info.value.check == "policy.platforms"


def test_unattested_needs_unattested_in_the_workload_s_platforms():
    """The reproduced attack: allow_unattested for a dev workload, a nil CSR naming production."""
    dev = "ef" * 32
    text = (
        "allow_unattested = true\n"
        + BASE.replace('lifetime = "1h"', 'lifetime = "1h"\nplatforms = ["sev-snp"]')
        + f'[[workload]]\ndigest = "{dev}"\nspiffe_path = "/dev/app"\nplatforms = ["unattested"]\n'
        + 'unattested_dns_names = ["dev.localhost"]\n'
    )
    policy = parse_policy(text)
    with pytest.raises(Refused) as info:
        policy.decide(None, WD)
    assert info.value.check == "policy.platforms" and "unattested" in info.value.reason
    d = policy.decide(None, bytes.fromhex(dev))
    assert (d.spiffe_path, d.dns_names, d.unattested) == ("/unattested/dev/app", ("dev.localhost",), True)


def test_marked_certificates_carry_only_the_names_listed_for_them():
    text = BASE.replace(
        'lifetime = "1h"',
        'lifetime = "1h"\nip = ["192.0.2.7", "2001:DB8::7"]\n'
        'platforms = ["sev-snp", "simulated", "unattested"]',
    )
    policy = parse_policy("allow_unattested = true\n" + text)
    real = policy.decide(claims(), WD)
    assert real.dns_names == ("api.example.org",)
    assert [str(a) for a in real.ip_addresses] == ["192.0.2.7", "2001:db8::7"]
    for d in (policy.decide(claims(simulated=True), WD), policy.decide(None, WD)):
        assert (d.dns_names, d.ip_addresses) == ((), ())  # never the production names
    named = parse_policy(
        text.replace(
            'lifetime = "1h"', 'lifetime = "1h"\nsim_dns_names = ["localhost"]\nsim_ip = ["127.0.0.1"]'
        )
    )
    d = named.decide(claims(simulated=True), WD)
    assert d.dns_names == ("localhost",) and [str(a) for a in d.ip_addresses] == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('sim_dns_names = ["api.example.org"]\nplatforms = ["simulated"]', "also a production name"),
        ('ip = ["10.0.0.1"]\nsim_ip = ["10.0.0.1"]\nplatforms = ["simulated"]', "also a production name"),
        ('sim_dns_names = ["localhost"]', "never used"),
        ('unattested_ip = ["127.0.0.1"]\nplatforms = ["simulated"]', "never used"),
        ('ip = ["not-an-ip"]', "not an IPv4 or IPv6 address"),
        ('ip = ["10.0.0.0/8"]', "not an IPv4 or IPv6 address"),
        ('ip = ["0.0.0.0"]', "cannot name a server"),
        ('platforms = ["nil"]', "platforms must list values"),
        ("platforms = []", "platforms must list values"),
    ],
)
def test_names_and_platforms_are_validated(extra, message):
    with pytest.raises(ConfigError, match=message):
        parse_policy(BASE.replace('lifetime = "1h"', 'lifetime = "1h"\n' + extra))


def test_legacy_rules_issue_on_simulated_evidence_only_when_they_say_so():
    text = (
        "allow_legacy_enarx = true\n"
        + BASE
        + (
            f'\n[[legacy]]\nplatform = "sev-snp"\nmeasurement = "{M}"\nspiffe_path = "/enarx/x"\n'
            'dns_names = ["enarx.example.org"]\n'
        )
    )
    with pytest.raises(Refused) as info:
        parse_policy(text).decide_legacy(claims(simulated=True))
    assert info.value.check == "policy.platforms"
    d = parse_policy(text + "simulated = true\n").decide_legacy(claims(simulated=True))
    assert (d.spiffe_path, d.dns_names) == ("/sim/enarx/x", ())


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ({"simulated": True}, None),
        ({"debug": True}, "policy.debug"),
        ({"measurement": bytes(48)}, "policy.measurement"),
        ({"measurements": {"host_data": b"\x01" * 32}}, "policy.register"),
        ({"raw": {"reported_tcb": {"snp": 7}}}, "policy.min_tcb"),
        ({"raw": {}}, "policy.min_tcb"),
        ({"tcb_status": TcbStatus.OUT_OF_DATE}, "policy.tcb_status"),
        ({"tee": TeeType.SGX}, "policy.platform"),
    ],
)
def test_platform_rules(change, check):
    policy = parse_policy(BASE)
    if check is None:
        policy.check_claims(claims(**change))
        return
    with pytest.raises(Refused) as info:
        policy.check_claims(claims(**change))
    assert info.value.check == check


def test_simulated_is_off_by_default_and_denied_wins():
    policy = parse_policy(BASE.replace("allow_simulated = true", "allow_simulated = false"))
    with pytest.raises(Refused, match="simulated"):
        policy.check_claims(claims(simulated=True))
    denied = BASE.replace("min_tcb", f'denied_measurements = ["{M}"]\nmin_tcb')
    with pytest.raises(Refused) as info:
        parse_policy(denied).check_claims(claims())
    assert info.value.check == "policy.measurement_denied"


def test_tdx_advisories_and_statuses():
    policy = parse_policy(BASE)
    tdx = dict(tee=TeeType.TDX, measurements={}, raw={})
    policy.check_claims(
        claims(**tdx, tcb_status=TcbStatus.SW_HARDENING_NEEDED, advisory_ids=("INTEL-SA-00837",))
    )
    with pytest.raises(Refused) as info:
        policy.check_claims(claims(**tdx, advisory_ids=("INTEL-SA-00837", "INTEL-SA-00999")))
    assert info.value.check == "policy.advisories" and "INTEL-SA-00999" in info.value.reason


def test_unknown_workload_and_unattested():
    policy = parse_policy(BASE)
    with pytest.raises(Refused) as info:
        policy.decide(claims(), b"\x00" * 32)
    assert info.value.check == "policy.workload"
    with pytest.raises(Refused) as info:
        policy.decide(None, WD)
    assert info.value.check == "policy.unattested"
    unsafe = parse_policy(
        "allow_unattested = true\n"
        + BASE.replace('lifetime = "1h"', 'lifetime = "1h"\nplatforms = ["unattested"]')
    )
    assert unsafe.decide(None, WD).spiffe_path == "/unattested/svc/api"


def test_legacy_needs_opt_in_and_maps_the_measurement():
    text = BASE + f'\n[[legacy]]\nplatform = "sev-snp"\nmeasurement = "{M}"\nspiffe_path = "/enarx/x"\n'
    with pytest.raises(Refused) as info:
        parse_policy(text).decide_legacy(claims())
    assert info.value.check == "policy.legacy"
    d = parse_policy("allow_legacy_enarx = true\n" + text).decide_legacy(claims())
    assert d.spiffe_path == "/enarx/x" and d.fresh is False


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("version = 1\nbogus = 3\n", 2, "unknown key 'bogus'"),
        ('[platform.sev-snp]\nallowed_measurements = ["zz"]\n', 2, "not a hex string"),
        ("[platform.sev-snp]\nallowed_measurements = []\n", 2, "empty"),
        ("[platform.sev-snp]\nmin_tcb = { snp = 8 }\n", 1, "allowed_measurements is required"),
        ('[platform.sgx]\nallowed_measurements = ["*"]\nfrobnicate = 1\n', 3, "unknown key"),
        ('[platform.quantum]\nallowed_measurements = ["*"]\n', 1, "unknown platform"),
        ('lifetime = "10y"\n', 1, "not a duration"),
        ('lifetime = "48h"\n', 1, "at most max_lifetime"),
        ('collateral_grace = "90d"\n', 1, "may not exceed"),
        ('\n\n[[workload]]\ndigest = "00"\nspiffe_path = "/a"\n', 4, "64 hex"),
        (f'[[workload]]\ndigest = "{"0" * 64}"\nspiffe_path = "/a/../b"\n', 3, "not allowed by SPIFFE"),
        (f'[[workload]]\ndigest = "{"0" * 64}"\nspiffe_path = "/sim/x"\n', 3, "reserved"),
        (f'[[workload]]\ndigest = "{"0" * 64}"\nspiffe_path = "/a"\ndns_names = ["-bad-"]\n', 4, "host name"),
        ('allow_simulated = "yes"\n', 1, "true or false"),
        ("a = 1\nb = = 2\n", 2, "not valid TOML"),
    ],
)
def test_errors_name_the_line(text, line, message):
    with pytest.raises(ConfigError) as info:
        parse_policy(text, path="p.toml")
    assert info.value.line == line, str(info.value)
    assert message in str(info.value)
    assert str(info.value).startswith(f"p.toml:{line}:")


def test_second_workload_error_points_at_its_own_table():
    ok = f'[[workload]]\ndigest = "{"0" * 64}"\nspiffe_path = "/a"\n'
    bad = '[[workload]]\ndigest = "x"\nspiffe_path = "/b"\n'
    with pytest.raises(ConfigError) as info:
        parse_policy(ok + bad)
    assert info.value.line == 5


def test_durations():
    assert [parse_duration(x) for x in ("90s", "30m", "4h", "7d")] == [90, 1800, 14400, 604800]
    for bad in ("", "4", "h", "-1h", "1.5h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_policy_digest_changes_with_the_text():
    assert parse_policy(BASE).digest != parse_policy(BASE + "\n").digest
