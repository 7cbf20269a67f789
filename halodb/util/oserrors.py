"""How HaloDB words a failed file operation: one phrase per cause, the same in every message.

The operating system's own text (``[Errno 2] No such file or directory: '.x.car.8ns99ewv.tmp'``)
names a temporary file the user never asked for, says "directory" where HaloDB's messages say
"folder", and differs between messages that read files in different ways. Messages name the
path the user gave and add :func:`describe_os_error`.

>>> describe_os_error(FileNotFoundError(2, "No such file or directory"))
'no such file or folder'
>>> describe_os_error(OSError(5, "Input/output error"))
'input/output error'
"""

from __future__ import annotations

import errno

__all__ = ["describe_os_error"]

_PHRASES = {
    errno.ENOENT: "no such file or folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "a folder, not a file",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "a read-only file system",
    errno.ENAMETOOLONG: "the name is too long",
}


def describe_os_error(exc: OSError) -> str:
    """A short phrase for why ``exc`` happened, without the path it names (the message names
    the path the user gave)."""
    phrase = _PHRASES.get(exc.errno) if exc.errno is not None else None
    if phrase is not None:
        return phrase
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]
