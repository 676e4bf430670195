"""`parse_untrusted`: the one way bytes from outside become an element tree."""

from __future__ import annotations

import pytest

from digibridge.wus._xml import XmlRefused, parse_untrusted


def nested(depth: int) -> bytes:
    return b"<a>" * depth + b"</a>" * depth


@pytest.mark.parametrize("limit", [8, 64, 100, 250])
def test_nesting_up_to_the_limit_is_parsed_and_one_deeper_refused(limit: int) -> None:
    assert parse_untrusted(nested(limit), max_depth=limit).tag == "a"
    with pytest.raises(XmlRefused, match=f"deeper than {limit} levels"):
        parse_untrusted(nested(limit + 1), max_depth=limit)


def test_depth_is_that_of_the_deepest_element_anywhere_in_the_tree() -> None:
    # Shallow first children, the deep branch last: every branch counts.
    document = b"<r>" + b"<x/>" * 50 + nested(9) + b"</r>"
    assert parse_untrusted(document, max_depth=10).tag == "r"
    with pytest.raises(XmlRefused):
        parse_untrusted(document, max_depth=9)


def test_text_comments_and_processing_instructions_are_no_nesting() -> None:
    document = b"<a><b>text<!-- a comment --><?pi data?></b></a>"
    assert parse_untrusted(document, max_depth=2).tag == "a"
