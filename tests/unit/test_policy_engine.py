"""basis.policy: an RBAC/ABAC table of allow/deny cases, the condition language, the handler guard."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from meshkit.basis.context import Identity
from meshkit.basis.errors import Forbidden, NotFound, Unauthorized
from meshkit.basis.policy import Condition, ConditionError, Grant, Policy, PolicyEngine, permission_matches

POLICY = Policy([
    Grant.of("customer", "orders:read", "resource.owner == subject.id"),
    Grant.of("customer", "orders:cancel", "resource.owner == subject.id and resource.status in ['new', 'paid']"),
    Grant.of("support", "orders:read", "resource.tenant == subject.tenant"),
    Grant.of("auditor", "orders:*"),
    Grant.of("root", "*"),
    Grant.of("clerk", "catalog:write"),
    Grant.of("bigspender", "orders:approve", "resource.total < 1000"),
])


def who(sub: str = "u1", *roles: str, perms: tuple[str, ...] = (), tenant: str | None = None) -> Identity:
    return Identity(sub, frozenset(roles), frozenset(perms), tenant=tenant)


@dataclass
class Order:
    owner: str
    status: str = "new"
    tenant: str | None = None


CASES = [
    # (identity, permission, resource, allowed, reason)
    (who("u1", "customer"), "orders:read", {"owner": "u1"}, True, "condition"),
    (who("u1", "customer"), "orders:read", {"owner": "u2"}, False, "condition_failed"),
    (who("u1", "customer"), "orders:read", {}, False, "condition_failed"),          # no owner: fail closed
    (who("u1", "customer"), "orders:read", None, False, "condition_failed"),
    (who("u1", "customer"), "orders:read", Order("u1"), True, "condition"),          # objects work too
    (who("u1", "customer"), "orders:cancel", {"owner": "u1", "status": "paid"}, True, "condition"),
    (who("u1", "customer"), "orders:cancel", {"owner": "u1", "status": "shipped"}, False, "condition_failed"),
    (who("u1", "customer"), "orders:delete", {"owner": "u1"}, False, "missing_permission"),
    (who("s", "support", tenant="acme"), "orders:read", {"tenant": "acme"}, True, "condition"),
    (who("s", "support", tenant="acme"), "orders:read", {"tenant": "other"}, False, "condition_failed"),
    (who("s", "support"), "orders:read", {}, False, "condition_failed"),             # no tenant on either side
    (who("s", "support"), "orders:read", {"tenant": None}, False, "condition_failed"),
    (who("a", "auditor"), "orders:refund", None, True, "role"),                      # area wildcard
    (who("a", "auditor"), "catalog:write", None, False, "missing_permission"),
    (who("r", "root"), "anything:at-all", None, True, "role"),
    (who("c", "clerk"), "catalog:write", None, True, "role"),
    (who("x", perms=("catalog:write",)), "catalog:write", None, True, "token"),    # flat permission from the token
    (who("x", perms=("catalog:*",)), "catalog:read", None, True, "token"),
    (who("x", perms=("catalog:write",)), "catalog:read", None, False, "missing_permission"),
    (who("x", "unknown-role"), "orders:read", {"owner": "x"}, False, "missing_permission"),
    (who("b", "bigspender"), "orders:approve", {"total": 999}, True, "condition"),
    (who("b", "bigspender"), "orders:approve", {"total": 1000}, False, "condition_failed"),
    (who("b", "bigspender"), "orders:approve", {"total": "5"}, False, "condition_failed"),   # kinds differ: false
    (who("b", "bigspender"), "orders:approve", {"total": True}, False, "condition_failed"),
    (None, "orders:read", {"owner": "u1"}, False, "anonymous"),
]


@pytest.mark.parametrize(("identity", "permission", "resource", "allowed", "reason"), CASES)
def test_decision_table(identity, permission, resource, allowed, reason):
    d = POLICY.decide(identity, permission, resource)
    assert (d.allowed, d.reason) == (allowed, reason), d.explanation


def test_denial_explains_the_failed_condition_with_values():
    d = POLICY.decide(who("u1", "customer"), "orders:read", {"owner": "u2"})
    assert "resource.owner == subject.id" in d.explanation
    assert d.failed[0]["values"] == {"resource.owner": "u2", "subject.id": "u1"}
    missing = POLICY.decide(who("u1", "customer"), "orders:delete")
    assert "missing permission 'orders:delete'" in missing.explanation and "customer" in missing.explanation


def test_unconditional_permissions_are_what_a_token_carries():
    assert POLICY.unconditional(["customer", "clerk", "auditor"]) == {"catalog:write", "orders:*"}


def test_document_round_trip():
    again = Policy.from_document(POLICY.to_document())
    assert again.to_document() == POLICY.to_document()
    assert again.decide(who("u1", "customer"), "orders:read", {"owner": "u1"}).allowed


@pytest.mark.parametrize(("pattern", "permission", "ok"), [
    ("orders:read", "orders:read", True), ("orders:*", "orders:read", True), ("*", "x:y", True),
    ("orders:*", "ordersx:read", False), ("orders:read", "orders:readall", False), ("orders", "orders:read", False),
])
def test_permission_patterns(pattern, permission, ok):
    assert permission_matches(pattern, permission) is ok


@pytest.mark.parametrize("text", [
    "", "resource.owner ==", "__import__('os').system('id')", "owner == 1", "resource.a = 1",
    "resource.a == (1", "resource.a == 'x' resource.b", "lambda: 1", "resource.a == 1 ; x", "(" * 40 + "true" + ")" * 40,
    "resource." + "a" * 600,
])
def test_bad_conditions_are_refused(text):
    with pytest.raises(ConditionError):
        Condition(text)


@pytest.mark.parametrize(("text", "scope", "result"), [
    ("resource.a == 1 or resource.b == 2", {"resource": {"b": 2}}, True),
    ("not resource.locked", {"resource": {"locked": False}}, True),
    ("not resource.locked", {"resource": {}}, False),                 # missing is not "not locked"
    ("resource.tag not in ['x', 'y']", {"resource": {"tag": "z"}}, True),
    ("resource.tag not in ['x', 'y']", {"resource": {}}, False),
    ("'ad' in resource.name", {"resource": {"name": "admin"}}, True),
    ("resource.n >= 2.5 and resource.n <= 3", {"resource": {"n": 3}}, True),
    ("resource.owner == null", {"resource": {"owner": None}}, True),
    ("resource.owner != subject.id", {"resource": {}, "subject": {"id": "u"}}, False),
    ('resource.s == "it\\"s"', {"resource": {"s": 'it"s'}}, True),
    ("context.ip in ['10.0.0.1']", {"context": {"ip": "10.0.0.1"}}, True),
    ("resource.__class__ == 1", {"resource": {}}, False),
])
def test_condition_semantics(text, scope, result):
    assert Condition(text).evaluate(scope) is result


async def test_requires_decorator_on_a_handler():
    import httpx

    from meshkit.basis.errors import error_body
    from meshkit.basis.middleware.context import ContextMiddleware

    engine = PolicyEngine(POLICY)
    orders = {"o1": {"owner": "u1", "status": "new"}}

    async def load(request):
        order = orders.get(request.path_params["id"])
        if order is None:
            raise NotFound("no such order")
        return order

    @engine.requires("orders:read", resource=load)
    async def get_order(request):
        return PlainTextResponse(request.state.resource["owner"])

    async def errors(request, exc):
        status, body, headers = error_body(exc)
        return PlainTextResponse(body, status_code=status, headers=headers)

    app = Starlette(routes=[Route("/orders/{id}", get_order)],
                    exception_handlers={Unauthorized: errors, Forbidden: errors, NotFound: errors})
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=ContextMiddleware(app)), base_url="http://t")
    owner = who("u1", "customer").to_headers()
    other = who("u2", "customer").to_headers()
    assert (await client.get("/orders/o1", headers=owner)).text == "u1"
    denied = await client.get("/orders/o1", headers=other)
    assert denied.status_code == 403 and denied.json()["error"]["reason"] == "permission_denied"
    assert denied.json()["error"]["details"]["failed"][0]["values"]["resource.owner"] == "u1"
    assert (await client.get("/orders/o1")).status_code == 401
    assert (await client.get("/orders/nope", headers=owner)).status_code == 404
    assert engine.allowed == 1 and engine.denied == 1


async def test_enforce_raises_the_right_errors():
    engine = PolicyEngine(POLICY)
    with pytest.raises(Unauthorized):
        await engine.enforce(None, "orders:read", {"owner": "u1"})
    with pytest.raises(Forbidden) as info:
        await engine.enforce(who("u1", "customer"), "orders:read", {"owner": "u2"})
    assert info.value.details["reason"] == "condition_failed"
    engine.update(Policy([Grant.of("customer", "orders:read")]))
    assert (await engine.enforce(who("u1", "customer"), "orders:read", {"owner": "u2"})).allowed
