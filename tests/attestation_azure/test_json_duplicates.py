"""Rule: a JSON document from outside with a member given twice is refused, whoever parses it
(Azure evidence, HCL runtime claims, Intel TCB documents): two JSON readers keep different ones."""

from __future__ import annotations

import pytest

from donjon.attestation import hcl
from donjon.attestation.azure import parse_azure_evidence
from donjon.attestation.errors import CollateralError, MalformedEvidence
from donjon.attestation.jsondoc import no_duplicate_members
from donjon.attestation.tcbinfo import split_signed_document


def test_the_hook_names_the_member():
    assert no_duplicate_members([("a", 1), ("b", 2)]) == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match="duplicate member 'a'"):
        no_duplicate_members([("a", 1), ("a", 2)])


def test_azure_evidence_with_a_member_twice_is_malformed():
    with pytest.raises(MalformedEvidence, match="duplicate member 'hcl_report'"):
        parse_azure_evidence(b'{"hcl_report": "AA", "hcl_report": "AB"}', "sev-snp")


def test_hcl_runtime_claims_with_a_member_twice_are_malformed():
    with pytest.raises(MalformedEvidence, match="duplicate member 'keys'"):
        hcl.parse_runtime_claims(b'{"keys": [], "keys": []}')


def test_a_tcb_document_with_a_member_twice_is_refused():
    with pytest.raises(CollateralError, match="duplicate member"):
        split_signed_document(b'{"tcbInfo": {}, "tcbInfo": {}, "signature": "00"}', "tcbInfo")
