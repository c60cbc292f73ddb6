"""Registration, login, tokens and every way authentication fails, against the real backend."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from bson import ObjectId
from pymongo.asynchronous.database import AsyncDatabase

from backend.core.errors import RateLimitedError
from backend.core.ratelimit import WindowLimiter
from tests.conftest import JWT_SECRET
from tests.support.graphql import AUTH_FIELDS, PASSWORD, Api, Session

ME = "{ me { id email displayName role disabled createdAt } }"
LOGIN_QUERY = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
REFRESH = f"mutation($t: String!) {{ refreshToken(refreshToken: $t) {{ {AUTH_FIELDS} }} }}"
LOGOUT = "mutation($t: String!) { logout(refreshToken: $t) }"
CHANGE = "mutation($o: String!, $n: String!) { changePassword(oldPassword: $o, newPassword: $n) }"


def claims(user: Session, **overrides: object) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "sub": user.id,
        "ver": 0,
        "typ": "access",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        **overrides,
    }


async def test_register_returns_tokens_and_stores_an_argon2_hash(api: Api, db: AsyncDatabase) -> None:
    session = await api.register("New.User@Example.test", display_name="  New User ")
    me = (await api.data(ME, token=session.access_token))["me"]
    assert me["id"] == session.id
    assert me["email"] == "new.user@example.test"
    assert me["displayName"] == "New User"
    assert me["disabled"] is False
    stored = await db.users.find_one({"_id": ObjectId(session.id)})
    assert stored["email"] == "new.user@example.test"
    assert stored["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in stored["password_hash"]
    header = json.loads(base64.urlsafe_b64decode(session.access_token.split(".")[0] + "=="))
    assert header["alg"] == "HS256"


async def test_register_answers_alike_for_taken_addresses_and_refuses_bad_input(
    api: Api, alice: Session, db: AsyncDatabase
) -> None:
    query = (
        "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { accessToken user { id } } }"
    )
    taken = await api.call(query, {"e": alice.email.upper(), "p": "another password"})
    fresh = await api.call(query, {"e": f"fresh-{ObjectId()}@example.test", "p": "another password"})
    assert taken == fresh == {"data": {"register": {"accessToken": None, "user": None}}}
    stored = await db.users.find_one({"email": alice.email})
    assert stored["_id"] == ObjectId(alice.id)  # the account is untouched: its password still works
    assert (await api.login(alice.email)).id == alice.id
    bad_credentials = await api.error(LOGIN_QUERY, {"e": alice.email, "p": "another password"})
    assert bad_credentials["message"] == "invalid e-mail or password"
    bad_email = await api.error(query, {"e": "not-an-email", "p": PASSWORD})
    assert bad_email["message"] == "invalid e-mail address"
    assert bad_email["extensions"]["code"] == "BAD_USER_INPUT"
    short = await api.error(query, {"e": "short@example.test", "p": "short"})
    assert short["message"] == "password must be 8 to 256 characters long"


async def test_login_and_bad_password(api: Api, alice: Session) -> None:
    again = await api.login(alice.email)
    assert again.id == alice.id
    login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
    wrong = await api.error(login, {"e": alice.email, "p": "wrong password"})
    assert wrong["message"] == "invalid e-mail or password"
    assert wrong["extensions"]["code"] == "UNAUTHENTICATED"
    unknown = await api.error(login, {"e": "nobody@example.test", "p": PASSWORD})
    assert unknown["message"] == "invalid e-mail or password"


async def test_login_rate_limit_has_a_clear_error(api: Api, bob: Session) -> None:
    login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
    for _ in range(5):  # CHAKOR_LOGIN_MAX_ATTEMPTS
        assert (await api.error(login, {"e": bob.email, "p": "wrong password"}))["message"] == (
            "invalid e-mail or password"
        )
    limited = await api.error(login, {"e": bob.email, "p": PASSWORD})
    assert limited["message"].startswith("too many login attempts; try again in ")
    assert limited["extensions"]["code"] == "RATE_LIMITED"


async def test_rate_limit_recovers_after_the_window(db: AsyncDatabase) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    limiter = WindowLimiter("test:", 2, 60, collection=db.login_failures_window_test, clock=lambda: now[0])
    await limiter.attempt("k")
    await limiter.attempt("k")
    with pytest.raises(RateLimitedError, match="try again in 60 s"):
        await limiter.attempt("k")
    now[0] += timedelta(seconds=30)
    with pytest.raises(RateLimitedError, match="try again in 30 s"):
        await limiter.attempt("k")  # refused attempts are not counted: the window does not grow
    now[0] += timedelta(seconds=30)
    first = await limiter.attempt("k")  # the window has passed
    await limiter.attempt("other")
    await limiter.forget(first)  # a success takes back its own attempt only
    await limiter.attempt("k")
    await limiter.attempt("k")
    with pytest.raises(RateLimitedError, match="try again in 60 s"):
        await limiter.attempt("k")


@pytest.mark.parametrize(
    ("make_token", "message"),
    [
        (
            lambda u: jwt.encode(
                claims(u, exp=datetime.now(UTC) - timedelta(seconds=1)), JWT_SECRET, "HS256"
            ),
            "access token expired",
        ),
        (
            lambda u: jwt.encode(claims(u), "another-secret-0123456789abcdef0123", "HS256"),
            "invalid access token",
        ),
        (lambda u: jwt.encode(claims(u), None, algorithm="none"), "invalid access token"),
        (lambda u: jwt.encode(claims(u), JWT_SECRET * 2, "HS512"), "invalid access token"),
        (lambda u: jwt.encode(claims(u, typ="refresh"), JWT_SECRET, "HS256"), "invalid access token"),
        (
            lambda u: jwt.encode(claims(u, sub="000000000000000000000000"), JWT_SECRET, "HS256"),
            "invalid access token",
        ),
        (lambda u: "not.a.token", "invalid access token"),
    ],
    ids=["expired", "wrong-key", "alg-none", "other-alg", "wrong-type", "unknown-user", "garbage"],
)
async def test_bad_access_tokens_are_rejected(api: Api, alice: Session, make_token, message: str) -> None:
    error = await api.error(ME, token=make_token(alice))
    assert error["message"] == message
    assert error["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_token_forged_with_our_claims_is_accepted_only_when_signed_with_our_key(
    api: Api, alice: Session
) -> None:
    good = jwt.encode(claims(alice), JWT_SECRET, "HS256")
    assert (await api.data(ME, token=good))["me"]["id"] == alice.id


async def test_tampered_token_is_rejected(api: Api, alice: Session, bob: Session) -> None:
    header, _, signature = alice.access_token.split(".")
    payload = base64.urlsafe_b64encode(json.dumps(claims(bob, iat=1, exp=4102444800)).encode()).rstrip(b"=")
    error = await api.error(ME, token=f"{header}.{payload.decode()}.{signature}")
    assert error["message"] == "invalid access token"


async def test_missing_or_malformed_authorization(api: Api) -> None:
    assert (await api.error(ME))["message"] == "authentication required"
    response = await api.http.post("/graphql", json={"query": ME}, headers={"Authorization": "Token abc"})
    assert (
        response.json()["errors"][0]["message"] == "invalid authorization header: expected 'Bearer <token>'"
    )


async def test_refresh_rotates_and_stores_only_hashes(api: Api, alice: Session, db: AsyncDatabase) -> None:
    rotated = (await api.data(REFRESH, {"t": alice.refresh_token}))["refreshToken"]
    assert rotated["refreshToken"] != alice.refresh_token
    assert (await api.data(ME, token=rotated["accessToken"]))["me"]["id"] == alice.id
    assert await db.refresh_tokens.find_one({"token_hash": alice.refresh_token}) is None
    old = await db.refresh_tokens.find_one(
        {"token_hash": hashlib.sha256(alice.refresh_token.encode()).hexdigest()}
    )
    new = await db.refresh_tokens.find_one(
        {"token_hash": hashlib.sha256(rotated["refreshToken"].encode()).hexdigest()}
    )
    assert old["used"] is True and new["used"] is False
    assert old["family_id"] == new["family_id"]


async def test_refresh_reuse_revokes_the_family(api: Api, alice: Session, db: AsyncDatabase) -> None:
    second = (await api.data(REFRESH, {"t": alice.refresh_token}))["refreshToken"]["refreshToken"]
    reuse = await api.error(REFRESH, {"t": alice.refresh_token})
    assert reuse["message"] == "refresh token reuse detected; every session of this login was revoked"
    assert (await api.error(REFRESH, {"t": second}))["message"] == "refresh token revoked"
    family = await db.refresh_tokens.find({"user_id": ObjectId(alice.id)}).to_list()
    assert len(family) == 2 and all(token["revoked"] for token in family)
    # A separate login is a separate family and still works.
    other = await api.login(alice.email)
    assert (await api.data(REFRESH, {"t": other.refresh_token}))["refreshToken"]["user"]["id"] == alice.id


async def test_unknown_refresh_token(api: Api) -> None:
    assert (await api.error(REFRESH, {"t": "made-up"}))["message"] == "invalid refresh token"


async def test_logout_revokes_the_refresh_token(api: Api, alice: Session) -> None:
    assert (await api.data(LOGOUT, {"t": alice.refresh_token}))["logout"] is True
    assert (await api.error(REFRESH, {"t": alice.refresh_token}))["message"] == "refresh token revoked"
    assert (await api.data(LOGOUT, {"t": "unknown"}))["logout"] is False


async def test_change_password_signs_out_every_session(api: Api, alice: Session) -> None:
    wrong = await api.error(CHANGE, {"o": "not my password", "n": "brand new password"}, alice.access_token)
    assert wrong["message"] == "current password is wrong"
    short = await api.error(CHANGE, {"o": PASSWORD, "n": "short"}, alice.access_token)
    assert short["message"] == "password must be 8 to 256 characters long"
    assert (await api.data(CHANGE, {"o": PASSWORD, "n": "brand new password"}, alice.access_token))[
        "changePassword"
    ]
    assert (await api.error(ME, token=alice.access_token))["message"] == "access token revoked"
    assert (await api.error(REFRESH, {"t": alice.refresh_token}))["message"] == "refresh token revoked"
    login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
    assert (await api.error(login, {"e": alice.email, "p": PASSWORD}))[
        "message"
    ] == "invalid e-mail or password"
    assert (await api.login(alice.email, "brand new password")).id == alice.id


async def test_disabled_user_is_rejected_at_once(api: Api, admin: Session, bob: Session) -> None:
    disable = (
        "mutation($id: ID!, $d: Boolean!) { setUserDisabled(userId: $id, disabled: $d) { id disabled } }"
    )
    assert (await api.data(disable, {"id": bob.id, "d": True}, admin.access_token))["setUserDisabled"][
        "disabled"
    ]
    assert (await api.error(ME, token=bob.access_token))["message"] == "account disabled"
    assert (await api.error(REFRESH, {"t": bob.refresh_token}))["message"] == "account disabled"
    login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
    assert (await api.error(login, {"e": bob.email, "p": PASSWORD}))["message"] == "account disabled"
    assert await api.connection_init_close_code(bob.authorization) == 4403  # refused at connection_init
    await api.data(disable, {"id": bob.id, "d": False}, admin.access_token)
    assert (await api.login(bob.email)).id == bob.id
