// Verify a Tessera access token with npm `jose`, an independent JOSE implementation.
// Usage: node verify_jose.mjs BASE_URL TOKEN ISSUER AUDIENCE
// Uses the live JWKS (createRemoteJWKSet: cached, refetched on an unknown kid), checks the
// signature, exp, nbf, iss, aud and typ, and prints the payload. Exits 1 on any failure.
import { createRemoteJWKSet, jwtVerify } from "jose";

const [base, token, issuer, audience] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(`${base}/.well-known/jwks.json`));
try {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    issuer,
    audience,
    typ: "at+jwt",
    algorithms: ["ES256", "EdDSA", "RS256"],
    requiredClaims: ["exp", "iat", "nbf", "sub", "jti"],
  });
  console.log(JSON.stringify({ ...payload, _alg: protectedHeader.alg, _kid: protectedHeader.kid }));
} catch (e) {
  console.error("rejected:", e.code ?? e.name, e.message);
  process.exit(1);
}
