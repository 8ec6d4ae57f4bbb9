// The page's calls to the service: every one goes through api(), which sends the API key this
// tab was given and, when the service asks for one (401), waits for the user to enter it.
// Loaded before stream.js and app.js; it uses $, setStatus and errorText from app.js at call time.
"use strict";

// --- API keys: every call goes through api(), which sends the key this tab was given --------
// A service hosted for others asks for a key (401). The page then shows the key form, keeps the
// key in sessionStorage (this tab only, gone when it closes; never in a URL), and sends the same
// request again once a key is entered; a refused key is dropped and the form asks again. A
// service without keys never answers 401, so the form stays hidden and no header is sent.
const KEY_ITEM = "pixelcnn-api-key";
let keyWaiters = [];  // the resolves of the calls waiting for a key

// fetch(url, init) with the stored key; a 401 waits for a key and tries again (the bodies the
// page sends, strings and FormData, can be sent twice). `init.signal` aborts the wait too.
async function api(url, init = {}) {
  for (;;) {
    const key = sessionStorage.getItem(KEY_ITEM);
    const headers = new Headers(init.headers);
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const response = await fetch(url, { ...init, headers });
    if (response.status !== 401) return response;
    // Refused: forget the key, unless another call has already stored a newer one.
    if (key && sessionStorage.getItem(KEY_ITEM) === key) sessionStorage.removeItem(KEY_ITEM);
    await askForKey(await errorText(response), init.signal);
  }
}

// Shows the key form with the server's reason; resolves once a key is entered.
function askForKey(reason, signal) {
  const wasHidden = $("key-form").hidden;
  $("key-form").hidden = false;
  setStatus("key-status", reason, true);
  if (wasHidden || document.activeElement !== $("api-key")) $("api-key").focus();
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(signal.reason); return; }
    keyWaiters.push(resolve);
    signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}

function useKey(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_ITEM, key);
  $("api-key").value = "";
  $("key-form").hidden = true;
  setStatus("key-status", "");
  const waiting = keyWaiters;
  keyWaiters = [];
  for (const resolve of waiting) resolve();  // each sends its request again, with the key
}
