#!/usr/bin/env python3
"""A plain-HTTP OpenID Connect relying party against Tessera's hosted login (no browser).

usage: python3 oidc_rp.py BASE [USERNAME [PASSWORD]]
       e.g. python3 oidc_rp.py http://127.0.0.1:18080 alice 'correct horse battery staple'

Needs `requests` and `Authlib`; `oic` (PyPI name `oic`, never `pyoidc`) is used for an extra
discovery check when it is installed. Expects the clients of the README's example:
`web` (public, first party, redirect URI http://127.0.0.1:18081/cb, scopes openid profile
offline_access) and `cli` (public, first party, loopback http://127.0.0.1/callback).

Flow: discovery; authorize `web` with PKCE S256, state and nonce; fill the hosted login form;
take the code from the 303; check state and iss (RFC 9207); exchange it; verify the ID token
against the JWKS (iss, aud, azp, nonce, exp, iat, at_hash, sid, auth_time); /userinfo; refresh;
SSO for `cli` on a random loopback port without a login page; prompt=login shows the login page;
prompt=none from a fresh session gives login_required with state and iss.
Exits non-zero with a message on the first failure; prints one JSON line on success.
"""
import base64
import hashlib
import html
import http.cookiejar
import json
import random
import re
import secrets
import sys
import time
import urllib.parse as up

import warnings

import requests
from authlib.integrations.requests_client import OAuth2Session

with warnings.catch_warnings():  # authlib.jose is deprecated in favour of joserfc, still works
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, JsonWebToken
    from authlib.jose.errors import JoseError

WEB_REDIRECT = "http://127.0.0.1:18081/cb"
WEB_SCOPE = "openid profile offline_access"


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


class Browserish(requests.Session):
    """A cookie-carrying session that, like browsers, treats http://127.0.0.1 as a secure
    context: http.cookiejar would otherwise never send the `Secure` __Host- cookies over http."""

    def prepare_request(self, request):
        for c in self.cookies:
            c.secure = False
        return super().prepare_request(request)


def pkce_pair():
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


class FormParser:
    """The first <form> of a page: its action and every named <input>'s value."""

    def __init__(self, text):
        m = re.search(r"<form\b([^>]*)>(.*?)</form>", text, re.S | re.I)
        check(m, "no <form> on the page")
        act = re.search(r'action="([^"]*)"', m.group(1))
        check(act, "the form has no action")
        self.action = html.unescape(act.group(1))
        self.fields = {}
        for im in re.finditer(r"<input\b([^>]*)>", m.group(2), re.I):
            attrs = dict(
                (k.lower(), html.unescape(v))
                for k, v in re.findall(r'([A-Za-z_:-]+)="([^"]*)"', im.group(1))
            )
            if "name" in attrs:
                self.fields[attrs["name"]] = attrs.get("value", "")


def is_login_page(resp):
    return resp.status_code == 200 and 'type="password"' in resp.text


def query_of(location):
    parts = up.urlsplit(location)
    pairs = up.parse_qsl(parts.query, keep_blank_values=True)
    names = [k for k, _ in pairs]
    check(len(names) == len(set(names)), f"a parameter repeats in the redirect: {location}")
    return parts, dict(pairs)


