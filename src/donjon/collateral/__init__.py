"""Vendor collateral: AMD KDS and Intel PCS clients, an on-disk cache, offline bundles.

The only part of Donjon that talks to vendors. It fetches and caches; it never
verifies (the attestation library does, with the documents this returns).
"""

from donjon.collateral.bundle import ImportReport, import_bundle
from donjon.collateral.cache import CacheEntry, CollateralCache
from donjon.collateral.errors import (
    CollateralUnavailable,
    FetchError,
    FetchFailed,
    NotFetchable,
    ResponseTooLarge,
)
from donjon.collateral.http import FetchConfig, HttpFetcher, HttpResponse
from donjon.collateral.kds import DEFAULT_KDS_URL, KdsClient, VcekRequest, VcekTcb
from donjon.collateral.pcs import DEFAULT_PCS_URL, DEFAULT_ROOT_CRL_URL, PcsClient, PcsDocument
from donjon.collateral.store import CollateralStore
from donjon.collateral.validity import DocKind

__all__ = [
    "DEFAULT_KDS_URL",
    "DEFAULT_PCS_URL",
    "DEFAULT_ROOT_CRL_URL",
    "CacheEntry",
    "CollateralCache",
    "CollateralStore",
    "CollateralUnavailable",
    "DocKind",
    "FetchConfig",
    "FetchError",
    "FetchFailed",
    "HttpFetcher",
    "HttpResponse",
    "ImportReport",
    "KdsClient",
    "NotFetchable",
    "PcsClient",
    "PcsDocument",
    "ResponseTooLarge",
    "VcekRequest",
    "VcekTcb",
    "import_bundle",
]
