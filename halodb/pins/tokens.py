"""Access tokens for pinning services: from an environment variable or a file, never from a
command line (where every user of the machine can read it in the process list).

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "token")
>>> _ = open(path, "w").write("s3cret-token-value\\n")
>>> read_token(SERVICE_TOKEN, file=path, environ={})
's3cret-token-value'
>>> read_token(SERVICE_TOKEN, environ={})
Traceback (most recent call last):
...
halodb.errors.InputError: a pinning service needs an access token: set HALODB_PINNING_SERVICE_TOKEN, or name a file holding it with --token-file (or HALODB_PINNING_SERVICE_TOKEN_FILE)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from halodb.errors import InputError
from halodb.util.oserrors import describe_os_error

__all__ = ["MAX_TOKEN", "MIN_TOKEN", "SERVER_TOKEN", "SERVICE_TOKEN", "TokenSource", "read_token"]

MIN_TOKEN = 16  #: characters a token must have at least (a guessable token is no token)
MAX_TOKEN = 4096


@dataclass(frozen=True)
class TokenSource:
    """Where one kind of token comes from: ``variable`` (the token), ``file_variable`` (a file
    holding it), ``option`` (the command-line option naming such a file) and, for messages,
    ``what`` needs it."""

    variable: str
    file_variable: str
    option: str
    what: str


#: the token ``halodb serve --pinning`` requires of its clients
SERVER_TOKEN = TokenSource("HALODB_PINNING_TOKEN", "HALODB_PINNING_TOKEN_FILE", "--pinning-token-file", "--pinning")
#: the token ``halodb pins push`` sends to a service
SERVICE_TOKEN = TokenSource("HALODB_PINNING_SERVICE_TOKEN", "HALODB_PINNING_SERVICE_TOKEN_FILE", "--token-file",
                            "a pinning service")


def read_token(source: TokenSource, *, file: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The token: from ``file`` (or the file ``source.file_variable`` names), or from
    ``source.variable``; one of the two, :data:`MIN_TOKEN` to :data:`MAX_TOKEN` printable
    characters without whitespace. Every failure is an :class:`InputError` naming where it
    looked, never the token."""
    env = os.environ if environ is None else environ
    file = file or env.get(source.file_variable) or None
    given = env.get(source.variable)
    if file is not None and given:
        raise InputError(f"give the token by {source.variable} or by a file ({source.option}, {source.file_variable}), "
                         "not both", source=source.option)
    where = source.variable
    if file is not None:
        where = file
        try:
            with open(file, "rb") as f:
                raw = f.read(MAX_TOKEN + 2)
        except OSError as exc:
            raise InputError(f"cannot read the token file {file}: {describe_os_error(exc)}", source=source.option) from None
        try:
            given = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise InputError(f"the token file {file} is not UTF-8 text", source=source.option) from None
    if not given:
        raise InputError(f"{source.what} needs an access token: set {source.variable}, or name a file holding it "
                         f"with {source.option} (or {source.file_variable})", source=source.option)
    if len(given) < MIN_TOKEN or len(given) > MAX_TOKEN or any(c.isspace() or not c.isprintable() for c in given):
        raise InputError(f"the token ({where}) must be {MIN_TOKEN} to {MAX_TOKEN} printable characters without "
                         "whitespace", source=source.option)
    return given
