"""Keeping credentials out of every output: metrics, labels, logs, errors and the landing page.

Secrets are held in pydantic `SecretStr`; every value that is ever resolved is also remembered
here so that the log pipeline can mask it even if a library echoes it back in an error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Self

from pydantic import AfterValidator, SecretStr, model_validator

from resilience_exporter.configuration.models import StrictModel

_KNOWN: set[str] = set()
MASK = "<secret>"

# user:password@ in any URL, and password=... in a libpq conninfo string.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*):(?P<pw>[^@\s]*)@", re.I)
_CONNINFO_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.I)


def remember(value: str) -> str:
    """Record a secret value so that `redact` masks it wherever it shows up."""
    if len(value) >= 3:  # masking one or two characters would shred unrelated text
        _KNOWN.add(value)
    return value


def redact(text: str) -> str:
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}:{MASK}@", text)
    text = _CONNINFO_PASSWORD.sub(lambda m: f"{m['key']}{MASK}", text)
    for value in sorted(_KNOWN, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def _remember_secret(value: SecretStr) -> SecretStr:
    remember(value.get_secret_value())
    return value


Secret = Annotated[SecretStr, AfterValidator(_remember_secret)]


class PasswordSource(StrictModel):
    """`password:` (usually `${ENV_VAR}`) or `password_file:`, never both.

    The file is read at every use so that a rotated secret is picked up without a restart.
    """

    password: Secret | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")
        if self.password_file is not None:
            self.read_password_file()
        return self

    def read_password_file(self) -> str:
        assert self.password_file is not None
        try:
            content = self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"password_file {self.password_file}: {exc.strerror}") from None
        return remember(content)

    def resolve_password(self) -> str | None:
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return self.read_password_file()
        return None
