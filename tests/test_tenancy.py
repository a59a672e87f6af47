"""TenantId, TenantPermissions and TenantContext."""

from __future__ import annotations

import pytest

from helios_conformance import (
    AccessDenied,
    InvalidRequest,
    Operation,
    TenantContext,
    TenantId,
    TenantPermissions,
)


class TestTenantId:
    def test_hierarchy(self) -> None:
        tenant = TenantId.parse("acme/research/oncology")
        assert tenant.segments == ("acme", "research", "oncology")
        assert tenant.parent == TenantId.parse("acme/research")
        assert tenant.root == TenantId.parse("acme")
        assert tenant.depth == 3
        assert TenantId.parse("acme").parent is None

    def test_is_descendant_of(self) -> None:
        acme, research = TenantId.parse("acme"), TenantId.parse("acme/research")
        assert research.is_descendant_of(acme)
        assert not acme.is_descendant_of(research)
        assert not acme.is_descendant_of(acme)
        # A shared prefix is not ancestry: acme2 is not below acme.
        assert not TenantId.parse("acme2").is_descendant_of(acme)

    @pytest.mark.parametrize(
        ("value", "fragment"),
        [
            ("", "must not be empty"),
            ("Acme", "segment 1"),
            ("acme/", "segment 2"),
            ("acme//x", "segment 2"),
            ("-acme", "segment 1"),
            ("acme-", "segment 1"),
            ("ac me", "segment 1"),
            ("a" * 65, "segment 1"),
            ("/".join(["a"] * 9), "9 levels deep"),
            ("/".join(["abcdefghijklmnopqrstuvwxyz0123456789"] * 8), "characters long"),
            ("system", "reserved segment 'system'"),
            ("system/child", "reserved segment 'system'"),
            ("all", "reserved"),
        ],
    )
    def test_invalid_ids_are_refused(self, value: str, fragment: str) -> None:
        with pytest.raises(InvalidRequest, match=fragment.replace("(", r"\(")):
            TenantId.parse(value)

    def test_non_string_is_refused(self) -> None:
        with pytest.raises(InvalidRequest, match="must be a string"):
            TenantId.parse(42)  # type: ignore[arg-type]

    def test_system_tenant_exists_but_cannot_be_parsed(self) -> None:
        assert TenantId.system().is_system
        assert str(TenantId.system()) == "system"

    def test_valid_ids(self) -> None:
        for value in ("a", "acme-corp", "acme_corp", "t0", "a/b/c/d/e/f/g/h"):
            assert str(TenantId.parse(value)) == value


class TestPermissions:
    def test_full_allows_everything(self) -> None:
        full = TenantPermissions.full()
        assert all(full.allows(operation, "Patient") for operation in Operation)
        assert full.child_tenants

    def test_read_only(self) -> None:
        read_only = TenantPermissions.read_only()
        assert read_only.allows(Operation.READ)
        assert read_only.allows(Operation.SEARCH)
        assert not read_only.allows(Operation.CREATE)
        assert not read_only.allows(Operation.DELETE)

    def test_builder(self) -> None:
        permissions = (
            TenantPermissions.builder()
            .allow(Operation.READ, Operation.SEARCH)
            .only_types(["Patient", "Observation"])
            .in_compartment("Patient/123")
            .with_child_tenants()
            .build()
        )
        assert permissions.allows(Operation.READ, "Patient")
        assert not permissions.allows(Operation.READ, "Encounter")
        assert not permissions.allows(Operation.CREATE, "Patient")
        assert permissions.compartment == "Patient/123"
        assert permissions.child_tenants

    def test_builder_refuses_malformed_compartment(self) -> None:
        with pytest.raises(InvalidRequest, match="'Type/id'"):
            TenantPermissions.builder().in_compartment("Patient")


class TestContext:
    def test_require_denies_operation(self) -> None:
        context = TenantContext.of("acme", TenantPermissions.read_only())
        context.require(Operation.READ, "Patient")
        with pytest.raises(AccessDenied, match="operation 'create' is not permitted") as caught:
            context.require(Operation.CREATE, "Patient")
        assert caught.value.http_status == 403

    def test_require_denies_type(self) -> None:
        permissions = (
            TenantPermissions.builder().allow_all_operations().only_types(["Patient"]).build()
        )
        context = TenantContext.of("acme", permissions)
        with pytest.raises(AccessDenied, match="on Observation is not permitted"):
            context.require(Operation.READ, "Observation")
