#!/usr/bin/python3
# authlib_client.py — a library relying party (Debian's python3-authlib + python3-requests)
# against a running gatehouse: the authorization code flow with PKCE, the ID token checked
# against the JWKS (iss, aud, nonce, exp, signature), userinfo, refresh with rotation and reuse
# detection, key rotation, RFC 7009 revocation and RFC 7662 introspection, and a public client
# (PKCE, no secret; a wrong verifier refused). Run by
# tests/integration/test_oidc_rp.c, which registers the client and the user first.
#
# The one decision: the browser part of the flow (the login and the redirect back) is done by
# hand with requests — the user logs in through POST /v1/sessions and the session cookie goes to
# /oidc/authorize, whose 302 carries the code — while everything a relying party does is
# authlib's own code (OAuth2Session, jose, CodeIDToken), so this is what an authlib app sees.
#
# Environment: ISSUER (http://127.0.0.1:PORT), CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, USERNAME,
# PASSWORD, PUBLIC_CLIENT_ID (optional: a public client with the same redirect URI), ROTATE (JSON
# argv of the command that rotates the signing keys, e.g.
# ["gatehouse","keys","rotate","--data-dir","D"]; the node must re-read its keys within 15 s:
# --oidc-key-refresh). Prints "authlib: ok STEP" per step
# and "authlib: all checks passed" last; on any failure "authlib: FAILED at STEP: WHY" on stderr
# and exit status 1.
import base64
import json
import os
import re
import secrets
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlparse

os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # the test server is plain http on loopback

import requests  # noqa: E402
from authlib.integrations.base_client import OAuthError  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.jose import JsonWebKey, jwt  # noqa: E402
from authlib.jose.errors import JoseError  # noqa: E402
from authlib.oidc.core import CodeIDToken  # noqa: E402

ENV = os.environ
ISSUER = ENV["ISSUER"]
CLIENT_ID, CLIENT_SECRET = ENV["CLIENT_ID"], ENV["CLIENT_SECRET"]
REDIRECT_URI, USERNAME, PASSWORD = ENV["REDIRECT_URI"], ENV["USERNAME"], ENV["PASSWORD"]
TIMEOUT = 10
step = "start"


class Failed(Exception):
    pass


def must(cond, why):
    if not cond:
        raise Failed(why)


def ok(what):
    print(f"authlib: ok {what}", flush=True)


def http():
    s = requests.Session()
    s.trust_env = False  # no proxy of the caller's environment: everything is on loopback
    return s


def discover():
    r = http().get(f"{ISSUER}/.well-known/openid-configuration", timeout=TIMEOUT)
    must(r.status_code == 200, f"discovery answered {r.status_code}")
    meta = r.json()
    must(meta.get("issuer") == ISSUER, f"issuer {meta.get('issuer')!r}, want {ISSUER!r}")
    for k in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
              "revocation_endpoint", "introspection_endpoint", "end_session_endpoint"):
        must(isinstance(meta.get(k), str) and meta[k].startswith(ISSUER + "/"), f"discovery {k}")
    must("S256" in meta.get("code_challenge_methods_supported", []), "S256 not advertised")
    must("code" in meta.get("response_types_supported", []), "response_type code not advertised")
    return meta


def jwks(meta):
    r = http().get(meta["jwks_uri"], timeout=TIMEOUT)
    must(r.status_code == 200, f"JWKS answered {r.status_code}")
    keys = r.json().get("keys")
    must(isinstance(keys, list) and keys, "the JWKS has no keys")
    for k in keys:
        must(k.get("kid"), "a key without kid")
        must(not any(p in k for p in ("d", "p", "q", "dp", "dq", "qi")), "a private part in JWKS")
    return r.json()


def kid_of(token):
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]


def login_cookie():
    """The user's gatehouse session, as a browser would hold it after the login page."""
    s = http()
    r = s.post(f"{ISSUER}/v1/sessions", json={"username": USERNAME, "password": PASSWORD},
               timeout=TIMEOUT)
    must(r.status_code == 201, f"login answered {r.status_code}: {r.text}")
    must(any("gatehouse_session" in c.name for c in s.cookies), "no session cookie")
    return s


def oauth(client_id=None, secret=None):
    """A confidential client (client_secret_basic), or with client_id alone a public one."""
    client = OAuth2Session(client_id or CLIENT_ID, secret if client_id else CLIENT_SECRET,
                           scope="openid profile email", redirect_uri=REDIRECT_URI,
                           code_challenge_method="S256",
                           token_endpoint_auth_method="client_secret_basic"
                           if not client_id or secret else "none")
    client.trust_env = False  # OAuth2Session is a requests.Session: no proxy from the environment
    return client


