"""A software passkey for the benches: P-256, `none` attestation, the CBOR and client data a
browser and an authenticator produce (the Python twin of tests/support/soft_passkey.rs).
Needs `cryptography` (PyJWT[crypto] brings it)."""
import base64
import hashlib
import json
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

ORIGIN = "https://login.example.com"
RP_ID = "example.com"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _head(major, n):
    m = major << 5
    if n < 24:
        return bytes([m | n])
    if n < 256:
        return bytes([m | 24, n])
    return bytes([m | 25, n >> 8, n & 255])


def _text(s):
    return _head(3, len(s)) + s.encode()


def _bytes(b):
    return _head(2, len(b)) + b


class SoftPasskey:
    def __init__(self, verifies_user=True):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cred_id = os.urandom(32)
        self.user_handle = b""
        self.counter = 0
        self.verifies_user = verifies_user

    def _auth_data(self, rp_id, attested):
        flags = 0x01 | (0x04 if self.verifies_user else 0) | (0x40 if attested else 0)
        d = hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + self.counter.to_bytes(4, "big")
        if attested:
            nums = self.key.public_key().public_numbers()
            cose = (_head(5, 5) + bytes([0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21])
                    + _bytes(nums.x.to_bytes(32, "big")) + bytes([0x22]) + _bytes(nums.y.to_bytes(32, "big")))
            d += bytes(16) + len(self.cred_id).to_bytes(2, "big") + self.cred_id + cose
        return d

    @staticmethod
    def _client_data(kind, challenge):
        return json.dumps({"type": kind, "challenge": challenge, "origin": ORIGIN, "crossOrigin": False}).encode()

    def register(self, public_key):
        """`navigator.credentials.create({publicKey})`, then `toJSON()`."""
        self.user_handle = unb64(public_key["user"]["id"])
        cd = self._client_data("webauthn.create", public_key["challenge"])
        att = (_head(5, 3) + _text("fmt") + _text("none") + _text("attStmt") + _head(5, 0)
               + _text("authData") + _bytes(self._auth_data(public_key["rp"]["id"], True)))
        return {"id": b64(self.cred_id), "rawId": b64(self.cred_id), "type": "public-key",
                "response": {"clientDataJSON": b64(cd), "attestationObject": b64(att), "transports": ["usb"]},
                "clientExtensionResults": {}}

    def assert_(self, public_key):
        """`navigator.credentials.get({publicKey})`, then `toJSON()`; the counter goes up first."""
        self.counter += 1
        cd = self._client_data("webauthn.get", public_key["challenge"])
        ad = self._auth_data(public_key["rpId"], False)
        sig = self.key.sign(ad + hashlib.sha256(cd).digest(), ec.ECDSA(hashes.SHA256()))
        return {"id": b64(self.cred_id), "rawId": b64(self.cred_id), "type": "public-key",
                "response": {"authenticatorData": b64(ad), "clientDataJSON": b64(cd), "signature": b64(sig),
                             "userHandle": b64(self.user_handle)},
                "clientExtensionResults": {}}
