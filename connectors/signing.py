"""Options of signed events (docs/security.md): ``sign:`` on a target, ``verify:`` on a
source. The signing itself is ``routing.verifiability`` (CloudEvents verifiability
extension); these models only describe and check the key files."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.tls import readable_file
from routing.event import CONTEXT_ATTRIBUTES

__all__ = ["SignOptions", "VerifyOptions", "VerifyPolicy"]


class SignOptions(BaseModel):
    """A target's ``sign:`` block: sign every event this target publishes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_file: Path = Field(description="PEM file of the ECDSA P-256 private key (unencrypted).")
    key_id: str | None = Field(
        default=None,
        min_length=1,
        description="Key id in the signature; default: the SHA-256 (hex) of the public key, "
        "which verifiers derive from their public key files.",
    )
    extensions: tuple[str, ...] = Field(
        default=(),
        description="Extension attributes covered by the signature (signedextattrs); the "
        "context attributes and the data always are.",
    )

    _check_file = field_validator("key_file")(readable_file)

    @field_validator("extensions")
    @classmethod
    def _check_extensions(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(names)) != len(names):
            raise ValueError("extensions: a name is listed twice")
        for name in names:
            if name in CONTEXT_ATTRIBUTES or name in ("dssematerial", "signedextattrs"):
                raise ValueError(f"extensions: {name!r} is not an extension attribute")
            if name in ("meshpath", "meshhops"):  # every gateway on the way changes them
                raise ValueError(f"extensions: {name!r} changes at every hop; it cannot be signed")
        return names


class VerifyPolicy(StrEnum):
    """What a source does with an event whose signature is missing or wrong."""

    STRICT = "strict"
    """Refuse it: dead letter (or the local dead-letter store), reason ``signature``."""
    PASSTHROUGH = "passthrough"
    """Forward it unchanged; count and log the failure only."""


class VerifyOptions(BaseModel):
    """A source's ``verify:`` block: check the signature of every event it receives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_key_files: tuple[Path, ...] = Field(
        min_length=1,
        description="PEM files of the accepted ECDSA P-256 public keys; each is known by "
        "its SHA-256 fingerprint and by its file name without suffix as key id.",
    )
    policy: VerifyPolicy = Field(
        default=VerifyPolicy.STRICT, description="strict (dead letter) or passthrough."
    )

    @field_validator("public_key_files")
    @classmethod
    def _check_files(cls, paths: tuple[Path, ...]) -> tuple[Path, ...]:
        return tuple(readable_file(path) for path in paths)