def code_flow(meta, browser, client_id=None, wrong_verifier=False):
    """Authorization request with PKCE and a nonce; the code from the 302; authlib's exchange
    (with client_id: as that public client). Returns (client, token, nonce); with wrong_verifier
    the exchange sends another verifier and the OAuth error code is returned as the token."""
    client = oauth(client_id)
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = client.create_authorization_url(meta["authorization_endpoint"],
                                                 code_verifier=verifier, nonce=nonce)
    r = browser.get(url, allow_redirects=False, timeout=TIMEOUT)
    must(r.status_code in (302, 303), f"authorize answered {r.status_code}: {r.text[:300]}")
    back = r.headers["Location"]
    must(back.startswith(REDIRECT_URI + "?"), f"redirected to {back}")
    q = parse_qs(urlparse(back).query)
    must(q.get("state") == [state], f"state came back as {q.get('state')}")
    must(re.fullmatch(r"ghc_[A-Za-z0-9_-]{43}", q.get("code", [""])[0]), f"code {q.get('code')}")
    if wrong_verifier:
        return client, token_error(lambda: client.fetch_token(
            meta["token_endpoint"], authorization_response=back,
            code_verifier=secrets.token_urlsafe(48))), nonce
    token = client.fetch_token(meta["token_endpoint"], authorization_response=back,
                               code_verifier=verifier)
    for k in ("access_token", "refresh_token", "id_token", "expires_in"):
        must(k in token, f"the token response has no {k}")
    must(token["token_type"].lower() == "bearer", f"token_type {token['token_type']}")
    must(token["access_token"].startswith("gha_"), "access token format")
    must(token["refresh_token"].startswith("ghr_"), "refresh token format")
    return client, token, nonce


def verify_id_token(id_token, key_set, nonce, client_id=None):
    aud = client_id or CLIENT_ID
    claims = jwt.decode(id_token, JsonWebKey.import_key_set(key_set), claims_cls=CodeIDToken,
                        claims_options={"iss": {"essential": True, "value": ISSUER},
                                        "aud": {"essential": True, "value": aud}},
                        claims_params={"nonce": nonce, "client_id": aud})
    claims.validate(leeway=5)
    must(claims["exp"] > time.time(), "exp in the past")
    must(nonce is None or claims.get("nonce") == nonce, "nonce")
    must(isinstance(claims.get("auth_time"), int), "no auth_time")
    must(claims.get("amr") == ["pwd"], f"amr {claims.get('amr')}, want [\"pwd\"]")
    must(claims.get("acr") == "urn:gatehouse:pwd", f"acr {claims.get('acr')}")
    return claims


def userinfo(meta, access_token):
    return http().get(meta["userinfo_endpoint"], timeout=TIMEOUT,
                      headers={"Authorization": f"Bearer {access_token}"})


def token_error(fn):
    """The OAuth error code a token request failed with, or None when it succeeded."""
    try:
        fn()
    except OAuthError as e:
        return e.error
    return None


def introspect(client, meta, token):
    r = client.introspect_token(meta["introspection_endpoint"], token=token)
    must(r.status_code == 200, f"introspection answered {r.status_code}: {r.text}")
    return r.json()


