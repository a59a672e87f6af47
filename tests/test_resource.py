"""Resource validation, stamping and the error hierarchy."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from helios_conformance import (
    AccessDenied,
    BackendFailure,
    BackendUnavailable,
    CursorCodec,
    Gone,
    HeliosError,
    InvalidRequest,
    InvalidResource,
    InvalidSearch,
    MonotonicClock,
    MultipleMatches,
    NotFound,
    PreconditionFailed,
    StoredResource,
    Unsupported,
    VersionConflict,
    format_instant,
    history_window,
    parse_instant,
    r4_example,
    r4_resource_types,
    stamp,
    validate_resource,
)
from helios_conformance._data import FixtureIntegrityError, load_fixture_json


class TestValidateResource:
    def test_returns_a_deep_copy(self) -> None:
        body = {"resourceType": "Patient", "name": [{"family": "Lee"}]}
        copy = validate_resource(body)
        copy["name"][0]["family"] = "Changed"
        assert body["name"][0]["family"] == "Lee"

    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            ([], "must be a JSON object, got list"),
            ("Patient", "must be a JSON object, got str"),
            ({}, "resourceType: the resource has no resourceType"),
            ({"resourceType": 3}, "3 is not a FHIR R4 resource type"),
            ({"resourceType": "Patiant"}, "'Patiant' is not a FHIR R4 resource type"),
            ({"resourceType": "Patient", "id": "a b"}, "id: 'a b' is not a valid FHIR id"),
            ({"resourceType": "Patient", "id": "x" * 65}, "is not a valid FHIR id"),
            ({"resourceType": "Patient", "meta": []}, "meta: meta must be a JSON object"),
            ({"resourceType": "Patient", "x": math.nan}, "not valid JSON"),
            ({"resourceType": "Patient", "x": {1, 2}}, "not valid JSON"),
        ],
    )
    def test_refuses_bad_bodies(self, body: object, fragment: str) -> None:
        with pytest.raises(InvalidResource) as caught:
            validate_resource(body)
        assert fragment in str(caught.value)
        assert caught.value.http_status == 400

    def test_target_type_and_id(self) -> None:
        with pytest.raises(
            InvalidResource, match="body is a Patient but the target type is Observation"
        ):
            validate_resource({"resourceType": "Patient"}, expected_type="Observation")
        with pytest.raises(InvalidResource, match="differs from the target id 'b'"):
            validate_resource({"resourceType": "Patient", "id": "a"}, expected_id="b")
        with pytest.raises(InvalidResource, match="must carry the id 'b'"):
            validate_resource({"resourceType": "Patient"}, expected_id="b", require_id=True)


def test_stamp_sets_id_and_meta_keeping_other_meta() -> None:
    moment = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    body = stamp(
        {"resourceType": "Patient", "meta": {"tag": [{"code": "x"}]}, "active": True},
        "p1",
        "3",
        moment,
    )
    assert body == {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {
            "tag": [{"code": "x"}],
            "versionId": "3",
            "lastUpdated": "2024-01-02T03:04:05.678901+00:00",
        },
        "active": True,
    }
    assert list(body) == ["resourceType", "id", "meta", "active"]


def test_instants_round_trip() -> None:
    moment = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    assert parse_instant(format_instant(moment)) == moment
    with pytest.raises(ValueError, match="timezone-aware"):
        format_instant(datetime(2024, 1, 1))


def test_stored_resource_etag_reference_and_method() -> None:
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    first = StoredResource("Patient", "p1", "1", moment, False, {})
    second = StoredResource("Patient", "p1", "2", moment, False, {})
    gone = StoredResource("Patient", "p1", "3", moment, True, None)
    assert first.etag == 'W/"1"'
    assert first.reference == "Patient/p1"
    assert (first.method, second.method, gone.method) == ("POST", "PUT", "DELETE")


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (NotFound("x"), 404, "not-found"),
        (Gone("x", resource_type="Patient", resource_id="p", version_id="2"), 410, "deleted"),
        (
            VersionConflict(
                "x",
                resource_type="Patient",
                resource_id="p",
                expected_version="1",
                actual_version="2",
            ),
            409,
            "conflict",
        ),
        (PreconditionFailed("x"), 412, "conflict"),
        (MultipleMatches("x"), 412, "multiple-matches"),
        (InvalidRequest("x"), 400, "invalid"),
        (InvalidResource("x"), 400, "structure"),
        (InvalidSearch("x", parameter="_count"), 400, "invalid"),
        (AccessDenied("x"), 403, "forbidden"),
        (Unsupported("x", capability="crud.create"), 501, "not-supported"),
        (BackendFailure("x"), 500, "exception"),
        (BackendUnavailable("x"), 503, "transient"),
    ],
)
def test_error_hierarchy_maps_to_http_and_issue_codes(
    error: HeliosError, status: int, code: str
) -> None:
    assert isinstance(error, HeliosError)
    assert error.http_status == status
    assert error.to_operation_outcome() == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": "x"}],
    }


def test_multiple_matches_is_a_precondition_failure() -> None:
    assert issubclass(MultipleMatches, PreconditionFailed)
    assert issubclass(InvalidResource, InvalidRequest)


class TestCursorCodec:
    def test_round_trip(self) -> None:
        codec = CursorCodec(b"k" * 32)
        cursor = codec.encode("tenant-a|Patient", {"before_sequence": 7})
        assert codec.decode("tenant-a|Patient", cursor) == {"before_sequence": 7}

    @pytest.mark.parametrize(
        "mutate", [lambda c: "x" + c, lambda c: c[:-2] + "AA", lambda c: "nodot"]
    )
    def test_tampered_cursor_is_refused(self, mutate: object) -> None:
        codec = CursorCodec()
        cursor = codec.encode("scope", {"n": 1})
        with pytest.raises(InvalidSearch):
            codec.decode("scope", mutate(cursor))  # type: ignore[operator]

    def test_cursor_of_another_scope_is_refused(self) -> None:
        codec = CursorCodec()
        cursor = codec.encode("tenant-a", {"n": 1})
        with pytest.raises(InvalidSearch, match="another query or tenant"):
            codec.decode("tenant-b", cursor)


def test_monotonic_clock_never_repeats() -> None:
    clock = MonotonicClock()
    clock.observe(datetime.now(UTC) + timedelta(days=1))
    moments = [clock.now() for _ in range(1000)]
    assert all(a < b for a, b in itertools.pairwise(moments))


class TestHistoryWindow:
    def test_defaults(self) -> None:
        window = history_window(None, None, None)
        assert window.count == 50

    @pytest.mark.parametrize("count", [0, -1, 1001, True, 2.5])
    def test_bad_count(self, count: object) -> None:
        with pytest.raises(InvalidSearch, match="_count must be a whole number"):
            history_window(None, None, count)  # type: ignore[arg-type]

    def test_naive_and_inverted_bounds(self) -> None:
        with pytest.raises(InvalidSearch, match="timezone-aware"):
            history_window(datetime(2024, 1, 1), None, None)
        now = datetime.now(UTC)
        with pytest.raises(InvalidSearch, match="must be later than _since"):
            history_window(now, now, None)


class TestFixtures:
    def test_resource_types(self) -> None:
        types = r4_resource_types()
        assert len(types) == 146
        assert {"Patient", "Observation", "Bundle", "Parameters"} <= types
        assert "Resource" not in types
        assert "DomainResource" not in types

    def test_example_is_a_fresh_copy(self) -> None:
        first = r4_example("Patient-example")
        first["id"] = "changed"
        assert r4_example("Patient-example")["id"] == "example"

    def test_unlisted_fixture_is_refused(self) -> None:
        with pytest.raises(FixtureIntegrityError, match="not listed"):
            load_fixture_json("r4/nope.json")


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(InvalidResource, match="lone surrogate"):
        validate_resource({"resourceType": "Patient", "name": [{"family": "\ud800"}]})


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1f"])
def test_control_characters_are_refused(char: str) -> None:
    with pytest.raises(InvalidResource, match="control character") as caught:
        validate_resource({"resourceType": "Patient", "name": [{"family": f"a{char}b"}]})
    assert caught.value.location == "name[0].family"


def test_tab_carriage_return_and_line_feed_are_allowed() -> None:
    validate_resource({"resourceType": "Patient", "text": {"div": "a\tb\r\nc"}})
