"""DOIs as HaloDB keeps them: ``10.PREFIX/suffix``, lower-case, no ``doi:`` or resolver URL.

A DOI is case-insensitive (in its ASCII letters), so the index keys it in lower case, and
the forms people write — ``doi:10.…``, ``https://doi.org/10.…``, ``https://dx.doi.org/10.…``
— all name the same one. What comes from outside is checked before it is used: a prefix
``10.`` with 4 to 9 digits (DataCite's own pattern), a ``/``, a suffix without spaces or
control characters, and at most :data:`MAX_DOI_LENGTH` characters in all.

>>> normalize_doi("https://doi.org/10.82246/ORCESTRA-HALO.BAHAMAS", "test")
'10.82246/orcestra-halo.bahamas'
>>> normalize_doi("doi:10.5061/dryad.s2v81.2/27.2", "test")
'10.5061/dryad.s2v81.2/27.2'
>>> normalize_doi("10.1/x", "--doi")
Traceback (most recent call last):
...
halodb.errors.InputError: --doi: '10.1/x' is not a DOI (10.PREFIX/SUFFIX: a prefix of 4 to 9 digits, a suffix without spaces)
"""

from __future__ import annotations

import re

from halodb.errors import InputError

__all__ = ["MAX_DOI_LENGTH", "doi_problem", "is_normal_doi", "normalize_doi"]

#: the longest DOI accepted (prefix, slash and suffix); DataCite's longest are far shorter
MAX_DOI_LENGTH = 256
_DOI = re.compile(r"10\.[0-9]{4,9}/[^\s]+")
_RESOLVER = re.compile(r"(?:doi:|https?://(?:dx\.)?doi\.org/)", re.IGNORECASE)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def doi_problem(text: str) -> str | None:
    """Why ``text`` (already without a ``doi:`` or URL prefix) is not a DOI; None when it is one.

    >>> doi_problem("10.82246/x"), doi_problem("10.82246/a b")
    (None, 'is not a DOI (10.PREFIX/SUFFIX: a prefix of 4 to 9 digits, a suffix without spaces)')
    """
    if len(text) > MAX_DOI_LENGTH:
        return f"is {len(text)} characters long, more than the {MAX_DOI_LENGTH} a DOI may have"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text):
        return "holds a control character"
    if _DOI.fullmatch(text) is None:
        return "is not a DOI (10.PREFIX/SUFFIX: a prefix of 4 to 9 digits, a suffix without spaces)"
    return None


def is_normal_doi(value: object) -> bool:
    """Whether ``value`` is a DOI as :func:`normalize_doi` returns it (what the index stores).

    >>> is_normal_doi("10.1234/Äb"), is_normal_doi("10.1234/AB"), is_normal_doi(5)
    (True, False, False)
    """
    return isinstance(value, str) and doi_problem(value) is None and value == value.translate(_ASCII_LOWER)


def normalize_doi(text: str, where: str) -> str:
    """``text`` as the index keys it (see the module), else :class:`InputError` naming ``where``.

    >>> normalize_doi("  DOI:10.1234/ABC  ", "x")
    '10.1234/abc'
    """
    if not isinstance(text, str):
        raise InputError(f"{where}: a DOI must be text, not {type(text).__name__}", source=where)
    bare = text.strip()
    found = _RESOLVER.match(bare)
    if found is not None:
        bare = bare[found.end():]
    problem = doi_problem(bare)
    if problem is not None:
        shown = repr(text) if len(text) <= 80 else repr(text[:60]) + "..."
        raise InputError(f"{where}: {shown} {problem}", source=where)
    return bare.translate(_ASCII_LOWER)
