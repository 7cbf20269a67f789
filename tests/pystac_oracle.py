"""pystac as an oracle: a second opinion on the items HaloDB accepts (tests only).

HaloDB validates items once, with :func:`halodb.stac.parse_item`; the tests check that the
ecosystem's own reader, pystac, reads every item the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pystac

from halodb.errors import InvalidItemError
from halodb.stac import parse_datetime, parse_item


def validate_with_pystac(item: dict[str, Any], source: str = "<item>") -> dict[str, Any]:
    """A second opinion: pystac's ``Item.from_dict`` / ``to_dict`` round trip must agree.

    Checks that pystac accepts ``item`` and reads the same id, collection, geometry, bbox,
    times and asset hrefs as :func:`parse_item`. Returns pystac's dict. Slower than
    :func:`parse_item`: the ecosystem's own reader as the tests' oracle.

    """
    ours = parse_item(item, source)

    try:
        obj = pystac.Item.from_dict(ours, migrate=True, preserve_dict=True)
        out: dict[str, Any] = obj.to_dict(include_self_link=False, transform_hrefs=False)
    except (pystac.STACError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidItemError(f"{source}: pystac rejects the item: {type(exc).__name__}: {exc}", source=source, field="") from None

    def check(field: str, theirs: Any, mine: Any) -> None:
        if theirs != mine:
            raise InvalidItemError(f"{source}: {field}: pystac reads {theirs!r}, HaloDB reads {mine!r}", source=source, field=field)

    props = ours["properties"]

    def when(name: str) -> datetime | None:
        text = props.get(name)
        if text is None:
            return None
        t, frac = parse_datetime(text)
        return t.replace(microsecond=int((frac + "000000")[:6]))

    check("id", obj.id, ours["id"])
    check("collection", obj.collection_id, ours.get("collection"))
    check("geometry", obj.geometry, ours["geometry"])
    check("bbox", obj.bbox, ours.get("bbox"))
    check("properties.datetime", obj.datetime, when("datetime"))
    check("properties.start_datetime", obj.common_metadata.start_datetime, when("start_datetime"))
    check("properties.end_datetime", obj.common_metadata.end_datetime, when("end_datetime"))
    check("assets", {k: a.href for k, a in obj.assets.items()}, {k: a["href"] for k, a in ours["assets"].items()})
    return out
