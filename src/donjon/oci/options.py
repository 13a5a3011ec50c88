"""What a command's registry options make: a registry client and the trusted signer keys. I/O.

Shared by ``donjon package`` and ``donjon run oci://`` (so a run never imports the package
command's argument parser, and both read ``--registry-ca``, credentials and signer keys alike).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when used: ``donjon package --help`` needs none of them
    from donjon.oci.reference import Reference
    from donjon.oci.registry import RegistryClient
    from donjon.oci.signature import PublicKey

__all__ = ["REGISTRY_CA_ENV", "registry_client", "trusted_keys"]

#: The registry's CA certificate(s), PEM, when ``--registry-ca`` is not given.
REGISTRY_CA_ENV = "DONJON_REGISTRY_CA"


def registry_client(
    ref: Reference, *, ca: str | None, user: str | None, password_file: str | None
) -> RegistryClient:
    """A client for ``ref``'s registry with the CA and credentials the options and environment give."""
    from donjon.oci.auth import find_credentials
    from donjon.oci.registry import RegistryClient

    credentials = find_credentials(ref.registry, username=user, password_file=password_file)
    ca = ca or os.environ.get(REGISTRY_CA_ENV) or None
    return RegistryClient(ref.registry, credentials=credentials, ca_file=ca)


def trusted_keys(paths: list[str]) -> list[PublicKey]:
    from donjon.oci.errors import Unreadable
    from donjon.oci.signature import load_public_key

    keys = []
    for path in paths:
        try:
            keys.append(load_public_key(Path(path).read_bytes(), what=path))
        except OSError as e:
            raise Unreadable(path, e.strerror or str(e)) from e
    return keys
