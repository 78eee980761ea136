// Passkeys on the hosted pages (WebAuthn Level 3's JSON forms). Without JavaScript, or in a
// browser without passkeys, the passkey controls stay hidden and the pages work as before.
//   - login page (#passkey-login): the username field offers passkeys as autofill
//     (conditional mediation), and "Sign in with a passkey" asks directly;
//   - second step (#second-step): "Use a passkey" answers with one of the user's passkeys;
//   - account page (#add-passkey): "Add a passkey" registers one.
// Each fetches a ceremony from Tessera, asks the browser, and posts the answer with the form.
"use strict";

(() => {
  const PKC = window.PublicKeyCredential;
  if (!PKC || !PKC.parseRequestOptionsFromJSON || !PKC.parseCreationOptionsFromJSON) return;

  const showError = (message) => {
    const p = document.getElementById("passkey-error");
    if (!p) return;
    p.textContent = message;
    p.hidden = false;
  };
  const post = async (url, body, contentType) => {
    const r = await fetch(url, {
      method: "POST",
      headers: { "content-type": contentType },
      body,
      credentials: "same-origin",
    });
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    return r.json();
  };
  const postJson = (url, value) => post(url, JSON.stringify(value), "application/json");
  const answer = (form, fields) => {
    for (const [name, value] of Object.entries(fields)) form.elements[name].value = value;
    form.submit();
  };
  const serialise = (credential) => JSON.stringify(credential.toJSON());

  const login = document.getElementById("passkey-login");
  if (login) {
    login.hidden = false;
    let pending = null;
    const ask = async (mediation) => {
      const o = await postJson("/login/passkey/options", {});
      pending = new AbortController();
      const options = { publicKey: PKC.parseRequestOptionsFromJSON(o.publicKey), signal: pending.signal };
      if (mediation) options.mediation = mediation;
      const credential = await navigator.credentials.get(options);
      if (credential) answer(login, { ceremony: o.ceremony, credential: serialise(credential) });
    };
    document.getElementById("passkey-login-button").addEventListener("click", () => {
      if (pending) pending.abort();
      ask(null).catch((e) => {
        if (e.name !== "AbortError") showError("No passkey was used. Try again, or sign in with your password.");
      });
    });
    // Autofill: the browser offers passkeys in the username field's suggestions.
    (PKC.isConditionalMediationAvailable ? PKC.isConditionalMediationAvailable() : Promise.resolve(false))
      .then((yes) => (yes ? ask("conditional") : null))
      .catch(() => {});
  }

  const step = document.getElementById("second-step");
  const stepButton = document.getElementById("passkey-step-button");
  if (step && stepButton) {
    document.getElementById("passkey-step").hidden = false;
    stepButton.addEventListener("click", async () => {
      try {
        const o = await postJson("/login/mfa/passkey", { mfa_token: step.elements.mfa_token.value });
        const credential = await navigator.credentials.get({ publicKey: PKC.parseRequestOptionsFromJSON(o.publicKey) });
        answer(step, { passkey: serialise(credential) });
      } catch (e) {
        showError("No passkey was used. Try again, or enter a code.");
      }
    });
  }

  const add = document.getElementById("add-passkey");
  if (add) {
    document.getElementById("add-passkey-button").addEventListener("click", async () => {
      try {
        const body = new URLSearchParams({ csrf: add.elements.csrf.value, name: add.elements.name.value });
        const o = await post("/account/passkey/options", body.toString(), "application/x-www-form-urlencoded");
        const credential = await navigator.credentials.create({ publicKey: PKC.parseCreationOptionsFromJSON(o.publicKey) });
        answer(add, { ceremony: o.ceremony, credential: serialise(credential) });
      } catch (e) {
        showError("The passkey was not added. Sign in again if this keeps failing.");
      }
    });
  }
})();
