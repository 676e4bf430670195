"""The `sql` filter dialect in `events.filters`: validation with JSON pointers, matching real
event records, and compile-once on the ingest hot path."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from digibridge.events.filters import (
    MAX_SQL_LENGTH,
    FilterError,
    sql_cache_info,
    subscription_matches,
    validate_filters,
)
from digibridge.events.records import to_new_event
from digibridge.events.types import CloudEvent
from digibridge.store.types import DeliverySettings, NewEvent, Subscription

SOURCE = "urn:nld:oin:00000001001172773000:systeem:BRP"


def event(
    type_: str = "nl.brp.persoon-verhuisd", subject: str | None = None, **extensions: object
) -> NewEvent:
    """An event record made the way ingest makes them (extensions keep their JSON type)."""
    return to_new_event(
        CloudEvent(
            id="e-1",
            source=SOURCE,
            type=type_,
            time=datetime(2025, 3, 14, 8, 30, 5, tzinfo=UTC),
            subject=subject,
            data={"bsn": "999993653"},
            extensions=extensions,  # type: ignore[arg-type]
        )
    )


def subscription(*filters: dict[str, object], sub_id: str = "s-1") -> Subscription:
    validate_filters(filters)
    return Subscription(
        id=sub_id,
        sink="https://9.9.9.9/hook",
        delivery=DeliverySettings(secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        created_at=datetime.now(UTC),
        filters=filters,
    )


@pytest.mark.parametrize(
    ("filters", "pointer", "mention"),
    [
        ([{"sql": "type = "}], "/filters/0/sql", "end of expression at column 8"),
        ([{"sql": 3}], "/filters/0/sql", "as a string"),
        ([{"sql": ""}], "/filters/0/sql", "empty"),
        ([{"sql": "x" * (MAX_SQL_LENGTH + 1)}], "/filters/0/sql", "longer than"),
        ([{"sql": "(" * 100 + "TRUE" + ")" * 100}], "/filters/0/sql", "nests deeper"),
        ([{"sql": "FOO(type)"}], "/filters/0/sql", "no function FOO taking 1 argument(s)"),
        ([{"sql": "LOWER(type)"}], "/filters/0/sql", "yields String"),
        ([{"sql": "1 + 1"}], "/filters/0/sql", "yields Integer"),
        ([{"exact": {"type": "x"}}, {"sql": "type LIKE 3"}], "/filters/1/sql", "string literal"),
        ([{"all": [{"exact": {"type": "x"}}, {"sql": "("}]}], "/filters/0/all/1/sql", "column 2"),
        ([{"not": {"sql": "'unterminated"}}], "/filters/0/not/sql", "never closed"),
        ([{"regex": {"type": "x"}}], "/filters/0", "'regex' is not supported"),
    ],
)
def test_invalid_filters_name_the_pointer_and_the_place(
    filters: list[object], pointer: str, mention: str
) -> None:
    with pytest.raises(FilterError) as caught:
        validate_filters(filters)
    assert caught.value.pointer == pointer
    assert mention in caught.value.message


def test_unknown_dialects_list_sql_among_the_supported() -> None:
    with pytest.raises(FilterError) as caught:
        validate_filters([{"jsonpath": "$.type"}])
    assert "supported: exact, prefix, suffix, all, any, not, sql" in caught.value.message


def test_valid_expressions_pass() -> None:
    validate_filters(
        [
            {"sql": "type LIKE 'nl.brp.%' AND EXISTS subject"},
            {"any": [{"sql": "sequence > 10"}, {"sql": "flag"}]},
        ]
    )


def test_a_sql_filter_matches_only_on_boolean_true() -> None:
    moved = subscription({"sql": "type = 'nl.brp.persoon-verhuisd' AND source LIKE 'urn:nld:%'"})
    assert subscription_matches(moved, event())
    assert not subscription_matches(moved, event("nl.brp.persoon-overleden"))


def test_extensions_keep_their_json_type() -> None:
    numbered = subscription({"sql": "sequence >= 42 AND urgent AND region IN ('0599', '0363')"})
    assert subscription_matches(numbered, event(sequence="00000042", urgent=True, region="0599"))
    assert subscription_matches(numbered, event(sequence=43, urgent="TRUE", region="0363"))
    assert not subscription_matches(numbered, event(sequence=41, urgent=True, region="0599"))


def test_an_evaluation_error_means_no_match() -> None:
    on_subject = subscription({"sql": "subject = 'x' OR TRUE"})
    assert subscription_matches(on_subject, event(subject="y"))
    # `subject` is absent: `subject = 'x'` yields false with a missingAttribute error, so even
    # though the whole expression is true, the event does not pass (CESQL §1.2).
    assert not subscription_matches(on_subject, event())
    guarded = subscription({"sql": "EXISTS subject AND subject = 'x'"})
    assert not subscription_matches(guarded, event())
    assert subscription_matches(guarded, event(subject="x"))
    assert not subscription_matches(subscription({"sql": "10 / INT(zero) = 1"}), event(zero="0"))


def test_sql_combines_with_the_other_dialects() -> None:
    combined = subscription(
        {"prefix": {"type": "nl.brp."}},
        {"not": {"sql": "type LIKE '%overleden'"}},
    )
    assert subscription_matches(combined, event())
    assert not subscription_matches(combined, event("nl.brp.persoon-overleden"))


def test_a_stored_expression_that_does_not_compile_matches_nothing() -> None:
    broken = replace(subscription(), filters=({"sql": "type = "},))
    assert not subscription_matches(broken, event())


def test_each_distinct_expression_is_compiled_once() -> None:
    before = sql_cache_info()
    subscriptions = [  # texts no other test uses, so the first use here is the compilation
        subscription({"sql": "type LIKE 'nl.brp.%' AND TRUE"}, sub_id="a"),
        subscription({"sql": "type LIKE 'nl.brp.%' AND TRUE"}, sub_id="b"),
        subscription(
            {"all": [{"sql": "EXISTS subject AND TRUE"}, {"sql": "subject != '' AND TRUE"}]},
            sub_id="c",
        ),
    ]
    events = [event(subject=None if n % 2 else f"bsn-{n}") for n in range(500)]
    matched = sum(subscription_matches(s, e) for s in subscriptions for e in events)
    assert matched == 500 + 500 + 250
    after = sql_cache_info()
    assert after.misses - before.misses == 3  # three distinct texts, each compiled once
    # 1750 evaluations (`all` stops at the first filter that fails), all but 3 from the cache
    assert after.hits - before.hits == 500 * 3 + 250 - 3
