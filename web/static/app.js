// callbot web: small progressive enhancements; no inline scripts (the CSP forbids them).
"use strict";

document.addEventListener("submit", function (ev) {
  var form = ev.target;
  var msg = form.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) { ev.preventDefault(); }
});

function setText(id, value) {
  var el = document.getElementById(id);
  if (el && value !== undefined && value !== null) { el.textContent = String(value); }
}

// Live campaign progress: poll the JSON endpoint, update the numbers, reload once when done.
(function () {
  var card = document.getElementById("progress-card");
  if (!card) { return; }
  var url = card.getAttribute("data-url");
  var lastCounts = null;
  function refreshTable() {
    // the per-contact table, re-read from this same page (server-escaped HTML)
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("#contact-results tbody");
        var old = document.querySelector("#contact-results tbody");
        if (fresh && old) { old.replaceWith(document.importNode(fresh, true)); }
      })
      .catch(function () { /* next change retries */ });
  }
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (p) {
        if (!p) { return; }
        var bar = document.getElementById("bar");
        if (bar) { bar.setAttribute("width", Math.max(0, Math.min(100, p.percent))); }
        setText("percent", p.percent + "%");
        ["finished", "contacts", "dialled", "answered", "waiting_retry", "lines_busy"].forEach(
          function (k) { setText(k, p[k]); });
        var parts = [];
        Object.keys(p.results || {}).forEach(function (k) {
          parts.push((p.results_labels[k] || k) + " " + p.results[k]);
        });
        setText("results-line", parts.join("；"));
        var counts = [p.finished, p.dialled, p.answered, p.lines_busy].join(",");
        if (lastCounts !== null && counts !== lastCounts) { refreshTable(); }
        lastCounts = counts;
        var note = document.getElementById("window-note");
        if (note) {
          note.hidden = p.window_open || p.state !== "running";
          setText("next-open", p.next_open || "");
        }
        var pause = document.getElementById("pause-note");
        if (pause) {
          pause.hidden = !p.pause_reason;
          setText("pause-reason", p.pause_reason || "");
        }
        var st = document.getElementById("state");
        if (st) { st.textContent = p.state_label; st.className = "badge " + p.state; }
        card.setAttribute("data-percent", p.percent);
        card.setAttribute("data-state", p.state);
        if (p.state !== card.getAttribute("data-initial-state")) {
          // the buttons and the table below were drawn for the old state: offer a refresh
          var acts = document.querySelectorAll("#campaign-actions form");
          Array.prototype.forEach.call(acts, function (f) { f.hidden = true; });
          var stale = document.getElementById("stale-note");
          if (stale) { stale.hidden = false; }
        }
      })
      .catch(function () { /* keep polling */ });
  }
  tick();
  window.setInterval(tick, 2000);
})();

// "Try it" box: send a typed reply (or #digit, or empty for silence) to the dialogue engine.
(function () {
  var box = document.getElementById("tryit");
  if (!box) { return; }
  var log = document.getElementById("tryit-log");
  var input = document.getElementById("tryit-input");
  var answers = document.getElementById("tryit-answers");
  var url = box.getAttribute("data-url");
  var csrf = box.getAttribute("data-csrf");
  var state = null;
  function add(cls, text) {
    var div = document.createElement("div");
    div.className = cls;
    div.textContent = text;
    log.appendChild(div);
    log.scrollTop = log.scrollHeight;
  }
  var queue = Promise.resolve();
  var started = false;
  // replies go one after another: each needs the state the previous answer returned (typed
  // fast, a second reply sent with the old state would replay the first question)
  function send(payload) {
    queue = queue.then(function () { return post(payload); });
  }
  function post(payload) {
    payload.state = state;
    var vars = document.getElementById("tryit-vars");
    if (vars) { payload.vars = vars.value; }
    var duty = document.getElementById("tryit-duty");
    if (duty) { payload.duty = duty.value; }
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(payload)
    }).then(function (r) { return r.json(); }).then(function (res) {
      if (res.error) { add("sys", "出错：" + res.error); return; }
      state = res.state;
      (res.lines || []).forEach(function (l) { add(l.cls, l.text); });
      answers.textContent = JSON.stringify(res.answers || {}, null, 0);
      if (res.ended) {
        add("sys", "—— 通话结束（" + res.ended + "）——");
        input.disabled = true;
      }
    }).catch(function (e) { add("sys", "出错：" + e); });
  }
  document.getElementById("tryit-start").addEventListener("click", function () {
    log.textContent = ""; answers.textContent = "{}"; input.disabled = false; state = null;
    started = true;
    send({ start: true });
    input.focus();
  });
  document.getElementById("tryit-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    if (!started) { return; }
    var text = input.value;
    add("me", text === "" ? "（沉默）" : text);
    input.value = "";
    send({ reply: text });
  });
})();

// 待处理: the count on every page, and the list itself while calls run (re-read from the page).
(function () {
  var nav = document.getElementById("alerts-nav");
  if (!nav) { return; }
  var url = nav.getAttribute("data-url");
  var live = document.getElementById("alerts-live");
  var version = live ? live.getAttribute("data-version") : null;
  function refreshList() {
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["#alerts-table tbody", "#delivery-banner", "#open-count", "#urgent-count"].forEach(
          function (sel) {
            var fresh = doc.querySelector(sel);
            var old = document.querySelector(sel);
            if (fresh && old) { old.replaceWith(document.importNode(fresh, true)); }
          });
        var freshLive = doc.getElementById("alerts-live");
        if (freshLive && live) { live.setAttribute("data-version", freshLive.getAttribute("data-version")); }
      })
      .catch(function () { /* the next change retries */ });
  }
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) { return; }
        var badge = document.getElementById("alert-badge");
        if (badge) {
          badge.textContent = String(s.open);
          badge.hidden = !s.open;
          badge.className = "count" + (s.urgent ? " urgent" : "");
        }
        if (live && s.version !== version) {
          version = s.version;
          refreshList();
        }
      })
      .catch(function () { /* keep polling */ });
  }
  window.setInterval(tick, 3000);
})();
