"""``[[secret]]`` rules: validated with file:line errors, in the policy digest, explicit markers."""

from __future__ import annotations

import pytest

from donjon.steward.errors import ConfigError, Refused
from donjon.steward.policy import parse_policy
from donjon.steward.secrets.release import ClientIdentity, decide_release

DIGEST = "cd" * 32


def _client(
    path: str = "/app",
    *,
    tee: str | None = "sev-snp",
    simulated: bool = False,
    unattested: bool = False,
    digest: str | None = DIGEST,
) -> ClientIdentity:
    return ClientIdentity("1", f"spiffe://example.org{path}", path, simulated, unattested, tee, digest)


@pytest.mark.parametrize(
    ("rule", "line", "words"),
    [
        ('name = "a/b"\nspiffe_paths = ["/x"]', 5, "name"),
        ('name = "ok"', 4, "names no workload"),
        ('name = "ok"\nspiffe_paths = ["/sim/x"]', 6, "reserved"),
        ('name = "ok"\ndigests = ["abc"]', 6, "64 hex"),
        ('name = "ok"\ndigests = ["' + DIGEST + '"]\nplatforms = ["sgx", "nope"]', 7, "platforms"),
        ('name = "ok"\ndigests = ["' + DIGEST + '"]\ncolour = "red"', 7, "unknown key"),
    ],
)
def test_a_bad_rule_names_its_line(rule: str, line: int, words: str) -> None:
    text = f"version = 1\n\n\n[[secret]]\n{rule}\n"
    with pytest.raises(ConfigError) as e:
        parse_policy(text, path="policy.toml")
    assert e.value.line == line and words in e.value.reason
    assert str(e.value).startswith(f"policy.toml:{line}:")


def test_the_rules_are_in_the_policy_digest() -> None:
    base = "version = 1\n"
    rule = f'[[secret]]\nname = "a"\ndigests = ["{DIGEST}"]\n'
    assert parse_policy(base).digest != parse_policy(base + rule).digest


def test_a_marked_certificate_needs_its_marker_in_platforms() -> None:
    policy = parse_policy(f'version = 1\n[[secret]]\nname = "a"\ndigests = ["{DIGEST}"]\n')
    assert decide_release(policy, "a", _client()).name == "a"
    for client in (_client(simulated=True), _client(tee=None, unattested=True)):
        with pytest.raises(Refused) as e:
            decide_release(policy, "a", client)
        assert e.value.check == "secret.platforms"
    dev = parse_policy(
        f'version = 1\n[[secret]]\nname = "a"\ndigests = ["{DIGEST}"]\nplatforms = ["tdx", "simulated"]\n'
    )
    with pytest.raises(Refused):
        decide_release(dev, "a", _client(simulated=True))  # simulated, but only simulated tdx
    assert decide_release(dev, "a", _client(tee="tdx", simulated=True)).name == "a"


def test_any_rule_for_the_name_may_release_it() -> None:
    policy = parse_policy(
        'version = 1\n[[secret]]\nname = "a"\nspiffe_paths = ["/one"]\n'
        '[[secret]]\nname = "a"\nspiffe_paths = ["/two"]\n'
    )
    assert decide_release(policy, "a", _client("/two")).spiffe_paths == frozenset({"/two"})
    with pytest.raises(Refused) as e:
        decide_release(policy, "a", _client("/three"))
    assert e.value.check == "secret.spiffe_id"
