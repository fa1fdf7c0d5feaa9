/* Digit reader: send an image (picked, dropped, pasted or drawn) to POST /predict, or,
 * for a model that takes features, rows of numbers as {"instances": [[...], ...]}.
 *
 * The model's input kind comes with the /warmup answer ("input": {"kind": ...}; an older
 * API leaves it out, which means image). Until it is known the image UI is shown, and an
 * image chosen meanwhile waits for the warm-up like any prediction: it is not sent if the
 * model turns out to take features.
 *
 * No build step and no external resources. The API base URL is, in order:
 * window.API_BASE (from the optional config.js), the ?api= query parameter,
 * or the page's own origin.
 */
(function () {
  "use strict";

  var MAX_IMAGE_BYTES = 4 * 1024 * 1024; // the API's limit on the decoded image
  var SHRINK_MAX_SIDE = 1600; // larger photos are scaled down before sending
  var REQUEST_TIMEOUT_MS = 35000; // API Gateway gives up after 30 s
  // A prediction chosen while this page's warm-up is in flight is held until the warm-up
  // answers, for at most this long after the warm-up was sent: the warm-up call itself is
  // abandoned then (the same budget as any call), so no answer can come later, and sending
  // any sooner would cold-start a second, billed execution environment while the first may
  // still be loading the model legitimately. The timer makes the bound hold however the
  // warm-up call ends.
  var WARMUP_HOLD_MS = REQUEST_TIMEOUT_MS;
  var PROGRESS_CEILING = 95; // the bar never passes this before the answer comes
  var PROGRESS_RATE = 2.3; // at t = expected duration the bar shows about 85 %
  var WARM_GUESS_MS = 1500; // expected /predict duration before any was measured
  var COLD_GUESS_MS = 6000; // expected duration while the model is still loading
  var BRUSH = 22; // stroke width on the 280 px canvas

  var $ = function (id) { return document.getElementById(id); };
  var el = {
    title: $("page-title"),
    status: $("status"),
    retry: $("retry-warmup"),
    endpoint: $("endpoint"),
    pickCard: $("pick-card"),
    drawCard: $("draw-card"),
    featuresCard: $("features-card"),
    featuresAbout: $("features-about"),
    featuresHelp: $("features-help"),
    instances: $("instances"),
    predictRows: $("predict-rows"),
    imageAnswer: $("image-answer"),
    rowsAnswer: $("rows-answer"),
    rows: $("rows"),
    dropzone: $("dropzone"),
    file: $("file"),
    topK: $("top-k"),
    pad: $("pad"),
    read: $("read"),
    clear: $("clear"),
    progress: $("progress"),
    progressFill: $("progress-fill"),
    placeholder: $("placeholder"),
    error: $("error"),
    errorTitle: $("error-title"),
    errorHint: $("error-hint"),
    errorDetail: $("error-detail"),
    result: $("result"),
    resultCard: $("result-title").parentNode,
    preview: $("preview"),
    topLabel: $("top-label"),
    topScore: $("top-score"),
    predictions: $("predictions"),
    release: $("release"),
    model: $("model"),
    coldStart: $("cold-start"),
    waiting: $("waiting"),
    timings: $("timings"),
    roundTrip: $("round-trip")
  };

  // ---------------------------------------------------------------- API base

  function apiBase() {
    var candidates = [];
    if (typeof window.API_BASE === "string" && window.API_BASE.trim()) {
      candidates.push(window.API_BASE.trim());
    }
    try {
      var fromQuery = new URLSearchParams(window.location.search).get("api");
      if (fromQuery && fromQuery.trim()) candidates.push(fromQuery.trim());
    } catch (e) { /* no URLSearchParams: fall through to the origin */ }
    if (window.location.origin && /^https?:/.test(window.location.origin)) {
      candidates.push(window.location.origin);
    }
    for (var i = 0; i < candidates.length; i++) {
      try {
        var url = new URL(candidates[i], window.location.href);
        if (url.protocol === "http:" || url.protocol === "https:") {
          return (url.origin + url.pathname).replace(/\/+$/, "");
        }
      } catch (e) { /* not a URL: try the next one */ }
    }
    return "";
  }

  var API = apiBase();
  el.endpoint.textContent = API || "(not set: add ?api=https://… to this page's address)";

  // ---------------------------------------------------------------- errors in words

  var HEADLINES = {
    400: "The request was not understood.",
    401: "The endpoint refused the request.",
    403: "The endpoint refused the request.",
    404: "The endpoint does not know this address.",
    413: "The image is too large to send.",
    415: "This kind of file cannot be read.",
    422: "The image could not be read.",
    429: "Too many requests right now.",
    500: "The server failed unexpectedly.",
    502: "The server failed while reading the image.",
    503: "The digit reader is not available right now.",
    504: "The server took too long to answer."
  };
  var HINTS = {
    413: "Send an image under 4 MB, or a smaller photo.",
    415: "Choose a picture file: PNG, JPEG, WebP, GIF, BMP or TIFF.",
    422: "Choose another picture, or draw the digit instead.",
    429: "Wait a few seconds and try again.",
    502: "Try again in a moment.",
    503: "Try again in a minute.",
    504: "Try again: the next attempt is usually faster."
  };

  // The same statuses, for a request of rows of features.
  var FEATURE_HEADLINES = {
    400: "The rows were not understood.",
    413: "Too many rows to send at once.",
    415: "The model did not take these rows.",
    422: "The rows could not be read.",
    502: "The server failed while predicting."
  };
  var FEATURE_HINTS = {
    400: "Send JSON shaped like {\"instances\": [[number, …], …]}.",
    413: "Send fewer rows.",
    415: "The model may have changed: reload the page.",
    422: "Every row needs the same count of numbers, and nothing but numbers."
  };

  function sentence(text) {
    text = String(text || "").trim();
    if (!text) return "";
    text = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?…]$/.test(text) ? text : text + ".";
  }

  /** An Error for people: what happened (title), what to do (hint), and the server's words. */
  function problem(title, hint, detail, status, code) {
    var err = new Error(title);
    err.title = title;
    err.hint = hint || "";
    err.detail = detail || "";
    err.status = status || 0;
    err.code = code || "";
    return err;
  }

  /** Turn an HTTP error response (our JSON, API Gateway's JSON, or anything) into a problem.
   * For rows of features (`kind`), the server's code and message are shown as they came. */
  function httpProblem(status, body, statusText, kind) {
    var message = "";
    var code = "";
    if (body && typeof body === "object") {
      if (body.error && typeof body.error === "object") {
        message = body.error.message || "";
        code = body.error.code || "";
      } else if (typeof body.message === "string") {
        message = body.message; // API Gateway's own errors: {"message": "Too Many Requests"}
      }
    }
    var features = kind === "features";
    var title = (features && FEATURE_HEADLINES[status]) || HEADLINES[status] ||
      (status >= 500 ? "The server failed." : "The request was refused.");
    var hint = (features && FEATURE_HINTS[status]) || HINTS[status] || "";
    if (features && status === 422 && model.features) {
      hint = "Every row needs " + model.features + " numbers, and nothing but numbers.";
    } else if (features && status === 413 && model.maxRows) {
      hint = "Send at most " + model.maxRows + " rows at once.";
    }
    var detail;
    if (features && message) {
      detail = (code ? code + ": " : "") + String(message);
    } else {
      detail = message ? sentence(message)
        : "The endpoint answered " + status + (statusText ? " " + statusText : "") + ".";
    }
    return problem(title, hint, detail, status, code);
  }

  function networkProblem() {
    return problem(
      "The endpoint cannot be reached.",
      "Check your connection (or the address), then try again.",
      "Nothing answered at " + (API || "the API address") + ".",
      0,
      "network"
    );
  }

  function timeoutProblem() {
    return problem(
      "The endpoint took too long to answer.",
      "Try again: the next attempt is usually faster.",
      "No answer after " + Math.round(REQUEST_TIMEOUT_MS / 1000) + " seconds.",
      0,
      "timeout"
    );
  }

  /** POST to the API; resolve with {body, ms} for a 2xx JSON answer, reject with a problem. */
  function call(path, options, controller) {
    if (!API) {
      return Promise.reject(problem(
        "No endpoint is set.",
        "Open this page with ?api=https://… in its address, or serve it next to the API."
      ));
    }
    controller = controller || new AbortController();
    var timedOut = false;
    var timer = setTimeout(function () { timedOut = true; controller.abort(); }, REQUEST_TIMEOUT_MS);
    var started = performance.now();
    var init = { method: options.method || "POST", signal: controller.signal, mode: "cors",
      credentials: "omit", cache: "no-store" };
    if (options.body !== undefined) init.body = options.body;
    if (options.contentType) init.headers = { "Content-Type": options.contentType };
    return fetch(API + path, init).then(function (response) {
      return response.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
        var ms = performance.now() - started;
        if (!response.ok) {
          throw httpProblem(response.status, body, response.statusText, options.kind);
        }
        if (!body || typeof body !== "object") {
          throw problem("The endpoint gave an answer this page cannot read.", "Try again later.",
            "Expected JSON, got " + (text ? text.length + " bytes of something else" : "nothing") + ".",
            response.status, "bad_answer");
        }
        return { body: body, ms: ms };
      });
    }, function (err) {
      if (err && err.name === "AbortError") {
        throw timedOut ? timeoutProblem() : problem("Cancelled.", "", "", 0, "cancelled");
      }
      throw networkProblem();
    }).finally(function () { clearTimeout(timer); });
  }

  // ---------------------------------------------------------------- status and warm-up

  var warm = { pending: false, done: false, release: "", sentAt: 0, waiters: [] };
  var WARMING = "Warming up… (loading the model while you choose an image)";
  // What the model takes, from the /warmup answer: kind "" (not known yet), "image" or
  // "features" (with the row width, the features' names, the row limit and example rows).
  var model = { kind: "", name: "", features: 0, names: [], maxRows: 0 };
  var IMAGE_TITLE = el.title.textContent;
  var IMAGE_PLACEHOLDER = el.placeholder.textContent;
  var FEATURES_TITLE = "Predict from features";
  var FEATURES_PLACEHOLDER = "Nothing predicted yet: press “Predict” to send the rows above.";
  var MAX_NAMES_SHOWN = 30;

  function plural(count, one, many) {
    return count + " " + (count === 1 ? one : many);
  }

  /** {"instances": rows}, one row a line, so that rows are easy to tell apart and edit. */
  function instancesText(rows) {
    if (!rows.length) return '{"instances": []}';
    var lines = rows.map(function (row) {
      return "    [" + row.map(function (v) { return JSON.stringify(v); }).join(", ") + "]";
    });
    return '{\n  "instances": [\n' + lines.join(",\n") + "\n  ]\n}";
  }

  /** Show the UI for what the model takes: `body` is the /warmup answer. */
  function applyInput(body) {
    var input = body && body.input && typeof body.input === "object" ? body.input : {};
    var kind = input.kind === "features" ? "features" : "image"; // no "input": an older API
    var before = model.kind;
    model.kind = kind;
    model.name = typeof body.model === "string" ? body.model : "";
    document.body.setAttribute("data-input-kind", kind);
    el.pickCard.hidden = kind !== "image";
    el.drawCard.hidden = kind !== "image";
    el.featuresCard.hidden = kind !== "features";
    el.title.textContent = kind === "features" ? FEATURES_TITLE : IMAGE_TITLE;
    document.title = el.title.textContent;
    if (kind !== "features") {
      model.features = 0;
      model.names = [];
      model.maxRows = 0;
      if (before === "features") el.placeholder.textContent = IMAGE_PLACEHOLDER;
      return;
    }
    var rows = Array.isArray(input.example)
      ? input.example.filter(function (row) { return Array.isArray(row); }) : [];
    var names = Array.isArray(input.names) ? input.names.map(String) : [];
    var width = Number(input.features);
    if (!(width > 0)) width = names.length || (rows.length ? rows[0].length : 0);
    model.features = width;
    model.names = names;
    model.maxRows = Number(input.max_rows) > 0 ? Number(input.max_rows) : 0;
    el.featuresAbout.textContent = (model.name ? "Model " + model.name : "This model") +
      " takes " + plural(width, "feature", "features") + " per row" +
      (model.maxRows ? ", at most " + plural(model.maxRows, "row", "rows") + " per request." : ".");
    var help = 'JSON: {"instances": [[' + plural(width, "number", "numbers") +
      "], …]}, one row per prediction. Ctrl+Enter also predicts.";
    if (names.length) {
      var shown = names.slice(0, MAX_NAMES_SHOWN).join(", ");
      if (names.length > MAX_NAMES_SHOWN) {
        shown += " and " + (names.length - MAX_NAMES_SHOWN) + " more";
      }
      help += " The features, in order: " + shown + ".";
    }
    el.featuresHelp.textContent = help;
    if (before !== "features" || !el.instances.value.trim()) {
      if (!rows.length && width > 0) {
        rows = [Array.apply(null, Array(width)).map(function () { return 0; })];
      }
      el.instances.value = instancesText(rows);
    }
    el.placeholder.textContent = FEATURES_PLACEHOLDER;
  }

  function setStatus(text, state) {
    el.status.textContent = text;
    el.status.setAttribute("data-state", state);
  }

  function releaseLine(body, prefix) {
    var text = prefix + "release " + (body.release || "unknown");
    if (body.model) text += ", model " + body.model;
    return text;
  }

  function warmup() {
    warm.pending = true;
    warm.sentAt = performance.now();
    el.retry.hidden = true;
    setStatus(WARMING, "busy");
    call("/warmup", { method: "POST" }).then(function (answer) {
      var body = answer.body;
      warm.done = true;
      warm.release = body.release || "";
      applyInput(body);
      var how = body.cold_start ? "cold start" : "already warm";
      var init = body.timing_ms && typeof body.timing_ms.init === "number" && body.cold_start
        ? ", model loaded in " + formatMs(body.timing_ms.init) : "";
      setStatus(releaseLine(body, "Ready: ") + " (" + how + init + ")", "ready");
    }, function (err) {
      setStatus(["Not ready:", err.title, err.detail, err.hint].join(" ").trim(), "error");
      el.retry.hidden = false;
    }).finally(function () {
      warm.pending = false;
      var waiters = warm.waiters;
      warm.waiters = [];
      waiters.forEach(function (release) { release(); });
    });
  }

  /** Resolve once this page's warm-up has answered (at once if none is in flight), or when
   * WARMUP_HOLD_MS have passed since it was sent, whichever comes first. */
  function warmedUp() {
    if (!warm.pending) return Promise.resolve();
    return new Promise(function (resolve) {
      var left = warm.sentAt + WARMUP_HOLD_MS - performance.now();
      var timer = setTimeout(release, Math.max(0, left));
      function release() {
        clearTimeout(timer);
        resolve();
      }
      warm.waiters.push(release);
    });
  }

  el.retry.addEventListener("click", warmup);

  // ---------------------------------------------------------------- progress bar

  var progress = { expectedMs: WARM_GUESS_MS, frame: 0, started: 0, shown: -1, waiting: false };
  el.progress.setAttribute("data-expected-ms", String(progress.expectedMs));

  function showProgress(percent, state) {
    var value = Math.max(0, Math.min(100, percent));
    el.progressFill.style.width = value.toFixed(1) + "%";
    var rounded = Math.floor(value);
    if (rounded !== progress.shown) {
      progress.shown = rounded;
      el.progress.setAttribute("aria-valuenow", String(rounded));
      el.progress.setAttribute("aria-valuetext", state === "busy" ? (progress.waiting
        ? "Waiting for the model to warm up… "
        : model.kind === "features" ? "Predicting… " : "Reading… ") + rounded + "%" :
        state === "done" ? "Done" : state === "failed" ? "Failed" : rounded + "%");
    }
    el.progress.setAttribute("data-state", state);
  }

  /** Ease-out toward the ceiling: fast at first, slower and slower, never reaching it. */
  function easedPercent(elapsedMs, expectedMs) {
    return PROGRESS_CEILING * (1 - Math.exp(-PROGRESS_RATE * elapsedMs / expectedMs));
  }

  function startProgress() {
    cancelAnimationFrame(progress.frame);
    var expected = progress.expectedMs;
    if (!warm.done) expected = Math.max(expected, COLD_GUESS_MS);
    progress.started = performance.now();
    progress.shown = -1;
    showProgress(0, "busy");
    var tick = function () {
      showProgress(easedPercent(performance.now() - progress.started, expected), "busy");
      progress.frame = requestAnimationFrame(tick);
    };
    progress.frame = requestAnimationFrame(tick);
  }

  function finishProgress(ok, measuredMs, cold) {
    cancelAnimationFrame(progress.frame);
    showProgress(100, ok ? "done" : "failed");
    if (ok && !cold && measuredMs > 0) {
      // The next request is expected to take as long as this one (a cold start is not typical).
      progress.expectedMs = Math.max(200, Math.min(30000, measuredMs));
      el.progress.setAttribute("data-expected-ms", String(Math.round(progress.expectedMs)));
    }
  }

  function resetProgress() {
    cancelAnimationFrame(progress.frame);
    progress.shown = -1;
    showProgress(0, "idle");
  }

  // ---------------------------------------------------------------- results

  function formatMs(ms) {
    if (typeof ms !== "number" || !isFinite(ms)) return "?";
    return ms >= 1000 ? (ms / 1000).toFixed(2) + " s" : Math.round(ms) + " ms";
  }

  function percent(score) {
    var value = Math.max(0, Math.min(1, Number(score) || 0)) * 100;
    return (value >= 10 || value === 0 ? value.toFixed(0) : value.toFixed(1)) + "%";
  }

  /** On a phone the answer is below the drawing: bring it into view. */
  function reveal() {
    var rect = el.resultCard.getBoundingClientRect();
    if (rect.top > window.innerHeight - 80 && el.resultCard.scrollIntoView) {
      var still = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      el.resultCard.scrollIntoView({ block: "start", behavior: still ? "auto" : "smooth" });
    }
  }

  function showError(err) {
    el.result.hidden = true;
    el.placeholder.hidden = true;
    el.errorTitle.textContent = err.title || "Something went wrong.";
    el.errorHint.textContent = err.hint || "";
    el.errorHint.hidden = !err.hint;
    el.errorDetail.textContent = err.detail ? "Details: " + err.detail : "";
    el.errorDetail.hidden = !err.detail;
    el.error.hidden = false;
    reveal();
  }

  function showResult(body, roundTripMs, kind) {
    el.error.hidden = true;
    el.placeholder.hidden = true;
    el.imageAnswer.hidden = kind === "features";
    el.rowsAnswer.hidden = kind !== "features";
    if (kind === "features") showRows(body);
    else showGuesses(body);
    el.release.textContent = body.release || "unknown";
    el.model.textContent = body.model || "unknown";
    el.coldStart.textContent = body.cold_start
      ? "yes: this request loaded the model" : "no: the model was already loaded";
    var t = body.timing_ms || {};
    // The steps are parts of the total (a model load included), so they are shown inside it.
    var parts = [];
    if (t.init) parts.push("model load " + formatMs(t.init));
    if (kind !== "features" || typeof t.decode === "number") {
      parts.push("decode " + formatMs(t.decode)); // an image's; rows of features have none
    }
    parts.push("inference " + formatMs(t.inference));
    el.timings.textContent = "total " + formatMs(t.total) + " (" + parts.join(", ") + ")";
    el.roundTrip.textContent = formatMs(roundTripMs);
    el.result.hidden = false;
    reveal();
    if (body.release) {
      warm.done = true;
      if (body.release !== warm.release) {
        warm.release = body.release;
        setStatus(releaseLine(body, "Ready: ") + (body.cold_start ? " (cold start)" : ""), "ready");
        el.retry.hidden = true; // a failed warm-up needs no retry once a prediction was answered
      }
    }
  }

  /** A number as people read it: at most 6 significant digits, no trailing zeros. */
  function formatNumber(value) {
    var n = Number(value);
    if (typeof value !== "number" || !isFinite(n)) return String(value);
    return Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(6)));
  }

  function formatValue(value) {
    if (value !== null && typeof value === "object") return JSON.stringify(value);
    return formatNumber(value);
  }

  /** One row's answer in words: the top label and its score (a classifier's list of
   * {label, score}, best first), or the value or values of a regression. */
  function rowAnswer(answer) {
    var top = Array.isArray(answer) ? answer[0] : null;
    if (top && typeof top === "object" && !Array.isArray(top) && "label" in top) {
      var score = "score" in top ? percent(top.score) + " sure" : "";
      return { label: String(top.label), score: score };
    }
    if (Array.isArray(answer)) {
      return { label: answer.length ? answer.map(formatValue).join(", ") : "nothing", score: "" };
    }
    return { label: formatValue(answer), score: "" };
  }

  function showRows(body) {
    var predictions = Array.isArray(body.predictions) ? body.predictions : [];
    el.rows.textContent = "";
    predictions.forEach(function (answer, index) {
      var said = rowAnswer(answer);
      var li = document.createElement("li");
      li.className = "row";
      var name = document.createElement("span");
      name.className = "row-name";
      name.textContent = "Row " + (index + 1) + ": ";
      var label = document.createElement("strong");
      label.className = "row-label";
      label.textContent = said.label;
      li.appendChild(name);
      li.appendChild(label);
      if (said.score) {
        var score = document.createElement("span");
        score.className = "row-score";
        score.textContent = " (" + said.score + ")";
        li.appendChild(score);
      }
      el.rows.appendChild(li);
    });
    if (!predictions.length) {
      var none = document.createElement("li");
      none.className = "row";
      none.textContent = "No rows were predicted.";
      el.rows.appendChild(none);
    }
  }

  function showGuesses(body) {
    var predictions = Array.isArray(body.predictions) ? body.predictions : [];
    el.predictions.textContent = "";
    predictions.forEach(function (p, index) {
      var li = document.createElement("li");
      li.className = "prediction" + (index === 0 ? " best" : "");
      var label = document.createElement("span");
      label.className = "label";
      label.textContent = String(p.label);
      var bar = document.createElement("span");
      bar.className = "bar";
      bar.setAttribute("aria-hidden", "true");
      var fill = document.createElement("span");
      fill.className = "bar-fill";
      fill.style.width = (Math.max(0, Math.min(1, Number(p.score) || 0)) * 100).toFixed(1) + "%";
      bar.appendChild(fill);
      var score = document.createElement("span");
      score.className = "score";
      score.textContent = percent(p.score);
      li.appendChild(label);
      li.appendChild(bar);
      li.appendChild(score);
      el.predictions.appendChild(li);
    });
    if (predictions.length) {
      el.topLabel.textContent = String(predictions[0].label);
      el.topScore.textContent = "(" + percent(predictions[0].score) + " sure)";
    } else {
      el.topLabel.textContent = "nothing";
      el.topScore.textContent = "";
    }
  }

  var previewUrl = "";
  function setPreview(blob) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = "";
    el.preview.hidden = true;
    if (blob && /^image\//.test(blob.type || "")) {
      previewUrl = URL.createObjectURL(blob);
      el.preview.src = previewUrl;
      el.preview.hidden = false;
    }
  }
  el.preview.addEventListener("error", function () { el.preview.hidden = true; });

  // ---------------------------------------------------------------- predict

  var current = { seq: 0, controller: null };

  function topK() {
    var value = parseInt(el.topK.value, 10);
    if (!isFinite(value)) value = 5;
    value = Math.max(1, Math.min(20, value));
    el.topK.value = String(value);
    return value;
  }

  /** Say (or stop saying) that the request waits for the model to warm up before it is sent;
   * `what` is what waits ("your image is", "your rows are"). */
  function showWaiting(on, what) {
    var was = progress.waiting;
    progress.waiting = on;
    progress.shown = -1; // the bar's spoken text changes with it
    el.waiting.hidden = !on;
    if (on) {
      el.waiting.textContent = "Waiting for the model to warm up: " + what +
        " sent as soon as it is ready.";
      el.placeholder.hidden = true;
      setStatus("Waiting for the model to warm up… " + what + " sent as soon as it is ready.",
        "busy");
    } else if (was && warm.pending) {
      setStatus(WARMING, "busy"); // the hold timed out: the request is sent, the warm-up goes on
    }
  }

  function wrongKind(kind) {
    return kind === "image"
      ? problem("This model reads rows of features, not images.",
        "Your image was not sent. Edit the rows in the box, then press “Predict”.",
        "", 0, "wrong_input_kind")
      : problem("This model reads images, not rows of features.",
        "Your rows were not sent. Choose, drop, paste or draw an image instead.",
        "", 0, "wrong_input_kind");
  }

  /** Send one prediction request of `kind` ("image" or "features"); a newer one cancels it.
   * `prepared` resolves with {path, body, contentType} (or rejects with a problem). */
  function submit(kind, prepared, sourceNote) {
    if (current.controller) current.controller.abort();
    var seq = ++current.seq;
    var controller = new AbortController();
    current.controller = controller;
    el.error.hidden = true;
    el.result.setAttribute("aria-busy", "true");
    el.result.classList.add("stale");
    var what = kind === "features" ? "your rows are" : "your image is";
    showWaiting(warm.pending, what);
    startProgress();
    return prepared
      .then(function (request) {
        // Sent during the warm-up, it would not reach the environment being warmed: that one
        // is busy loading the model, so the platform would cold-start another to answer it.
        return warmedUp().then(function () {
          if (seq !== current.seq) throw problem("Cancelled.", "", "", 0, "cancelled");
          showWaiting(false, what);
          // The warm-up may have told what the model takes: never send it the other kind.
          if (model.kind && model.kind !== kind) throw wrongKind(kind);
          return call(request.path, { body: request.body, contentType: request.contentType,
            kind: kind }, controller);
        });
      })
      .then(function (answer) {
        if (seq !== current.seq) return;
        finishProgress(true, answer.ms, !!answer.body.cold_start);
        showResult(answer.body, answer.ms, kind);
        if (sourceNote) el.roundTrip.textContent += " (" + sourceNote + ")";
      }, function (err) {
        if (seq !== current.seq || err.code === "cancelled") return;
        finishProgress(false, 0, false);
        showError(err);
      })
      .finally(function () {
        if (seq !== current.seq) return;
        showWaiting(false, what);
        current.controller = null;
        el.result.removeAttribute("aria-busy");
        el.result.classList.remove("stale");
      });
  }

  function predict(blob, sourceNote) {
    setPreview(blob);
    var type = blob.type || "application/octet-stream";
    var k = topK();
    var prepared = bytesOf(blob).then(function (bytes) {
      return { path: "/predict?top_k=" + k, body: bytes, contentType: type };
    }, function () {
      throw problem("The file could not be read.",
        "Choose it again, or pick another file.",
        "Your device did not let the browser open it.", 0, "unreadable_file");
    });
    return submit("image", prepared, sourceNote);
  }

  /** Send the rows in the box as they are: the API checks them and says what is wrong. */
  function predictRows() {
    setPreview(null);
    var text = el.instances.value;
    if (!text.trim()) {
      showError(problem("There are no rows to send.",
        "Type or paste rows like {\"instances\": [[number, …]]} in the box."));
      return;
    }
    submit("features", Promise.resolve({ path: "/predict", body: text,
      contentType: "application/json" }));
  }

  el.predictRows.addEventListener("click", predictRows);
  el.instances.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      predictRows();
    }
  });

  /** The bytes of a file, read before sending: a file that cannot be read is then said so,
   * instead of failing inside fetch() like an unreachable endpoint. */
  function bytesOf(blob) {
    if (typeof blob.arrayBuffer === "function") return blob.arrayBuffer();
    return new Promise(function (resolve, reject) {
      var reader = new FileReader();
      reader.onload = function () { resolve(reader.result); };
      reader.onerror = function () { reject(reader.error); };
      reader.readAsArrayBuffer(blob);
    });
  }

  /** Scale a too-large photo down in the browser so it fits the API's limit. */
  function shrink(file) {
    if (typeof createImageBitmap !== "function") return Promise.resolve(null);
    return createImageBitmap(file).then(function (bitmap) {
      var scale = Math.min(1, SHRINK_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
      var canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(bitmap.width * scale));
      canvas.height = Math.max(1, Math.round(bitmap.height * scale));
      var ctx = canvas.getContext("2d");
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      return new Promise(function (resolve) { canvas.toBlob(resolve, "image/jpeg", 0.9); });
    }).catch(function () { return null; });
  }

  function sendFile(file) {
    if (!file) return;
    if (model.kind === "features") {
      showError(wrongKind("image"));
      return;
    }
    if (file.size > MAX_IMAGE_BYTES && /^image\//.test(file.type || "")) {
      shrink(file).then(function (smaller) {
        if (smaller && smaller.size <= MAX_IMAGE_BYTES) {
          predict(smaller, "photo shrunk from " + (file.size / 1048576).toFixed(1) + " MB");
        } else {
          predict(file);
        }
      });
      return;
    }
    predict(file);
  }

  function firstFile(list) {
    if (!list) return null;
    for (var i = 0; i < list.length; i++) {
      var item = list[i];
      if (item && typeof item.getAsFile === "function") {
        if (item.kind === "file") {
          var f = item.getAsFile();
          if (f) return f;
        }
      } else if (item) {
        return item;
      }
    }
    return null;
  }

  // Pick
  el.file.addEventListener("change", function () {
    var file = el.file.files && el.file.files[0];
    if (file) sendFile(file);
    el.file.value = ""; // picking the same file again sends it again
  });

  // Drop (anywhere on the page; the drop zone lights up)
  var dragDepth = 0;
  document.addEventListener("dragenter", function (e) {
    e.preventDefault();
    dragDepth++;
    el.dropzone.classList.add("dragging");
  });
  document.addEventListener("dragleave", function () {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) el.dropzone.classList.remove("dragging");
  });
  document.addEventListener("dragover", function (e) {
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("drop", function (e) {
    dragDepth = 0;
    el.dropzone.classList.remove("dragging");
    var dt = e.dataTransfer;
    var file = dt && (firstFile(dt.files) || firstFile(dt.items));
    // Text dropped into the rows box is the browser's to insert.
    if (!file && model.kind === "features") return;
    e.preventDefault();
    if (file) sendFile(file);
    else showError(problem("Nothing to read in what was dropped.", "Drop an image file."));
  });

  // Paste
  document.addEventListener("paste", function (e) {
    var target = e.target;
    var typing = target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA");
    // Rows pasted into the box are the browser's to insert, even when the clipboard (say, a
    // spreadsheet's) holds a picture of them too.
    if (typing && model.kind === "features") return;
    var data = e.clipboardData;
    var file = data && (firstFile(data.files) || firstFile(data.items));
    if (file) {
      e.preventDefault();
      sendFile(file);
    } else if (!typing && model.kind !== "features") {
      showError(problem("The clipboard holds no image.",
        "Copy an image (not its address), then paste it here."));
    }
  });

  // ---------------------------------------------------------------- drawing pad

  var ctx = el.pad.getContext("2d");
  var pen = { down: false, id: null, x: 0, y: 0, ink: false };

  function clearPad() {
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, el.pad.width, el.pad.height);
    ctx.restore();
    pen.ink = false;
  }

  function padPoint(clientX, clientY) {
    var rect = el.pad.getBoundingClientRect();
    return {
      x: (clientX - rect.left) * (el.pad.width / rect.width),
      y: (clientY - rect.top) * (el.pad.height / rect.height)
    };
  }

  function stroke(from, to) {
    ctx.strokeStyle = "#000";
    ctx.fillStyle = "#000";
    ctx.lineWidth = BRUSH;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
    pen.ink = true;
  }

  function penDown(clientX, clientY) {
    var p = padPoint(clientX, clientY);
    pen.down = true;
    pen.x = p.x;
    pen.y = p.y;
    stroke(p, p); // a tap leaves a dot
  }

  function penMove(clientX, clientY) {
    if (!pen.down) return;
    var p = padPoint(clientX, clientY);
    stroke({ x: pen.x, y: pen.y }, p);
    pen.x = p.x;
    pen.y = p.y;
  }

  function penUp() {
    pen.down = false;
    pen.id = null;
  }

  if (window.PointerEvent) {
    el.pad.addEventListener("pointerdown", function (e) {
      if (e.button !== undefined && e.button > 0) return;
      e.preventDefault();
      pen.id = e.pointerId;
      try { el.pad.setPointerCapture(e.pointerId); } catch (err) { /* not capturable */ }
      penDown(e.clientX, e.clientY);
    });
    el.pad.addEventListener("pointermove", function (e) {
      if (!pen.down || e.pointerId !== pen.id) return;
      e.preventDefault();
      var events = typeof e.getCoalescedEvents === "function" ? e.getCoalescedEvents() : [];
      if (!events.length) events = [e];
      events.forEach(function (c) { penMove(c.clientX, c.clientY); });
    });
    ["pointerup", "pointercancel", "lostpointercapture"].forEach(function (name) {
      el.pad.addEventListener(name, function (e) { if (e.pointerId === pen.id) penUp(); });
    });
  } else {
    // Older browsers: mouse and touch events.
    el.pad.addEventListener("mousedown", function (e) { penDown(e.clientX, e.clientY); });
    window.addEventListener("mousemove", function (e) { penMove(e.clientX, e.clientY); });
    window.addEventListener("mouseup", penUp);
    el.pad.addEventListener("touchstart", function (e) {
      e.preventDefault();
      var t = e.changedTouches[0];
      penDown(t.clientX, t.clientY);
    }, { passive: false });
    el.pad.addEventListener("touchmove", function (e) {
      e.preventDefault();
      var t = e.changedTouches[0];
      penMove(t.clientX, t.clientY);
    }, { passive: false });
    el.pad.addEventListener("touchend", penUp);
    el.pad.addEventListener("touchcancel", penUp);
  }

  el.clear.addEventListener("click", clearPad);

  el.read.addEventListener("click", function () {
    if (!pen.ink) {
      showError(problem("The drawing is empty.", "Draw a digit in the white square first."));
      return;
    }
    el.pad.toBlob(function (blob) {
      if (blob) predict(blob);
      else showError(problem("The drawing could not be turned into an image.", "Try again."));
    }, "image/png");
  });

  // ---------------------------------------------------------------- start

  clearPad();
  resetProgress();
  warmup();
})();
