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
 *   pauseButton.onclick = () => stream.control("pause");  // also "resume", "show_all", ("rate", cps)
 *   const end = await stream.done;  // {outcome: "done" | "error" | "closed", streamId, lastEventId, reconnects}
 *
 * Options: headers (added to every request), onEvent(event) for every event
 * ({event, data, id}), onText(text, event) for the answer text of each event (the
 * default `text` reads a Chat Completions chunk's delta.content, a Completions
 * choice's text, a Responses output_text delta or a Messages text_delta; a plain-text
 * stream's data), retries (reconnects in a row, default 5), backoff (ms, default 250,
 * doubled after each failure).
 *
 * Stop and refine: `stream.received` is the answer text this client received (what
 * onText got). After a stop, `stream.followUp(correction)` is the next request's body:
 * the request with exactly that text as the assistant's partial turn and the
 * correction as the next user turn, in the API's own shape (the url says which);
 * `PacerStream.followUp(api, request, shown, correction, {choice})` builds one from a
 * cancel's answer ({text, choices}) or a string, as pacer.client.follow_up does:
 *
 *   const answer = await stream.cancel();
 *   const body = stream.followUp("Shorter, please.", { shown: answer });
 *   const next = new PacerStream(stream.url, body, { onText });
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

  /* -- stop and refine: the request after a stopped answer (pacer/_refine.py's twin) -- */

  const ROUTES = { "/v1/chat/completions": "chat.completions", "/v1/completions": "completions",
    "/v1/responses": "responses", "/v1/messages": "messages" };

  function apiOf(api) {
    if (Object.values(ROUTES).includes(api)) return api;
    const at = api.indexOf("/v1/");
    if (at < 0) return null;
    const path = api.slice(at).split("?")[0].replace(/\/+$/, "");
    return ROUTES[path] || null;
  }

  function laneOf(lanes, choice) {
    const text = lanes.get(choice);
    if (typeof text !== "string") {
      const known = [...lanes.keys()].filter(Number.isInteger).sort((a, b) => a - b).join(", ") || "none";
      throw new Error("followUp: no text for choice " + choice + "; the lanes shown are: " + known);
    }
    return text;
  }

  /* The text of lane `choice` that `shown` (a string, or a cancel's answer) says was seen. */
  function shownText(shown, choice) {
    if (!Number.isInteger(choice) || choice < 0) {
      throw new TypeError("followUp: choice must be an int >= 0 (a choice's index), got " + choice);
    }
    if (typeof shown === "string") {
      if (choice) throw new Error("followUp: choice=" + choice + ", but a string is one lane's text; pass that lane's");
      return shown;
    }
    if (shown === null || typeof shown !== "object" || Array.isArray(shown)) {
      throw new TypeError("followUp: shown must be the text (a string) or a cancel's answer, got " + JSON.stringify(shown));
    }
    if (Array.isArray(shown.choices) && shown.choices.length) {
      return laneOf(new Map(shown.choices.filter((c) => c && typeof c === "object").map((c) => [c.index, c.text])), choice);
    }
    if (typeof shown.text !== "string") {
      throw new Error("followUp: shown has no 'text' string; expected the JSON a cancel answers ({text, choices})");
    }
    if (choice) throw new Error("followUp: choice=" + choice + ", but a cancel answer without choices is one lane's text; pass that lane's");
    return shown.text;
  }

  function turns(request, key, api) {
    if (!Array.isArray(request[key])) {
      throw new Error("followUp: a " + api + " request needs a '" + key + "' list, got " + JSON.stringify(request[key]));
    }
    return request[key].slice();
  }

  function prefill(list) {
    const last = list[list.length - 1];
    return last && typeof last === "object" && last.role === "assistant" ? last : null;
  }

  const APIS = {
    "chat.completions": (request, shown, correction) => {
      const messages = turns(request, "messages", "chat.completions");
      const last = request.continue_final_message ? prefill(messages) : null;
      if (last) {
        const content = Array.isArray(last.content)
          ? [...last.content, { type: "text", text: shown }]
          : (typeof last.content === "string" ? last.content : "") + shown;
        messages[messages.length - 1] = Object.assign({}, last, { content });
      } else {
        messages.push({ role: "assistant", content: shown });
      }
      messages.push({ role: "user", content: correction });
      const body = Object.assign({}, request, { messages });
      delete body.continue_final_message;
      delete body.add_generation_prompt;
      return body;
    },
    responses: (request, shown, correction) => {
      const given = request.input;
      const items = typeof given === "string" ? [{ type: "message", role: "user", content: given }]
        : given === undefined || given === null ? [] : turns(request, "input", "responses");
      items.push({ type: "message", role: "assistant", content: [{ type: "output_text", text: shown, annotations: [] }] });
      items.push({ type: "message", role: "user", content: correction });
      return Object.assign({}, request, { input: items });
    },
    messages: (request, shown, correction) => {
      const messages = turns(request, "messages", "messages");
      const last = prefill(messages);
      const block = { type: "text", text: shown };
      if (last) {
        const blocks = Array.isArray(last.content) ? last.content : last.content ? [{ type: "text", text: last.content }] : [];
        messages[messages.length - 1] = Object.assign({}, last, { content: [...blocks, block] });
      } else {
        messages.push({ role: "assistant", content: [block] });
      }
      messages.push({ role: "user", content: [{ type: "text", text: correction }] });
      return Object.assign({}, request, { messages });
    },
  };

  /* The request that follows `request` after its stream was stopped: `shown` (a string, or
   * a cancel's answer; lane options.choice) as the assistant's partial turn, then
   * `correction` as the next user turn. `api`: "chat.completions", "responses",
   * "messages", or a URL or path ending in its /v1/ route. Throws for anything else. */
  function followUp(api, request, shown, correction, options = {}) {
    if (typeof api !== "string") throw new TypeError("followUp: api must be a string (an API name or URL)");
    const name = apiOf(api);
    if (name === "completions") {
      throw new Error("followUp: the Completions API has no turns to put a correction in; continue its prompt with the shown text yourself, or ask /v1/chat/completions");
    }
    if (!APIS[name]) {
      throw new Error("followUp: api must be one of " + Object.keys(APIS).join(", ") + ", or a URL or path ending in /v1/chat/completions, /v1/responses or /v1/messages; got " + JSON.stringify(api));
    }
    if (request === null || typeof request !== "object" || Array.isArray(request)) {
      throw new TypeError("followUp: request must be the original request's JSON object");
    }
    if (typeof correction !== "string") throw new TypeError("followUp: correction must be a string");
    if (!correction.trim()) throw new Error("followUp: correction is blank (" + JSON.stringify(correction) + "): the reader typed nothing");
    const choice = options.choice === undefined ? 0 : options.choice;
    const text = shownText(shown, choice);
    if (!text.trim()) {
      throw new Error("followUp: no text was shown (choice " + choice + "): there is no partial answer to continue from; send the corrected request as a new question instead");
    }
    return APIS[name](request, text, correction);
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
      this.received = "";
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
          if (text) this.received += text;
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

    /* A reader's control on the running stream, wherever it is produced: "pause", "resume",
     * "show_all", "rate" (with cps, characters per second) or "stop" (the cancel); applied at
     * the pacer's next decision. Resolves to the stream's state
     * ({id, live, paused, show_all, cps, shown_chars}). */
    async control(action, cps) {
      if (this.streamId === null) throw new Error("PacerStream: no stream id yet");
      const body = { action };
      if (cps !== undefined && cps !== null) body.cps = cps;
      const headers = Object.assign({ "Content-Type": "application/json" }, this.ownerHeaders());
      const response = await fetch(this.streamsUrl() + "/control", {
        method: "POST",
        headers,
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        throw new Error("PacerStream: control answered " + response.status + ": " + (await response.text()));
      }
      return response.json();
    }

    /* Stops reading here (the generation goes on for other readers, up to the orphan timeout). */
    close() {
      this.controller.abort();
    }

    /* The body that refines this request after a stop (followUp): options.shown (default
     * `received`), options.choice. */
    followUp(correction, options = {}) {
      const shown = options.shown === undefined ? this.received : options.shown;
      return followUp(this.url, this.body, shown, correction, options);
    }
  }

  PacerStream.followUp = followUp;
  root.PacerStream = PacerStream;
})(typeof window !== "undefined" ? window : globalThis);
