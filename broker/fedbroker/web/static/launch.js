// The launch page: follows /build's event stream, explains where the launch runs, then redirects.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var config = JSON.parse($("launch-config").textContent);
  var PROGRESS = { waiting: 8, fetching: 22, building: 45, pushing: 65, built: 75, launching: 88, ready: 100 };
  var ORDER = ["waiting", "fetching", "building", "pushing", "launching", "ready"];
  var WORDS = {
    waiting: "Waiting for a member to take the launch…", fetching: "Fetching the repository…",
    building: "Building the environment…", pushing: "Storing the built image…", built: "Image built.",
    launching: "Starting your server…", ready: "Your server is ready.", failed: "The launch failed."
  };
  var state = { member: null, finished: false, explained: {} };

  function setPhase(phase) {
    var bar = $("bar");
    var percent = PROGRESS[phase];
    if (percent !== undefined) {
      $("bar-fill").style.width = percent + "%";
      bar.setAttribute("aria-valuenow", String(percent));
    }
    var at = ORDER.indexOf(phase === "built" ? "pushing" : phase);
    if (at < 0) { return; }
    document.querySelectorAll("#phases li").forEach(function (li, i) {
      li.classList.toggle("done", i < at || phase === "ready");
      li.classList.toggle("current", i === at && phase !== "ready");
    });
  }

  function log(text) {
    if (!text) { return; }
    var el = $("log");
    var atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    el.textContent += text.endsWith("\n") ? text : text + "\n";
    if (atBottom) { el.scrollTop = el.scrollHeight; }
  }

  function costTerms(parts) {
    var dl = $("serving-costs");
    dl.textContent = "";
    Object.keys(parts || {}).forEach(function (name) {
      var wrap = document.createElement("div");
      var dt = document.createElement("dt");
      var dd = document.createElement("dd");
      dt.textContent = name.replace("_", " ");
      dd.textContent = Number(parts[name]).toFixed(1) + " s";
      wrap.append(dt, dd);
      dl.appendChild(wrap);
    });
  }

  function getJson(url, fallback) {
    return fetch(url).then(function (r) { return r.ok ? r.json() : fallback; }).catch(function () { return fallback; });
  }

  // The routing decision as it stands before the launch: the same inputs give the real
  // decision, which the launch itself then changes (it adds load), so ask first.
  var beforeLaunch = getJson(config.route_url, { candidates: [] });

  function candidateFor(decision, memberId) {
    return decision.candidates.filter(function (c) { return c.member_id === memberId; })[0];
  }

  // Why this member: the decision's reason and cost parts for it, and its name and place.
  function explain(memberId, afterFailover) {
    var members = getJson("/api/v1/federation", { members: [] });
    Promise.all([members, beforeLaunch]).then(function (answers) {
      var cand = candidateFor(answers[1], memberId);
      // Rank 1 before the launch is the member the broker chose; anything else is asked afresh.
      var fresh = cand && cand.rank === 1 ? Promise.resolve(cand)
        : getJson(config.route_url, { candidates: [] }).then(function (d) { return candidateFor(d, memberId); });
      return fresh.then(function (c) { return [answers[0], c]; });
    }).then(function (answers) {
      if (state.member !== memberId) { return; }
      var info = answers[0].members.filter(function (m) { return m.id === memberId; })[0] || {};
      var cand = answers[1];
      var where = [info.location && info.location.region, info.location && info.location.country].filter(Boolean).join(", ");
      $("serving-member").textContent = "Served by " + (info.display_name || memberId) +
        (info.display_name && info.display_name !== memberId ? " (" + memberId + ")" : "") + (where ? " in " + where : "") + ".";
      var reason = cand ? cand.reason : "";
      if (afterFailover) { reason = "Took over after a failover" + (reason ? "; routing now says: " + reason : "."); }
      else if (reason) { reason = "Why: " + reason + (cand.cost !== null ? " (total cost " + Number(cand.cost).toFixed(1) + " s)." : "."); }
      $("serving-reason").textContent = reason;
      costTerms(cand ? cand.parts : {});
    }).catch(function () { /* the explanation is a courtesy; the launch goes on without it */ });
  }

  function servedBy(memberId) {
    if (!memberId || memberId === state.member) { return; }
    var afterFailover = state.member !== null;
    state.member = memberId;
    $("serving").hidden = false;
    $("serving-member").textContent = "Served by " + memberId + ".";
    $("serving-reason").textContent = "";
    explain(memberId, afterFailover);
  }

  function failover(event) {
    var li = document.createElement("li");
    li.textContent = "Failover: " + event.message.trim();
    $("failovers").appendChild(li);
    $("serving").hidden = false;
    $("serving-member").textContent = "Member " + event.member + " could not take the launch; trying the next one…";
    $("serving-reason").textContent = "";
    $("serving-costs").textContent = "";
    state.member = "(failover from " + event.member + ")";
  }

  // url + urlpath + ?token=, as BinderHub does. Without a urlpath the server's own default page
  // opens (JupyterLab's /lab where it is installed), since a bare jupyter-server has no /tree.
  // A urlpath that would leave the server (an absolute or protocol-relative URL, or ../ out of
  // its base) must not carry the token away: it falls back to the server's root.
  function serverUrl(event) {
    var base = new URL(event.url);
    var path = (config.urlpath || "").replace(/^\/+/, "");
    var url = new URL(path, base);
    if (url.origin !== base.origin || url.pathname.indexOf(base.pathname) !== 0) { url = new URL("", base); }
    url.searchParams.set("token", event.token);
    return url.toString();
  }

  function ready(event) {
    state.finished = true;
    setPhase("ready");
    $("bar").classList.add("done");
    $("phase-text").textContent = WORDS.ready + " Opening it now…";
    $("launch-verb").textContent = "Started";
    if (event.decision) { $("decision-id").textContent = "Routing decision " + event.decision + "."; }
    var target = serverUrl(event);
    $("ready-link").href = target;
    $("ready").hidden = false;
    document.title = "Ready · " + document.title;
    window.location.replace(target);
  }

  function failed(message) {
    state.finished = true;
    $("bar").classList.add("failed");
    $("phase-text").textContent = WORDS.failed;
    $("launch-verb").textContent = "Could not start";
    $("failed-reason").textContent = (message || "No reason was given.").trim();
    $("failed").hidden = false;
    $("log-details").open = true;
    document.title = "Failed · " + document.title;
    $("retry").focus();
  }

  function onEvent(event) {
    if (event.phase === "waiting" && /could not launch/.test(event.message || "")) {
      failover(event);
    } else {
      servedBy(event.member);
    }
    log(event.message);
    if (event.phase === "ready") { ready(event); return; }
    if (event.phase === "failed") { failed(event.message); return; }
    setPhase(event.phase);
    $("phase-text").textContent = WORDS[event.phase] || event.phase;
  }

  $("retry").addEventListener("click", function () { window.location.reload(); });
  var source = null;
  function open() {
    if (source) { return; }
    source = new EventSource(config.build_url);
    source.onmessage = onMessage;
    source.onerror = onError;
  }
  function onMessage(message) {
    var event;
    try { event = JSON.parse(message.data); } catch (e) { return; }
    onEvent(event);
    if (state.finished) { source.close(); }
  }
  // EventSource reconnects by itself, which would start a second launch: stop instead.
  function onError() {
    source.close();
    if (!state.finished) { failed("Lost the connection to the broker before the launch finished."); }
  }
  // Launch once the decision is known, or after a second if the broker is slow to explain.
  beforeLaunch.then(open);
  setTimeout(open, 1000);
})();
