"""Selection: the workload's allow-list, 'auto', and the nil fall-back."""

from __future__ import annotations

import pytest

from donjon.backends import (
    AUTO_ORDER,
    Availability,
    BackendNotAllowed,
    BackendUnavailable,
    GramineBackend,
    NilBackend,
    PlatformRoots,
    SimBackend,
    TsmBackend,
    UnknownBackend,
    create_backend,
    select_backend,
)


class StubBackend:
    """A backend whose probe answer is fixed (selection is what is under test here)."""

    def __init__(self, name, usable):
        self.name = name
        self.attested = name != "nil"
        self.simulated = name.startswith("sim-")
        self._usable = usable
        self.probed = 0

    def probe(self):
        self.probed += 1
        return Availability(usable=self._usable, reason=f"{self.name} is {'up' if self._usable else 'down'}")

    def evidence(self, binding):
        raise AssertionError("selection must not ask for evidence")


def factory_for(usable=(), made=None):
    made = made if made is not None else []

    def factory(name):
        backend = StubBackend(name, usable=name in usable or name == "nil")
        made.append(name)
        return backend

    return factory


def test_auto_order_is_documented():
    assert AUTO_ORDER == ("snp", "tdx", "cca", "sgx", "azure-snp", "azure-tdx")


def test_auto_picks_the_first_usable_attested_backend():
    made = []
    backend = select_backend(None, None, factory=factory_for({"tdx", "sgx"}, made))
    assert backend.name == "tdx"
    assert made == ["snp", "tdx"]


def test_auto_never_picks_a_simulator():
    warnings = []
    backend = select_backend("auto", None, factory=factory_for({"sim-snp", "sim-tdx"}), warn=warnings.append)
    assert backend.name == "nil"
    assert warnings and "falling back to nil" in warnings[0]
    assert "snp: snp is down" in warnings[0]


def test_auto_respects_the_allow_list():
    made = []
    backend = select_backend(None, ["sgx", "nil"], factory=factory_for({"snp", "sgx"}, made))
    assert backend.name == "sgx"
    assert made == ["sgx"]


def test_auto_without_nil_allowed_refuses_with_every_reason():
    with pytest.raises(BackendUnavailable, match="no allowed attested backend") as info:
        select_backend(None, ["snp", "tdx"], factory=factory_for(()))
    assert "snp: snp is down" in info.value.reason
    assert "tdx: tdx is down" in info.value.reason


def test_auto_with_only_simulators_allowed_refuses():
    with pytest.raises(BackendUnavailable, match="names none that auto may pick"):
        select_backend(None, ["sim-snp"], factory=factory_for({"sim-snp"}))


def test_requested_backend_outside_the_allow_list_is_refused_before_probing():
    made = []
    with pytest.raises(BackendNotAllowed, match="does not include it") as info:
        select_backend("nil", ["snp", "tdx"], factory=factory_for((), made))
    assert info.value.backend == "nil"
    assert "Donjon.toml" in (info.value.fix or "")
    assert made == []


def test_requested_backend_that_does_not_work_says_why():
    with pytest.raises(BackendUnavailable, match="snp is down"):
        select_backend("snp", None, factory=factory_for(()))


def test_requested_usable_backend_is_returned():
    assert select_backend("sim-tdx", ["sim-tdx"], factory=factory_for({"sim-tdx"})).name == "sim-tdx"


def test_requested_nil_warns():
    warnings = []
    assert select_backend("nil", None, factory=factory_for(()), warn=warnings.append).name == "nil"
    assert "WITHOUT a TEE" in warnings[0]


def test_unknown_names_are_usage_errors():
    with pytest.raises(UnknownBackend, match="choose one of auto, snp"):
        select_backend("sev", None, factory=factory_for(()))
    with pytest.raises(UnknownBackend, match="allow-list"):
        select_backend(None, ["snp", "tpm"], factory=factory_for(()))


def test_empty_allow_list_refuses_everything():
    with pytest.raises(BackendNotAllowed, match="empty"):
        select_backend("nil", [], factory=factory_for(()))
    with pytest.raises(BackendUnavailable):
        select_backend(None, [], factory=factory_for(()))


def test_real_factory_on_a_bare_tree_falls_back_to_nil(tmp_path):
    warnings = []
    backend = select_backend(None, None, roots=PlatformRoots.under(tmp_path), warn=warnings.append)
    assert isinstance(backend, NilBackend)
    assert "configfs is not mounted" in warnings[0]


def test_create_backend_types_and_roots(tmp_path):
    roots = PlatformRoots.under(tmp_path)
    snp = create_backend("snp", roots=roots, privlevel=1)
    assert isinstance(snp, TsmBackend) and str(roots.tsm_report) in repr(snp)
    assert isinstance(create_backend("sgx", roots=roots), GramineBackend)
    assert isinstance(create_backend("sim-snp", roots=roots), SimBackend)
    assert isinstance(create_backend("nil"), NilBackend)
    with pytest.raises(UnknownBackend):
        create_backend("auto")
