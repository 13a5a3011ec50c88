"""Auditing a Steward's transparency log from outside: a witness, and inclusion checks.

:mod:`donjon.audit.verify` checks what a log serves (pure); :mod:`donjon.audit.client`
fetches it over HTTP(S), bounded; :mod:`donjon.audit.state` keeps a witness's last
checkpoint. ``donjon log audit`` and ``donjon peer verify --require-logged`` use them.
"""

from donjon.audit.client import LogClient, LogUnreachable
from donjon.audit.verify import AuditRefused, LoggedCertificate, check_extension, check_inclusion

__all__ = [
    "AuditRefused",
    "LogClient",
    "LogUnreachable",
    "LoggedCertificate",
    "check_extension",
    "check_inclusion",
]
