"""RFC 7512 PKCS#11 URIs: what parses, what is refused by name, and that a PIN is never quoted."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from donjon.hsm import BadUri, Pkcs11Uri, is_pkcs11_uri, parse_uri


def test_a_full_uri_parses_with_percent_decoding():
    uri = parse_uri(
        "pkcs11:token=Steward%20HSM;manufacturer=SoftHSM%20project;serial=a1b2;model=SoftHSM%20v2;"
        "object=donjon%2Fca;type=private;id=%01%A0"
        "?pin-source=file:/etc/donjon/pin&module-path=/usr/lib/softhsm/libsofthsm2.so"
    )
    assert uri == Pkcs11Uri(
        token="Steward HSM",
        manufacturer="SoftHSM project",
        serial="a1b2",
        model="SoftHSM v2",
        object="donjon/ca",
        type="private",
        id=b"\x01\xa0",
        pin_source="file:/etc/donjon/pin",
        module_path="/usr/lib/softhsm/libsofthsm2.so",
    )


def test_rfc_7512_examples_parse():
    # RFC 7512 section 3 examples that use only the attributes Donjon accepts.
    assert parse_uri("pkcs11:") == Pkcs11Uri()
    assert parse_uri("pkcs11:object=my-pubkey;type=public") == Pkcs11Uri(object="my-pubkey", type="public")
    assert parse_uri("pkcs11:object=my-key;type=private?pin-source=file:/etc/token").pin_source == (
        "file:/etc/token"
    )
    example = "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc."
    assert parse_uri(example).token == "Software PKCS#11 softtoken"
    assert parse_uri("pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1").module_path
    # (As an object label: as a token label it is longer than CK_TOKEN_INFO's 32 bytes.)
    assert parse_uri("pkcs11:object=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1").object == (
        "Name with a small A with acute: á"
    )
    assert parse_uri("PKCS11:object=a").object == "a"  # RFC 3986 3.1: the scheme is case-insensitive


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("pkcs11:token=a;token=b", "token is given more than once"),
        ("pkcs11:?pin-source=a&pin-source=b", "pin-source is given more than once"),
        ("pkcs11:object=x;colour=red", "unknown path attribute 'colour'"),
        ("pkcs11:?colour=red", "unknown query attribute 'colour'"),
        ("pkcs11:x-vendor=1", "vendor attributes are not supported"),
        ("pkcs11:slot-id=1", "slot-id is not supported by Donjon"),
        ("pkcs11:library-version=2.6", "library-version is not supported"),
        ("pkcs11:?module-name=softhsm2", "module-name is not supported"),
        ("pkcs11:pin-source=file:x", "pin-source belongs in the query component"),
        ("pkcs11:?object=a", "object belongs in the path component"),
        ("pkcs11:object=a/b", "'/' must be percent-encoded"),
        ("pkcs11:object=a?b=c", "unknown query attribute 'b'"),
        ("pkcs11:object=%4", "'%' not followed by two hexadecimal digits"),
        ("pkcs11:object=%zz", "'%' not followed by two hexadecimal digits"),
        ("pkcs11:object=%ff", "not UTF-8"),
        ("pkcs11:object=%0a", "control character"),
        ("pkcs11:object=", "object is empty"),
        ("pkcs11:id=", "id is empty"),
        ("pkcs11:object", "is not name=value"),
        ("pkcs11:object=a;;type=private", "is not name=value"),
        ("pkcs11:type=secret", "type must be one of"),
        ("pkcs11:token=" + "x" * 33, "PKCS#11 allows at most 32"),
        ("pkcs11:object=a#frag", "no fragment"),
        ("pkcs11:?module-path=libsofthsm2.so", "module-path must be an absolute path"),
        ("pkcs11:?pin-value=1&pin-source=file:/p", "not both"),
        ("http://example.org/", "does not start with pkcs11:"),
        ("pkcs11:object=" + "a" * 5000, "longer than 4096"),
    ],
)
def test_bad_uris_are_refused_by_name(text, reason):
    with pytest.raises(BadUri) as caught:
        parse_uri(text)
    assert reason in str(caught.value)


def test_a_refused_uri_never_quotes_its_pin():
    with pytest.raises(BadUri) as caught:
        parse_uri("pkcs11:object=a;bogus=1?pin-value=hunter2")
    assert "hunter2" not in str(caught.value) and "pin-value=***" in str(caught.value)
    uri = parse_uri("pkcs11:object=a?pin-value=hunter2")
    assert uri.pin_value == "hunter2"
    assert "hunter2" not in uri.redacted() and "hunter2" in str(uri)


def test_is_pkcs11_uri_tells_a_uri_from_a_file_name():
    assert is_pkcs11_uri("pkcs11:object=ca") and is_pkcs11_uri("PKCS11:")
    assert not is_pkcs11_uri("ca-key.pem") and not is_pkcs11_uri("./pkcs11:ca")


_labels = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), min_size=1, max_size=20
)
_small = st.text(st.characters(codec="ascii", categories=("L", "N", "P", "S")), min_size=1, max_size=16)
_paths = st.from_regex(r"/[A-Za-z0-9._/\- ]{1,40}", fullmatch=True)


@given(
    token=st.none() | _small,
    serial=st.none() | _small,
    obj=st.none() | _labels,
    type_=st.none() | st.sampled_from(["public", "private", "cert", "secret-key", "data"]),
    id_=st.none() | st.binary(min_size=1, max_size=20),
    pin=st.none() | _labels,
    module=st.none() | _paths,
)
def test_every_uri_round_trips_through_its_text(token, serial, obj, type_, id_, pin, module):
    """Rule: str() of any URI parses back to the same URI (percent-encoding is complete)."""
    uri = Pkcs11Uri(
        token=token, serial=serial, object=obj, type=type_, id=id_, pin_value=pin, module_path=module
    )
    assert parse_uri(str(uri)) == uri


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_bad_uri(text):
    """Rule: any string either parses or raises BadUri; nothing else escapes."""
    for candidate in (text, "pkcs11:" + text):
        try:
            parse_uri(candidate)
        except BadUri as e:
            assert "pin-value=" not in str(e) or "pin-value=***" in str(e)
