"""Signing in: bearer JWTs (HS256, RS256 through a JWKS), the development sign-in, sessions and CSRF."""

import re

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fixtures.directory import Tenant
from tests.fixtures.errors import assert_error
from tests.fixtures.gateway import AUDIENCE, ISSUER, bearer, make_token


async def test_a_call_without_credentials_is_401(gateway: httpx.AsyncClient):
    assert_error(await gateway.get("/api/v1/keys"), 401, "unauthorized")


async def test_a_valid_hs256_jwt_names_the_administrator(gateway: httpx.AsyncClient, tenant: Tenant):
    response = await gateway.get("/api/v1/me", headers=bearer(tenant.admins[0]))
    assert response.status_code == 200, response.text
    assert response.json()["username"] == tenant.admins[0]


async def test_expired_foreign_and_forged_jwts_are_401(gateway: httpx.AsyncClient, tenant: Tenant):
    admin = tenant.admins[0]
    bad = {
        "expired": bearer(admin, exp=1_000_000, iat=999_000),
        "wrong audience": bearer(admin, aud="another-app"),
        "wrong issuer": bearer(admin, iss="https://evil.test"),
        "no expiry": bearer(admin, exp=None),
        "wrong secret": {"Authorization": f"Bearer {make_token(admin, secret='x' * 40)}"},
        "unsigned": {"Authorization": "Bearer " + jwt.encode({"sub": admin, "aud": AUDIENCE}, None, algorithm="none")},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "not bearer": {"Authorization": f"Basic {make_token(admin)}"},
    }
    for case, headers in bad.items():
        response = await gateway.get("/api/v1/keys", headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (401, "unauthorized"), case


async def test_a_jwt_for_someone_outside_the_directory_is_401(gateway: httpx.AsyncClient):
    assert_error(await gateway.get("/api/v1/keys", headers=bearer("nobody-at-all")), 401, "unauthorized")


async def test_an_rs256_jwt_is_checked_against_the_identity_providers_jwks(make_gateway, stub, tenant: Tenant):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True) | {"kid": "k1", "use": "sig"}
    stub.routes["/jwks.json"] = (200, {"keys": [jwk]})
    claims = {"sub": tenant.admins[0], "iss": ISSUER, "aud": AUDIENCE, "exp": 4_000_000_000}
    good = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k1"})
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "k1"})
    async with make_gateway(auth_mode="jwt", auth_jwt_secret=None, auth_jwks_url=f"{stub.url}/jwks.json") as gw:
        me = await gw.get("/api/v1/me", headers={"Authorization": f"Bearer {good}"})
        assert (me.status_code, me.json()["username"]) == (200, tenant.admins[0])
        assert_error(await gw.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"}), 401, "unauthorized")
        # Without AUTH_JWT_SECRET an HS256 token is refused outright.
        assert_error(await gw.get("/api/v1/me", headers=bearer(tenant.admins[0])), 401, "unauthorized")


async def test_dev_sign_in_sets_an_http_only_same_site_session_cookie(gateway: httpx.AsyncClient, tenant: Tenant):
    async with httpx.AsyncClient(transport=gateway._transport, base_url="http://gateway") as browser:
        page = await browser.get("/sign-in")
        assert tenant.admins[0] in page.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        response = await browser.post(
            "/sign-in", data={"username": tenant.admins[0], "csrf_token": token, "next": "/keys"}
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/keys"
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("kw_session="))
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        me = await browser.get("/api/v1/me")
        assert me.json()["username"] == tenant.admins[0]


async def test_sign_in_needs_its_form_token_and_a_known_administrator(gateway: httpx.AsyncClient, tenant: Tenant):
    async with httpx.AsyncClient(transport=gateway._transport, base_url="http://gateway") as browser:
        refused = await browser.post("/sign-in", data={"username": tenant.admins[0], "csrf_token": "guess"})
        assert_error(refused, 403, "csrf_failed")
        page = await browser.get("/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        unknown = await browser.post("/sign-in", data={"username": "nobody-at-all", "csrf_token": token})
        assert_error(unknown, 422, "validation_failed", {"username": "not in the directory"})
        assert "kw_session" not in browser.cookies
        offsite = await browser.post(
            "/sign-in", data={"username": tenant.admins[0], "csrf_token": token, "next": "//evil.test/x"}
        )
        assert offsite.headers["location"] == "/keys"


async def test_a_session_cannot_change_anything_without_its_csrf_token(signed_in, tenant: Tenant):
    async with signed_in(tenant.admins[0]) as browser:
        body = {"name": "csrf check", "organization_id": str(tenant.id)}
        for headers in ({}, {"X-CSRF-Token": "wrong"}):
            refused = await browser.client.post("/api/v1/keys", json=body, headers=headers)
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "csrf_failed"
        created = await browser.client.post("/api/v1/keys", json=body, headers=browser.with_csrf())
        assert created.status_code == 201, created.text
        key_url = f"/api/v1/keys/{created.json()['id']}"
        assert_error(await browser.client.patch(key_url, json={"name": "x"}), 403, "csrf_failed")
        assert_error(await browser.client.delete(key_url), 403, "csrf_failed")
        bulk = await browser.client.post("/api/v1/keys/bulk-delete", json={"ids": [created.json()["id"]]})
        assert_error(bulk, 403, "csrf_failed")
        untouched = await browser.client.get(key_url, headers=browser.with_csrf())
        assert (untouched.status_code, untouched.json()["name"]) == (200, "csrf check")
        assert (await browser.client.delete(key_url, headers=browser.with_csrf())).status_code == 204
        assert_error(await browser.client.get(key_url, headers=browser.with_csrf()), 404, "not_found")


async def test_bearer_calls_need_no_csrf_token(gateway: httpx.AsyncClient, tenant: Tenant):
    body = {"name": "script key", "organization_id": str(tenant.id)}
    created = await gateway.post("/api/v1/keys", json=body, headers=bearer(tenant.admins[0]))
    assert created.status_code == 201, created.text
    assert (created.json()["name"], created.json()["created_by"]) == ("script key", tenant.admins[0])


async def test_a_forged_session_cookie_is_refused(gateway: httpx.AsyncClient, tenant: Tenant):
    forged = jwt.encode(
        {
            "sub": tenant.admins[0],
            "aud": "keyward-console-session",
            "csrf": "x",
            "iat": 1,
            "sat": 1,
            "exp": 4_000_000_000,
        },
        "not-the-session-secret-000000000000000",
        algorithm="HS256",
    )
    assert_error(await gateway.get("/api/v1/keys", headers={"Cookie": f"kw_session={forged}"}), 401, "unauthorized")
    page = await gateway.get("/keys", headers={"Cookie": f"kw_session={forged}"})
    assert page.status_code == 303
    assert page.headers["location"].startswith("/sign-in")


async def test_sign_out_ends_the_session_cookie(signed_in, tenant: Tenant):
    async with signed_in(tenant.admins[0]) as browser:
        response = await browser.client.post("/sign-out", data={"csrf_token": browser.csrf})
        assert response.status_code == 303
        assert any("Max-Age=0" in c for c in response.headers.get_list("set-cookie"))
        assert_error(await browser.client.get("/api/v1/keys"), 401, "unauthorized")


async def test_jwt_mode_offers_no_sign_in_and_ignores_session_cookies(make_gateway, signed_in, tenant: Tenant):
    async with signed_in(tenant.admins[0]) as browser:
        session = browser.client.cookies["kw_session"]
    async with make_gateway(auth_mode="jwt") as gw:
        page = await gw.get("/sign-in")
        assert page.status_code == 200
        assert "identity provider" in page.text
        dev_sign_in = await gw.post("/sign-in", data={"username": tenant.admins[0], "csrf_token": "x"})
        assert_error(dev_sign_in, 404, "not_found")
        assert "kw_session" not in dev_sign_in.headers.get("set-cookie", "")
        assert_error(await gw.get("/api/v1/keys", headers={"Cookie": f"kw_session={session}"}), 401, "unauthorized")
        me = await gw.get("/api/v1/me", headers=bearer(tenant.admins[0]))
        assert (me.status_code, me.json()["username"]) == (200, tenant.admins[0])


async def test_a_cross_site_request_cannot_make_a_signed_in_browser_fetch_keys(signed_in, tenant: Tenant):
    """A link or an image on another site: the browser sends the session cookie (SameSite=Lax lets a top-level
    link through) with `Sec-Fetch-Site: cross-site` and no CSRF token. Neither the export nor a reveal answers."""
    async with signed_in(tenant.admins[0]) as browser:
        created = await browser.client.post(
            "/api/v1/keys",
            json={"name": "cross-site check", "organization_id": str(tenant.id)},
            headers=browser.with_csrf(),
        )
        key_url = f"/api/v1/keys/{created.json()['id']}"
        export_url = f"/api/v1/keys/export.csv?organization_id={tenant.id}"
        for url in (export_url, key_url):
            for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}, {}):
                refused = await browser.client.get(url, headers=headers)
                assert_error(refused, 403, "csrf_failed")
                assert created.json()["key"] not in refused.text
            same_origin = await browser.client.get(url, headers={"Sec-Fetch-Site": "same-origin"})
            assert same_origin.status_code == 200 and created.json()["key"] in same_origin.text
            with_token = await browser.client.get(url, headers=browser.with_csrf())
            assert with_token.status_code == 200 and created.json()["key"] in with_token.text
