"""Small helpers every layer may use: atomic files, time parsing, GC pauses, the version.

Owns nothing of HaloDB's data model. May import only the standard library and
:mod:`halodb.errors`; every other package may import it.
"""
