"""Whatever the platform returns, a backend yields Evidence or a BackendError, never another exception."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from donjon.backends import BackendError, GramineBackend, TsmBackend
from donjon.backends.certtable import VCEK_GUID, build_cert_table

BINDING = bytes(range(64))


def _snp_like(body: bytes) -> bytes:
    # Mostly-valid reports (so the certificate-table path is reached) as well as raw noise.
    report = bytearray(body.ljust(0x4A0, b"\0")[: max(len(body), 0x4A0)])
    report[0x50:0x90] = BINDING
    return bytes(report)


@settings(max_examples=150, deadline=None)
@given(
    outblob=st.one_of(st.binary(max_size=2000), st.binary(max_size=1300).map(_snp_like)),
    auxblob=st.one_of(
        st.binary(max_size=300),
        st.binary(min_size=1, max_size=80).map(lambda cert: build_cert_table([(VCEK_GUID, cert)])),
    ),
    provider=st.sampled_from(["sev_guest", "tdx_guest", "arm_cca_guest"]),
)
def test_any_platform_output_is_evidence_or_a_backend_error(tsm_kernel, outblob, auxblob, provider):
    kernel = tsm_kernel(provider, lambda inblob, privlevel: (outblob, auxblob))
    name = {"sev_guest": "snp", "tdx_guest": "tdx", "arm_cca_guest": "cca"}[provider]
    try:
        evidence = TsmBackend(name, fs=kernel).evidence(BINDING)
    except BackendError:
        pass
    else:
        assert evidence.data == outblob
        assert evidence.binding == BINDING
    assert kernel.entries == {}


@settings(max_examples=60, deadline=None)
@given(text=st.binary(max_size=80))
def test_any_generation_text_is_a_number_or_malformed(tsm_kernel, text):
    kernel = tsm_kernel("sev_guest", lambda inblob, privlevel: (_snp_like(b""), b""))
    real_read = kernel.read_file

    def read_file(path, limit):
        return text if path.endswith("/generation") else real_read(path, limit)

    kernel.read_file = read_file
    with contextlib.suppress(BackendError):
        TsmBackend("snp", fs=kernel).evidence(BINDING)
    assert kernel.entries == {}


@settings(max_examples=100, deadline=None)
@given(quote=st.binary(max_size=3000), kind=st.binary(max_size=20))
def test_any_gramine_output_is_evidence_or_a_backend_error(gramine_fs, quote, kind):
    fs = gramine_fs(lambda data: quote, attestation_type=kind.decode("latin-1"))
    with contextlib.suppress(BackendError):
        GramineBackend(fs=fs).evidence(BINDING)
