"""Page links of a listing: RFC 8288 `Link` headers (first, prev, next, last) with
`X-Total-Count` for numbered pages; HAL-style `_links` (self, next) for cursor pages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

from pydantic import BaseModel


class Link(BaseModel):
    href: str


def cursor_links(
    path: str, query: Mapping[str, str | None], *, limit: int, next_after: str | None
) -> dict[str, Link]:
    """`self`, and `next` (with `after=next_after`) when there is more; `query` holds the
    listing's filters (None ones are left out), kept in both links."""
    kept = {key: value for key, value in query.items() if value is not None}
    links = {"self": Link(href=f"{path}?{urlencode({**kept, 'limit': limit})}")}
    if next_after is not None:
        links["next"] = Link(
            href=f"{path}?{urlencode({**kept, 'limit': limit, 'after': next_after})}"
        )
    return links


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
