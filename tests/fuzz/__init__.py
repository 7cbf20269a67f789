"""Fuzz tests: every boundary that reads bytes or documents from outside, driven by Hypothesis.

Each module fuzzes one boundary (CAR files, DAG-CBOR, dag-pb/UnixFS, IPNS records, DNSLink
entries, STAC items, ``tree.yaml``) with raw bytes and with valid encodings that were then
mutated (bytes flipped, cut, spliced; right syntax with wrong types and shapes). The claim
each test checks: any input yields a value or a :class:`~halodb.errors.HaloDBError`, never
another exception, a hang, or memory out of proportion to the input; and where there is an
encoder, ``decode(encode(x)) == x``. Settings and helpers are in :mod:`tests.fuzz.support`.
"""