def rotate(meta, old_kids):
    argv = json.loads(ENV["ROTATE"])
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    must(p.returncode == 0, f"{' '.join(argv[1:3])} exited {p.returncode}: {p.stderr}")
    must(not re.search(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:", p.stderr),
         f"sanitizer report from the rotation: {p.stderr}")
    deadline = time.time() + 15
    while time.time() < deadline:
        key_set = jwks(meta)
        kids = {k["kid"] for k in key_set["keys"]}
        if kids - old_kids:
            return key_set, kids - old_kids
        time.sleep(0.2)
    raise Failed("no new kid in the JWKS 15 s after the rotation")


def main():
    global step
    step = "discovery"
    meta = discover()
    key_set = jwks(meta)
    old_kids = {k["kid"] for k in key_set["keys"]}
    ok(f"discovery and JWKS ({len(old_kids)} key(s))")

    step = "code flow with PKCE"
    browser = login_cookie()
    client, token, nonce = code_flow(meta, browser)
    ok("code flow with PKCE (S256), code exchanged by authlib with client_secret_basic")

    step = "ID token against the JWKS"
    claims = verify_id_token(token["id_token"], key_set, nonce)
    must(kid_of(token["id_token"]) in old_kids, "the ID token's kid is not in the JWKS")
    try:  # a tampered token must not verify: the check above is a real one
        head, body, sig = token["id_token"].split(".")
        forged = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        forged["sub"] = "someone-else"
        body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
        jwt.decode(f"{head}.{body}.{sig}", JsonWebKey.import_key_set(key_set))
        raise Failed("a tampered ID token verified")
    except JoseError:
        pass
    ok(f"ID token verified (kid {kid_of(token['id_token'])}; iss, aud, nonce, exp; sub "
       f"{claims['sub']})")

    step = "userinfo"
    r = userinfo(meta, token["access_token"])
    must(r.status_code == 200, f"userinfo answered {r.status_code}: {r.text}")
    info = r.json()
    must(info.get("sub") == claims["sub"], f"userinfo sub {info.get('sub')}")
    must(info.get("preferred_username") == USERNAME, f"preferred_username {info}")
    must(userinfo(meta, "gha_" + "A" * 64).status_code == 401, "a made-up token got userinfo")
    ok(f"userinfo: preferred_username {info['preferred_username']}")

    step = "refresh"
    first = dict(token)
    new = client.refresh_token(meta["token_endpoint"], refresh_token=first["refresh_token"])
    must(new["refresh_token"] != first["refresh_token"], "the refresh token did not rotate")
    must(new["access_token"] != first["access_token"], "the access token did not change")
    must(userinfo(meta, new["access_token"]).status_code == 200, "the new access token fails")
    must(userinfo(meta, first["access_token"]).status_code == 401, "the old access token works")
    if "id_token" in new:  # optional on a refresh (OIDC Core 12.2); when present, valid
        verify_id_token(new["id_token"], key_set, None)
    ok("refresh: both tokens rotated, the old access token is dead")

    step = "refresh reuse"
    err = token_error(lambda: oauth().refresh_token(meta["token_endpoint"],
                                                    refresh_token=first["refresh_token"]))
    must(err == "invalid_grant", f"the spent refresh token: {err or 'accepted'}")
    err = token_error(lambda: oauth().refresh_token(meta["token_endpoint"],
                                                    refresh_token=new["refresh_token"]))
    must(err == "invalid_grant", f"the family's current refresh token after reuse: "
         f"{err or 'accepted'}")
    must(userinfo(meta, new["access_token"]).status_code == 401,
         "the family's access token still works after reuse")
    ok("refresh reuse: invalid_grant, and the whole family is revoked")

    step = "key rotation"
    # a token signed before the rotation, and a second family to revoke later
    client, before, nonce_before = code_flow(meta, browser)
    key_set, new_kids = rotate(meta, old_kids)
    kids = {k["kid"] for k in key_set["keys"]}
    must(old_kids <= kids, "the old key left the JWKS while its tokens live")
    verify_id_token(before["id_token"], key_set, nonce_before)
    client2, after, nonce_after = code_flow(meta, browser)
    must(kid_of(after["id_token"]) in new_kids,
         f"a new ID token is signed with {kid_of(after['id_token'])}, not the new key "
         f"{sorted(new_kids)}")
    verify_id_token(after["id_token"], key_set, nonce_after)
    ok(f"key rotation: new kid {sorted(new_kids)} in the JWKS, a new ID token verifies with it, "
       "the one from before still verifies")

    step = "introspection"
    at, rt = after["access_token"], after["refresh_token"]
    got = introspect(client2, meta, at)
    must(got.get("active") is True, f"live access token: {got}")
    must(got.get("client_id") == CLIENT_ID, f"introspection client_id {got}")
    must(got.get("sub") == claims["sub"], f"introspection sub {got}")
    must("openid" in got.get("scope", "").split(), f"introspection scope {got}")
    must(got.get("exp", 0) > time.time(), f"introspection exp {got}")
    must(introspect(client2, meta, rt).get("active") is True, "live refresh token inactive")
    must(introspect(client2, meta, "gha_" + "B" * 64).get("active") is False, "made-up token")
    ok("introspection: active with sub, client_id, scope, exp")

    step = "revocation"
    r = client2.revoke_token(meta["revocation_endpoint"], token=at,
                             token_type_hint="access_token")
    must(r.status_code == 200, f"revoking the access token answered {r.status_code}")
    must(introspect(client2, meta, at).get("active") is False, "revoked access token still active")
    must(userinfo(meta, at).status_code == 401, "a revoked access token got userinfo")
    r = client2.revoke_token(meta["revocation_endpoint"], token=rt,
                             token_type_hint="refresh_token")
    must(r.status_code == 200, f"revoking the refresh token answered {r.status_code}")
    must(introspect(client2, meta, rt).get("active") is False, "revoked refresh token active")
    err = token_error(lambda: oauth().refresh_token(meta["token_endpoint"], refresh_token=rt))
    must(err == "invalid_grant", f"a revoked refresh token: {err or 'accepted'}")
    r = client2.revoke_token(meta["revocation_endpoint"], token="ghr_" + "C" * 64)
    must(r.status_code == 200, f"revoking an unknown token answered {r.status_code} (RFC 7009: "
         "200)")
    # the family from before the rotation is untouched by all this
    must(introspect(client, meta, before["access_token"]).get("active") is True,
         "another family died with the revoked one")
    ok("revocation (RFC 7009): access then refresh token, both inactive afterwards")
    if ENV.get("PUBLIC_CLIENT_ID"):
        step = "public client"
        pub = ENV["PUBLIC_CLIENT_ID"]
        _, token, nonce = code_flow(meta, browser, client_id=pub)
        verify_id_token(token["id_token"], key_set, nonce, client_id=pub)
        must(userinfo(meta, token["access_token"]).status_code == 200, "public client userinfo")
        _, err, _ = code_flow(meta, browser, client_id=pub, wrong_verifier=True)
        must(err == "invalid_grant", f"a public client's wrong PKCE verifier: {err or 'accepted'}")
        ok("public client: PKCE without a secret; a wrong verifier is invalid_grant")
    print("authlib: all checks passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except (Failed, OAuthError, JoseError, requests.RequestException, KeyError, ValueError,
            subprocess.SubprocessError, OSError) as e:
        print(f"authlib: FAILED at {step}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
