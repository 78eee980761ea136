// An OAuth client library (openid-client 5) against a running Tessera: discovery, the password
// and refresh grants, introspection and revocation, with client_secret_basic and
// client_secret_post. Usage: node oauth_client.cjs BASE CLIENT_ID CLIENT_SECRET USER PASSWORD
const { Issuer } = require("openid-client");

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function main() {
  const [base, clientId, secret, username, password] = process.argv.slice(2);
  for (const doc of ["openid-configuration", "oauth-authorization-server"]) {
    const issuer = await Issuer.discover(`${base}/.well-known/${doc}`);
    const m = issuer.metadata;
    check(m.issuer === base, `${doc}: issuer ${m.issuer}`);
    check(JSON.stringify(m.response_types_supported) === '["code"]',
      `${doc}: response_types_supported`);
    check(m.authorization_endpoint === `${base}/authorize`, `${doc}: authorization_endpoint`);
    check(Array.isArray(m.id_token_signing_alg_values_supported), `${doc}: ID-token fields`);
  }
  const issuer = await Issuer.discover(base);
  for (const method of ["client_secret_basic", "client_secret_post"]) {
    const client = new issuer.Client({
      client_id: clientId,
      client_secret: secret,
      token_endpoint_auth_method: method,
    });
    const first = await client.grant({ grant_type: "password", username, password });
    check(first.access_token && first.refresh_token, `${method}: token response`);
    const active = await client.introspect(first.access_token);
    check(active.active === true && active.client_id === clientId, `${method}: introspection`);
    const next = await client.refresh(first.refresh_token);
    check(next.refresh_token !== first.refresh_token, `${method}: rotation`);
    await client.revoke(next.refresh_token, "refresh_token");
    const gone = await client.introspect(next.refresh_token, "refresh_token");
    check(gone.active === false, `${method}: revoked refresh token still active`);
    await client.revoke(next.access_token, "access_token");
    const denied = await client.introspect(next.access_token);
    check(denied.active === false, `${method}: revoked access token still active`);
  }
  console.log("ok");
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
