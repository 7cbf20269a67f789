"""Where third-party exceptions become HaloDB errors in the IPLD layer: multiformats.

The reference DAG-CBOR codec (``dag-cbor``, :func:`halodb.ipld.codec.decode_reference` and
``encode_reference``) turns every link into a :class:`multiformats.CID`, which looks the
link's multicodec and multihash codes up in multiformats' own tables. A link whose code
is not there (an unknown hash function such as ``0x39``, or a code that is a multicodec
but no hash function, such as ``0x55``) raises multiformats' ``MulticodecKeyError`` or
``MultihashKeyError``, a :class:`KeyError`; a malformed code raises its ``ValueError``
siblings. At this boundary all of them mean "the reference codec cannot read (or write)
this block": :class:`DecodeError` when decoding, :class:`EncodeError` when encoding.

(libipld, the fast codec, parses CIDs without tables: such a link is a valid value there,
and so it is for :class:`halodb.ipld.CID`. Only the reference codec refuses it.)

>>> from multiformats.multicodec.err import MulticodecKeyError
>>> MULTIFORMATS_DECODE.error_class(MulticodecKeyError).__name__, MULTIFORMATS_ENCODE.error_class(MulticodecKeyError).__name__
('DecodeError', 'EncodeError')
"""

from __future__ import annotations

from multiformats.multiaddr.err import MultiaddrKeyError, MultiaddrValueError
from multiformats.multibase.err import MultibaseKeyError, MultibaseValueError
from multiformats.multicodec.err import MulticodecKeyError, MulticodecValueError
from multiformats.multihash.err import MultihashKeyError, MultihashValueError

from halodb.errors import DecodeError, EncodeError, ErrorMap

#: Every exception class multiformats defines (it has no common base: each derives from
#: KeyError or ValueError). The reference codec can raise the multicodec and multihash ones.
MULTIFORMATS_EXCEPTIONS: tuple[type[BaseException], ...] = (
    MulticodecKeyError,
    MulticodecValueError,
    MultihashKeyError,
    MultihashValueError,
    MultibaseKeyError,
    MultibaseValueError,
    MultiaddrKeyError,
    MultiaddrValueError,
)

#: Links read by the reference DAG-CBOR decoder.
MULTIFORMATS_DECODE: ErrorMap[DecodeError] = ErrorMap(
    "multiformats", "links read by the reference DAG-CBOR decoder", dict.fromkeys(MULTIFORMATS_EXCEPTIONS, DecodeError)
)

#: Links written by the reference DAG-CBOR encoder.
MULTIFORMATS_ENCODE: ErrorMap[EncodeError] = ErrorMap(
    "multiformats", "links written by the reference DAG-CBOR encoder", dict.fromkeys(MULTIFORMATS_EXCEPTIONS, EncodeError)
)
