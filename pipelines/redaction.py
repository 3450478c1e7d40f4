"""Secrets out of everything a run records: signed URLs and credentials of the environment.

Asset hrefs may be signed (Planetary Computer SAS tokens, S3 pre-signed URLs: the query
string carries a signature, a credential id, a security token), and error messages of GDAL
or of the storage libraries may quote them. Whatever a run writes or logs about an asset
(broken-asset records, warnings, tile records, the summary, Prefect logs and artifacts) goes
through :func:`redact_url` / :func:`redact_text` first:

- a URL's query string is replaced by ``?<redacted>`` (kept as a hint that the URL was
  signed; the unsigned path still names the asset), and a ``user:password@`` by
  ``<redacted>@``;
- any value of the environment's credential variables (:data:`SECRET_VARIABLES`) found in a
  text is replaced by ``<redacted>``.
"""

from __future__ import annotations

import os
import re

__all__ = ["REDACTED", "SECRET_VARIABLES", "redact_text", "redact_url"]

REDACTED = "<redacted>"

SECRET_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "GOOGLE_APPLICATION_CREDENTIALS_JSON",
    "PC_SDK_SUBSCRIPTION_KEY",
    "PREFECT_API_KEY",
)
"""Environment variables whose values are credentials (never recorded)."""

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_MIN_SECRET_LENGTH = 6
"""Shorter values (e.g. a region name set in a credential variable by mistake) would redact
common words."""


def redact_url(url: str) -> str:
    """``url`` without its query string (signatures, tokens) and user information; a URL
    without either is returned unchanged. ``/vsicurl/`` and other GDAL prefixes are kept."""
    path, question, _query = url.partition("?")
    path = _USERINFO.sub(rf"\g<1>{REDACTED}@", path)
    return f"{path}?{REDACTED}" if question else path


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (:func:`redact_url`) and every credential of
    the environment replaced by ``<redacted>``."""
    text = _URL.sub(lambda match: redact_url(match.group(0)), text)
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= _MIN_SECRET_LENGTH:
            text = text.replace(value, REDACTED)
    return text
