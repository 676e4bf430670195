"""Page links of a listing: RFC 8288 `Link` (first, prev, next, last) and `X-Total-Count`."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode


def page_headers(
    path: str,
    query: Sequence[tuple[str, str]],
    *,
    page: int,
    page_size: int,
    total: int,
) -> dict[str, str]:
    """Headers for page `page` (1-based) of `total` items; `query` holds the listing's other
    query keys, kept in every link."""
    last = max(1, -(-total // page_size))
    pages = {"first": 1, "last": last}
    if page > 1:
        pages["prev"] = min(page - 1, last)
    if page < last:
        pages["next"] = page + 1

    def link(number: int) -> str:
        keys = [*query, ("page", str(number)), ("pageSize", str(page_size))]
        return f"{path}?{urlencode(keys)}"

    order = ("first", "prev", "next", "last")
    links = ", ".join(f'<{link(pages[rel])}>; rel="{rel}"' for rel in order if rel in pages)
    return {"Link": links, "X-Total-Count": str(total)}
