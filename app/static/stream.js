// Watching the model draw: a POST with Accept: text/event-stream, its server-sent events read
// from the response body (EventSource can only GET), and Cancel that aborts the fetch, which
// closes the stream and so cancels the work on the server.
"use strict";

// POST and read the events: `onProgress` gets each progress event's data ({rows, of, images?});
// resolves with the result event's data, rejects with an Error on an error event or a refusal.
async function streamJob(url, init, onProgress, signal) {
  const headers = { ...(init.headers ?? {}), Accept: "text/event-stream" };
  const response = await api(url, { ...init, headers, signal });  // with the key, if any
  if (!response.ok) throw new Error(await errorText(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the stream ended without a result");
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {  // an event ends with a blank line
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length === 0) continue;  // a comment (keep-alive)
      const payload = JSON.parse(data.join("\n"));
      if (name === "progress") onProgress(payload);
      else if (name === "error") throw new Error(payload.detail);
      else if (name === "result") { reader.cancel(); return payload; }
    }
  }
}

// While `run(signal)` is in flight `button` reads Cancel and aborts it, and `bar` is shown.
async function cancellable(button, bar, run) {
  const label = button.textContent;
  const controller = new AbortController();
  const cancel = (e) => { e.preventDefault(); controller.abort(); };
  button.textContent = "Cancel";
  button.type = "button";  // a click now cancels instead of submitting again
  button.addEventListener("click", cancel);
  bar.value = 0;
  bar.hidden = false;
  try {
    return await run(controller.signal);
  } finally {
    button.removeEventListener("click", cancel);
    button.type = "submit";
    button.textContent = label;
    bar.hidden = true;
  }
}

// A progress event on the page: the bar, the status line, and the partial images (grey where
// the model has not drawn yet) in `gallery` until the result replaces them.
function showProgress(gallery, bar, statusId, progress) {
  bar.max = progress.of;
  bar.value = progress.rows;
  setStatus(statusId, `drawing row ${progress.rows} of ${progress.of}…`);
  if (!progress.images) return;
  if (gallery.querySelectorAll("img.partial").length !== progress.images.length) {
    gallery.replaceChildren(...progress.images.map(() => figure("", "drawing…")));
    for (const img of gallery.querySelectorAll("img")) img.classList.add("partial");
  }
  gallery.querySelectorAll("img.partial").forEach((img, k) => {
    img.src = `data:image/png;base64,${progress.images[k]}`;
  });
}

// The status line after a streamed call failed or was cancelled.
function streamFailed(statusId, error) {
  if (error.name === "AbortError") setStatus(statusId, "cancelled");
  else setStatus(statusId, error.message || `request failed: ${error}`, true);
}