def b64url_sha256_half(value):
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    base = sys.argv[1].rstrip("/")
    username = sys.argv[2] if len(sys.argv) > 2 else "alice"
    password = sys.argv[3] if len(sys.argv) > 3 else "correct horse battery staple"
    summary = {}

    # --- discovery -------------------------------------------------------------------------
    r = requests.get(base + "/.well-known/openid-configuration", timeout=10)
    check(r.status_code == 200, f"discovery: HTTP {r.status_code}")
    doc = r.json()
    check(doc.get("issuer") == base, f"discovery: issuer {doc.get('issuer')!r} is not {base!r}")
    for member in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        check(isinstance(doc.get(member), str), f"discovery: no {member}")
    check("code" in doc.get("response_types_supported", []), "discovery: response type code missing")
    check("S256" in doc.get("code_challenge_methods_supported", []), "discovery: S256 missing")
    check(doc.get("authorization_response_iss_parameter_supported") is True,
          "discovery: authorization_response_iss_parameter_supported is not true")
    try:
        from oic.oic.message import ProviderConfigurationResponse
    except ImportError:
        summary["oic_verify"] = "skipped (oic not installed)"
    else:
        from oic.oauth2.message import SchemeError

        def oic_verify(d):
            try:
                return ProviderConfigurationResponse(**d).verify()
            except SchemeError:
                raise
            except Exception as e:  # oic raises its own error classes
                raise Failure(f"discovery: oic ProviderConfigurationResponse.verify() failed: {e!r}")

        try:
            check(oic_verify(doc), "discovery: oic ProviderConfigurationResponse.verify() is false")
            summary["oic_verify"] = "passed"
        except SchemeError:
            # OIDC Discovery §3 wants an https issuer, and oic checks only that for the scheme.
            # A development issuer on the loopback is http: verify everything else.
            host = up.urlsplit(base).hostname
            check(base.startswith("http://") and host in ("127.0.0.1", "localhost", "::1"),
                  f"discovery: oic refuses the issuer {base!r}: not https")
            check(oic_verify(dict(doc, issuer="https://" + base[len("http://"):])),
                  "discovery: oic ProviderConfigurationResponse.verify() is false")
            summary["oic_verify"] = "passed (https issuer rule waived for the http loopback)"

    r = requests.get(doc["jwks_uri"], timeout=10)
    check(r.status_code == 200, f"jwks: HTTP {r.status_code}")
    jwks = JsonWebKey.import_key_set(r.json())
    algs = doc.get("id_token_signing_alg_values_supported") or ["RS256"]
    jwt = JsonWebToken(algs)

    # --- authorize web with the hosted login -----------------------------------------------
    browser = Browserish()
    verifier, challenge = pkce_pair()
    state = "st." + secrets.token_urlsafe(16) + " ü&="  # must come back byte-exact
    nonce = secrets.token_urlsafe(24)
    oauth = OAuth2Session(
        client_id="web", scope=WEB_SCOPE, redirect_uri=WEB_REDIRECT,
        code_challenge_method="S256", token_endpoint_auth_method="none",
    )
    auth_url, _ = oauth.create_authorization_url(
        doc["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier,
    )
    check(f"code_challenge={challenge}" in auth_url, "Authlib built a different PKCE challenge")
    r = browser.get(auth_url, allow_redirects=False, timeout=10)
    check(is_login_page(r), f"authorize web: expected the login page, got HTTP {r.status_code}")
    for header, want in (("x-frame-options", "DENY"),):
        check(r.headers.get(header) == want, f"login page: {header} is {r.headers.get(header)!r}")
    csp = r.headers.get("content-security-policy", "")
    check("frame-ancestors 'none'" in csp, f"login page: CSP without frame-ancestors 'none': {csp!r}")
    form = FormParser(r.text)
    check("csrf" in form.fields, "login form: no csrf field")
    form.fields["username"] = username
    form.fields["password"] = password
    r = browser.post(up.urljoin(r.url, form.action), data=form.fields, allow_redirects=False,
                     headers={"Origin": base}, timeout=30)
    check(r.status_code == 303,
          f"login: expected 303, got {r.status_code}"
          + (f" ({m.group(1)})" if (m := re.search(r'role="alert">(.*?)<', r.text, re.S)) else ""))
    parts, q = query_of(r.headers["location"])
    check(f"{parts.scheme}://{parts.netloc}{parts.path}" == WEB_REDIRECT,
          f"login: redirected to {r.headers['location']!r}, not {WEB_REDIRECT}")
    check(q.get("state") == state, f"state came back as {q.get('state')!r}, sent {state!r}")
    check(q.get("iss") == base, f"iss in the response is {q.get('iss')!r}")
    check("error" not in q, f"authorize web: error {q.get('error')}: {q.get('error_description')}")
    check(q.get("code"), "no code in the redirect")
    sso_cookie = browser.cookies.get("__Host-tessera_sso")
    check(sso_cookie, "no __Host-tessera_sso cookie after the login")

    # --- code exchange -----------------------------------------------------------------------
    token = oauth.fetch_token(
        doc["token_endpoint"], authorization_response=r.headers["location"],
        state=state, code_verifier=verifier,
    )
    for member in ("access_token", "id_token", "refresh_token", "expires_in"):
        check(member in token, f"token response without {member}")
    check(token.get("token_type", "").lower() == "bearer", f"token_type {token.get('token_type')!r}")

    # --- ID token ---------------------------------------------------------------------------
    header = json.loads(base64.urlsafe_b64decode(token["id_token"].split(".")[0] + "=="))
    check(header.get("typ") == "JWT", f"ID token typ {header.get('typ')!r}")
    try:
        claims = jwt.decode(
            token["id_token"], jwks,
            claims_options={
                "iss": {"essential": True, "value": base},
                "aud": {"essential": True, "value": "web"},
                "sub": {"essential": True},
                "exp": {"essential": True},
                "iat": {"essential": True},
                "nonce": {"essential": True, "value": nonce},
            },
        )
        claims.validate(leeway=10)
    except JoseError as e:
        raise Failure(f"ID token: {e!r}")
    now = time.time()
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    check(aud == ["web"], f"ID token aud {claims['aud']!r}")
    check(claims.get("azp") == "web", f"ID token azp {claims.get('azp')!r}")
    check(claims["iat"] <= now + 10 and claims["exp"] > now, "ID token iat/exp out of range")
    check(isinstance(claims.get("auth_time"), int) and claims["auth_time"] <= claims["iat"] + 10
          and claims["auth_time"] > now - 300, f"ID token auth_time {claims.get('auth_time')!r}")
    check(isinstance(claims.get("sid"), str) and claims["sid"], "ID token without sid")
    check(claims.get("at_hash") == b64url_sha256_half(token["access_token"]),
          f"ID token at_hash {claims.get('at_hash')!r} does not match the access token")
    check(claims.get("preferred_username") == username,
          f"ID token preferred_username {claims.get('preferred_username')!r}")
    summary["sub"] = claims["sub"]
    summary["sid"] = claims["sid"]

    # --- userinfo ------------------------------------------------------------------------------
    r = requests.get(doc["userinfo_endpoint"], timeout=10,
                     headers={"Authorization": "Bearer " + token["access_token"]})
    check(r.status_code == 200, f"userinfo: HTTP {r.status_code} {r.text[:200]}")
    info = r.json()
    check(info.get("sub") == claims["sub"], f"userinfo sub {info.get('sub')!r} != {claims['sub']!r}")
    check(info.get("preferred_username") == username, "userinfo: preferred_username missing")
    r = requests.get(doc["userinfo_endpoint"], timeout=10,
                     headers={"Authorization": "Bearer " + token["id_token"]})
    check(r.status_code == 401, f"userinfo accepted the ID token as a bearer token ({r.status_code})")

    # --- refresh ------------------------------------------------------------------------------
    refreshed = oauth.refresh_token(doc["token_endpoint"], refresh_token=token["refresh_token"])
    check(refreshed.get("access_token") and refreshed["access_token"] != token["access_token"],
          "refresh: no new access token")
    check(refreshed.get("refresh_token") and refreshed["refresh_token"] != token["refresh_token"],
          "refresh: the refresh token was not rotated")
    r = requests.get(doc["userinfo_endpoint"], timeout=10,
                     headers={"Authorization": "Bearer " + refreshed["access_token"]})
    check(r.status_code == 200 and r.json().get("sub") == claims["sub"], "userinfo after refresh")

    # --- SSO: cli on a random loopback port, same cookies, no login page -----------------------
    port = random.randint(20000, 60000)
    cli_redirect = f"http://127.0.0.1:{port}/callback"
    cli_verifier, _ = pkce_pair()
    cli = OAuth2Session(client_id="cli", scope="openid", redirect_uri=cli_redirect,
                        code_challenge_method="S256", token_endpoint_auth_method="none")
    cli_state, cli_nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    url, _ = cli.create_authorization_url(doc["authorization_endpoint"], state=cli_state,
                                          nonce=cli_nonce, code_verifier=cli_verifier)
    r = browser.get(url, allow_redirects=False, timeout=10)
    check(not is_login_page(r), "SSO: cli got the login page although the browser is signed in")
    check(r.status_code in (302, 303), f"SSO: cli got HTTP {r.status_code}, not a redirect")
    parts, q = query_of(r.headers["location"])
    check(f"{parts.scheme}://{parts.netloc}{parts.path}" == cli_redirect,
          f"SSO: redirected to {r.headers['location']!r}")
    check(q.get("state") == cli_state and q.get("iss") == base and q.get("code"),
          f"SSO: bad response {q}")
    cli_token = cli.fetch_token(doc["token_endpoint"], authorization_response=r.headers["location"],
                                state=cli_state, code_verifier=cli_verifier)
    try:
        cli_claims = jwt.decode(cli_token["id_token"], jwks, claims_options={
            "iss": {"essential": True, "value": base}, "aud": {"essential": True, "value": "cli"},
            "nonce": {"essential": True, "value": cli_nonce}})
        cli_claims.validate(leeway=10)
    except JoseError as e:
        raise Failure(f"SSO: cli ID token: {e!r}")
    check(cli_claims["sub"] == claims["sub"], "SSO: another subject for cli")
    check(cli_claims.get("sid") == claims["sid"], "SSO: cli's ID token has another sid")
    check(cli_claims.get("auth_time") == claims["auth_time"], "SSO: auth_time changed without a login")
    check("refresh_token" not in cli_token, "cli got a refresh token without offline_access")
    summary["sso_port"] = port

    # --- prompt=login shows the login page again ------------------------------------------------
    url, _ = oauth.create_authorization_url(doc["authorization_endpoint"], state="s-login",
                                            nonce="n-login", code_verifier=pkce_pair()[0],
                                            prompt="login")
    r = browser.get(url, allow_redirects=False, timeout=10)
    check(is_login_page(r), f"prompt=login: expected the login page, got HTTP {r.status_code}")

    # --- prompt=none from a fresh session: login_required with state and iss -------------------
    url, _ = oauth.create_authorization_url(doc["authorization_endpoint"], state="s-none",
                                            nonce="n-none", code_verifier=pkce_pair()[0],
                                            prompt="none")
    r = Browserish().get(url, allow_redirects=False, timeout=10)
    check(r.status_code in (302, 303), f"prompt=none: HTTP {r.status_code}, not a redirect")
    parts, q = query_of(r.headers["location"])
    check(f"{parts.scheme}://{parts.netloc}{parts.path}" == WEB_REDIRECT, "prompt=none: wrong target")
    check(q.get("error") == "login_required", f"prompt=none: error {q.get('error')!r}")
    check(q.get("state") == "s-none" and q.get("iss") == base, f"prompt=none: {q}")
    check("code" not in q, "prompt=none: a code without a session")

    summary.update(ok=True, issuer=base, client="web", scope=token.get("scope"),
                   id_token_alg=header.get("alg"), refreshed=True, sso="cli")
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"oidc_rp: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    except requests.RequestException as e:
        print(f"oidc_rp: FAILED: HTTP error: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # Authlib raises OAuthError and friends
        print(f"oidc_rp: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
