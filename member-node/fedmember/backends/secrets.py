"""Secrets a backend config names but never contains: an API token read from a file or an environment variable.

Config files get copied into tickets, charts and logs; tokens must not travel with
them. A backend config therefore names *where* its token is (``token_file`` or
``token_env``) and the value is read when first needed.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class SecretConfigError(ValueError):
    """The named secret cannot be read (missing file, empty value, unset variable)."""


class TokenSource(BaseModel):
    """Where to read a token from: a file, else an environment variable."""

    model_config = ConfigDict(extra="forbid")

    token_file: Path | None = Field(
        default=None, description="File holding the API token (first line; surrounding whitespace ignored)."
    )
    token_env: str | None = Field(
        default=None, description="Environment variable holding the API token (used when no token_file is set)."
    )

    @property
    def configured(self) -> bool:
        return self.token_file is not None or bool(self.token_env)

    def read(self, what: str) -> str:
        """The token; raises :class:`SecretConfigError` naming ``what`` needs it."""
        if self.token_file is not None:
            try:
                lines = self.token_file.read_text().strip().splitlines()
            except OSError as exc:
                raise SecretConfigError(f"cannot read the {what} token file {self.token_file}: {exc.strerror}") from None
            value = lines[0].strip() if lines else ""
            if not value:
                raise SecretConfigError(f"the {what} token file {self.token_file} is empty")
            return value
        if self.token_env:
            value = os.environ.get(self.token_env, "").strip()
            if not value:
                raise SecretConfigError(f"the environment variable {self.token_env} ({what} token) is unset or empty")
            return value
        raise SecretConfigError(f"no {what} token configured: set token_file or token_env")
