/*
 * pacer-stream.js: read a resumable pacer stream in the browser.
 *
 * A paced stream is a POST (EventSource cannot POST), so this reads it with fetch and a
 * ReadableStream. It renders the stream as it comes, stops at `data: [DONE]` (or an
 * `event: error`), never re-posts the request (which would run the model again), and
 * after a dropped connection resumes with `GET /v1/streams/{id}` and the
 * `Last-Event-ID` it reached: every event arrives once, in order. It asks for a
 * resumable stream (`X-Pacer-Resumable: 1`) and keeps the stream's token
 * (`X-Pacer-Stream-Token`), which it sends back to resume and to cancel: the stream
 * belongs to whoever started it, and that token proves it (`stream.token`).
 *
 *   const stream = new PacerStream("/v1/chat/completions", body, {
 *     onText: (text) => { answer.textContent += text; },
 *   });
 *   stopButton.onclick = async () => console.log((await stream.cancel()).text);
 *   const end = await stream.done;  // {outcome: "done" | "error" | "closed", streamId, lastEventId, reconnects}
 *
 * Options: headers (added to every request), onEvent(event) for every event
 * ({event, data, id}), onText(text, event) for the answer text of each event (the
 * default `text` reads a Chat Completions chunk's delta.content, a Completions
 * choice's text, a Responses output_text delta or a Messages text_delta; a plain-text
 * stream's data), retries (reconnects in a row, default 5), backoff (ms, default 250,
 * doubled after each failure).
 */
(function (root) {
  "use strict";

  function defaultText(event) {
    if (event.event === "error" || event.data === "[DONE]") return "";
    let body;
    try {
      body = JSON.parse(event.data);
    } catch (_) {
      return event.data; // a plain-text stream
    }
    if (body === null || typeof body !== "object") return event.data;
    if (Array.isArray(body.choices)) {
      const choice = body.choices.find((c) => (c.index || 0) === 0);
      if (!choice) return "";
      if (choice.delta && typeof choice.delta.content === "string") return choice.delta.content;
      return typeof choice.text === "string" ? choice.text : "";
    }
    if (body.type === "response.output_text.delta") return body.delta || "";
    if (body.type === "content_block_delta" && body.delta && body.delta.type === "text_delta") {
      return body.delta.text || "";
    }
    return "";
  }

  /* An incremental event-stream parser (the WHATWG rules that matter here). */
  class EventParser {
    constructor() {
      this.buffer = "";
      this.data = [];
      this.type = "";
      this.id = null;
      this.lastId = "";
      this.skipLF = false;
    }
    feed(text) {
      const events = [];
      this.buffer += text;
      let start = 0;
      for (let i = 0; i < this.buffer.length; i++) {
        const c = this.buffer[i];
        if (c !== "\n" && c !== "\r") continue;
        if (c === "\n" && this.skipLF && i === start) {
          this.skipLF = false;
          start = i + 1;
          continue;
        }
        this.skipLF = c === "\r";
        this.line(this.buffer.slice(start, i), events);
        start = i + 1;
      }
      this.buffer = this.buffer.slice(start);
      return events;
    }
    line(line, events) {
      if (line === "") {
        if (this.id !== null) this.lastId = this.id;
        if (this.data.length) {
          events.push({ event: this.type || "message", data: this.data.join("\n"), id: this.lastId });
        }
        this.data = [];
        this.type = "";
        this.id = null;
        return;
      }
      if (line[0] === ":") return;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
      if (field === "data") this.data.push(value);
      else if (field === "event") this.type = value;
      else if (field === "id" && value.indexOf("\0") < 0) this.id = value;
    }
  }

  class Fatal extends Error {}

  class PacerStream {
    constructor(url, body, options = {}) {
      this.url = url;
      this.body = body;
      this.options = options;
      this.headers = options.headers || {};
      this.text = options.text || defaultText;
      this.retries = options.retries === undefined ? 5 : options.retries;
      this.backoff = options.backoff === undefined ? 250 : options.backoff;
      this.streamId = null;
      this.token = null;
      this.lastEventId = null;
      this.reconnects = 0;
      this.controller = new AbortController();
      this.done = this.run();
    }

    streamsUrl() {
      const at = this.url.indexOf("/v1/");
      if (at < 0) throw new Fatal("PacerStream: the url must have /v1/ in its path: " + this.url);
      return this.url.slice(0, at) + "/v1/streams/" + encodeURIComponent(this.streamId);
    }

    /* The headers of a resume or a cancel: the caller's, and the stream's token. */
    ownerHeaders() {
      const headers = Object.assign({}, this.headers);
      if (this.token) headers["X-Pacer-Stream-Token"] = this.token;
      return headers;
    }

    async connect() {
      const signal = this.controller.signal;
      if (this.streamId === null) {
        const headers = Object.assign({ "Content-Type": "application/json", "X-Pacer-Resumable": "1" }, this.headers);
        return fetch(this.url, { method: "POST", headers, body: JSON.stringify(this.body), signal });
      }
      const headers = this.ownerHeaders();
      if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
      return fetch(this.streamsUrl(), { headers, signal });
    }

    async run() {
      let failures = 0;
      for (;;) {
        let response;
        try {
          response = await this.connect();
          if (!response.ok) {
            const detail = await response.text();
            if (this.streamId === null || response.status < 500) {
              throw new Fatal("PacerStream: " + response.status + " " + detail);
            }
            throw new Error("PacerStream: " + response.status); // try again
          }
          if (this.streamId === null) {
            this.streamId = response.headers.get("X-Pacer-Stream-Id");
            this.token = response.headers.get("X-Pacer-Stream-Token");
          }
          const outcome = await this.read(response.body);
          return { outcome, streamId: this.streamId, lastEventId: this.lastEventId, reconnects: this.reconnects };
        } catch (error) {
          if (error instanceof Fatal || this.controller.signal.aborted) throw error;
          if (this.streamId === null) throw error; // no id yet: nothing to resume
          failures += 1;
          if (failures > this.retries) throw error;
          await new Promise((resolve) => setTimeout(resolve, this.backoff * 2 ** (failures - 1)));
          this.reconnects += 1;
        }
      }
    }

    /* Reads one connection's events; "done", "error" or "closed" (a clean end). A dropped connection throws. */
    async read(body) {
      const reader = body.getReader();
      const decoder = new TextDecoder();
      const parser = new EventParser();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return "closed";
        for (const event of parser.feed(decoder.decode(value, { stream: true }))) {
          if (event.id) this.lastEventId = event.id;
          if (this.options.onEvent) this.options.onEvent(event);
          const text = this.text(event);
          if (text && this.options.onText) this.options.onText(text, event);
          if (event.data === "[DONE]" || event.event === "error") {
            reader.cancel().catch(() => {});
            return event.event === "error" ? "error" : "done";
          }
        }
      }
    }

    /* Stops the generation for every reader; resolves to {text, last_event_id, ...}. */
    async cancel() {
      if (this.streamId === null) throw new Error("PacerStream: no stream id yet");
      const headers = Object.assign({ "Content-Type": "application/json" }, this.ownerHeaders());
      const response = await fetch(this.streamsUrl() + "/cancel", { method: "POST", headers, body: "{}" });
      if (!response.ok) throw new Error("PacerStream: cancel answered " + response.status);
      return response.json();
    }

    /* Stops reading here (the generation goes on for other readers, up to the orphan timeout). */
    close() {
      this.controller.abort();
    }
  }

  root.PacerStream = PacerStream;
})(typeof window !== "undefined" ? window : globalThis);
