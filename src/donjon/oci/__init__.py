"""Workload packages as OCI artifacts: build, push, sign, pull and verify (docs/deploy.md).

- :mod:`~donjon.oci.reference` - ``REGISTRY/REPO:TAG`` / ``@sha256:...`` (pure);
- :mod:`~donjon.oci.artifact` - the package manifest, its media types, deterministic tars (pure);
- :mod:`~donjon.oci.signature` - cosign-compatible key-based signatures (pure);
- :mod:`~donjon.oci.build`, :mod:`~donjon.oci.layout` - a package from files, on disk as an OCI
  image layout;
- :mod:`~donjon.oci.auth`, :mod:`~donjon.oci.registry` - credentials and the registry client;
  :mod:`~donjon.oci.token` its auth challenges and token answers (pure),
  :mod:`~donjon.oci.transport` its HTTPS on the standard library (redirects, proxies),
  :mod:`~donjon.oci.options` a client and signer keys from a command's options;
- :mod:`~donjon.oci.pull`, :mod:`~donjon.oci.cache`, :mod:`~donjon.oci.unpack` - a verified pull
  into a runnable workload;
- :mod:`~donjon.oci.encryption`, :mod:`~donjon.oci.memdir` - encrypted packages: their layers
  sealed to a Steward secret, their files decrypted onto a memory-backed filesystem only.
"""

from donjon.oci.errors import (
    AuthFailed,
    BadReference,
    DigestMismatch,
    KeyMismatch,
    MalformedPackage,
    NotFound,
    OciError,
    PackageRefused,
    RegistryError,
    RegistryUnavailable,
    SignatureError,
    TooLarge,
)
from donjon.oci.reference import Reference, parse_reference

__all__ = [
    "AuthFailed",
    "BadReference",
    "DigestMismatch",
    "KeyMismatch",
    "MalformedPackage",
    "NotFound",
    "OciError",
    "PackageRefused",
    "Reference",
    "RegistryError",
    "RegistryUnavailable",
    "SignatureError",
    "TooLarge",
    "parse_reference",
]
