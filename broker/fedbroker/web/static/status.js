// The status page: redraws members and the map from /api/v1/federation every few seconds;
// with an admin token (kept in sessionStorage only) it can drain and undrain members.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var config = JSON.parse($("status-config").textContent);
  var TOKEN_KEY = "fedbroker-admin-token";
  var SVG = "http://www.w3.org/2000/svg";
  var OUTCOMES = { ready: "ready", failed: "failed (member)", repo_error: "failed (repository)" };
  var lastGood = Date.now();

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { node.textContent = attrs[k]; } else { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { if (c) { node.append(c); } });
    return node;
  }

  function loadWords(m) {
    if (m.load === null || m.load === undefined || !m.capacity) { return [0, "unknown (no status yet)"]; }
    var pct = Math.round(m.load * 100);
    return [pct, (m.capacity.used + m.capacity.building) + " of " + m.capacity.total + " slots busy (" + pct + "%)"];
  }

  function locationWords(loc) {
    var where = [loc.region, loc.country].filter(Boolean).join(" · ");
    var coords = loc.lat !== undefined && loc.lon !== undefined ? loc.lat.toFixed(1) + "°, " + loc.lon.toFixed(1) + "°" : "";
    return [where, coords].filter(Boolean).join(", ") || "not given";
  }

  function pollWords(m, now) {
    if (m.last_poll_at === null || m.last_poll_at === undefined) { return "never polled yet"; }
    var age = now !== null ? Math.max(0, Math.round(now - m.last_poll_at)) + " s ago" : "recently";
    return age + ", " + (m.last_poll_ok ? "answered" : "failed");
  }

  function outcomesNode(m) {
    var list = m.recent_outcomes || [];
    if (!list.length) { return el("span", { "class": "muted", text: "none yet" }); }
    var ol = el("ol", { "class": "outcomes", "aria-hidden": "true" });
    var counts = {};
    list.forEach(function (o) {
      counts[o.outcome] = (counts[o.outcome] || 0) + 1;
      ol.append(el("li", { "class": "outcome outcome-" + o.outcome, title: OUTCOMES[o.outcome] || o.outcome }));
    });
    var words = Object.keys(OUTCOMES).filter(function (k) { return counts[k]; })
      .map(function (k) { return counts[k] + " " + OUTCOMES[k]; }).join(", ");
    var span = el("span", {}, [ol, " ", el("span", { "class": "outcome-words", text: words })]);
    return span;
  }

  function datasetsNode(m) {
    if (!m.datasets || !m.datasets.length) { return el("span", { "class": "muted", text: "none" }); }
    return el("ul", { "class": "datasets-list" }, m.datasets.map(function (d) {
      return el("li", {}, [el("code", { text: d.id }), d.prefix ? " (prefix)" : ""]);
    }));
  }

  function fact(dl, name, value, cls) {
    var dd = typeof value === "string" ? el("dd", { text: value }) : el("dd", {}, [value]);
    if (cls) { dd.className = cls; }
    dl.append(el("dt", { text: name }), dd);
  }

  function card(m, now) {
    var load = loadWords(m);
    var meter = el("progress", { "class": "meter " + (load[0] >= 85 ? "high" : load[0] >= 60 ? "mid" : "low"),
      max: "100", value: String(load[0]), "aria-label": "Load of " + m.id, text: load[0] + "%" });
    var dl = el("dl", { "class": "facts-list" });
    fact(dl, "Load", el("span", {}, [meter, " ", el("span", { "class": "load-words", text: load[1] })]));
    fact(dl, "Location", locationWords(m.location || {}));
    fact(dl, "Datasets", datasetsNode(m));
    fact(dl, "Last poll", pollWords(m, now), "last-poll");
    fact(dl, "Recent launches", outcomesNode(m));
    var verdict = m.routable ? "Taking launches" : "Not taking launches: " + (m.reason || "unknown");
    var actions = el("p", { "class": "admin-actions" }, ["drain", "undrain"].map(function (a) {
      return el("button", { type: "button", "class": "button secondary", "data-action": a, "data-member": m.id,
        text: (a === "drain" ? "Drain " : "Undrain ") + m.id });
    }));
    actions.hidden = !token();
    return el("li", { "class": "member card", id: "member-" + m.id, "data-member": m.id, "data-health": m.health,
      "data-state": m.state }, [
      el("div", { "class": "member-head" }, [
        el("h2", {}, [(m.display_name || m.id) + " ", el("span", { "class": "member-id", text: m.id })]),
        el("span", { "class": "pill state-" + m.state, text: m.state }),
        el("span", { "class": "pill health-" + m.health, text: m.health })]),
      el("p", { "class": "verdict " + (m.routable ? "ok" : "bad"), text: verdict }),
      dl, actions]);
  }

  function markers(summary) {
    var g = $("map-markers");
    g.textContent = "";
    summary.members.forEach(function (m) {
      var loc = m.location || {};
      if (loc.lat === undefined || loc.lon === undefined) { return; }
      var c = document.createElementNS(SVG, "circle");
      c.setAttribute("class", "marker " + (m.routable ? "routable" : "down"));
      c.setAttribute("cx", String(loc.lon + 180));
      c.setAttribute("cy", String(90 - loc.lat));
      c.setAttribute("r", "4");
      c.setAttribute("data-member", m.id);
      var title = document.createElementNS(SVG, "title");
      title.textContent = (m.display_name || m.id) + ": " + m.health + ", " + m.state;
      c.appendChild(title);
      g.appendChild(c);
    });
  }

  function glance(summary) {
    var members = summary.members;
    var down = members.filter(function (m) { return m.health !== "healthy"; }).length;
    var busy = 0, total = 0, ready = 0, all = 0;
    members.forEach(function (m) {
      if (m.capacity) { busy += m.capacity.used + m.capacity.building; total += m.capacity.total; }
      (m.recent_outcomes || []).forEach(function (o) { all += 1; if (o.outcome === "ready") { ready += 1; } });
    });
    var rows = [["members", String(members.length), false], ["taking launches", String(summary.routable), summary.routable === 0],
      ["not healthy", String(down), down > 0], ["slots busy", busy + "/" + total, false],
      ["recent launches ready", String(ready), false], ["recent launches failed", String(all - ready), false]];
    var dl = $("glance");
    dl.textContent = "";
    rows.forEach(function (r) {
      dl.append(el("div", {}, [el("dt", { text: r[0] }), el("dd", r[2] ? { "class": "bad", text: r[1] } : { text: r[1] })]));
    });
  }

  function render(summary) {
    glance(summary);
    var n = summary.members.length;
    $("summary-line").textContent = n + " member" + (n === 1 ? "" : "s") + ", " + summary.routable + " taking launches";
    var list = $("members");
    var focused = document.activeElement && document.activeElement.closest ? document.activeElement.closest("li.member") : null;
    var focusKey = focused ? [focused.getAttribute("data-member"), document.activeElement.getAttribute("data-action")] : null;
    list.textContent = "";
    if (!n) { list.append(el("li", { "class": "card empty", text: "No member has joined this federation yet." })); }
    summary.members.forEach(function (m) { list.append(card(m, summary.generated_at)); });
    markers(summary);
    if (focusKey && focusKey[1]) {  // keep keyboard focus on the same button across redraws
      var again = list.querySelector('button[data-member="' + CSS.escape(focusKey[0]) + '"][data-action="' + focusKey[1] + '"]');
      if (again) { again.focus(); }
    }
  }

  function refresh() {
    fetch("/api/v1/federation", { cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    }).then(function (summary) {
      lastGood = Date.now();
      $("refresh-error").hidden = true;
      render(summary);
    }).catch(function (e) {
      $("refresh-error").textContent = "Could not refresh the status (" + e.message + "); retrying.";
      $("refresh-error").hidden = false;
    });
  }

  function ticker() {
    var age = Math.round((Date.now() - lastGood) / 1000);
    $("updated").textContent = age < 2 ? "updated just now" : "updated " + age + " s ago";
  }

  // -- administrators --------------------------------------------------------------
  function token() { try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; } }

  function showAdmin() {
    var has = !!token();
    document.querySelectorAll(".admin-actions").forEach(function (p) { p.hidden = !has; });
    $("admin-status").textContent = has ? "Token set for this tab: drain and undrain buttons are shown on each member."
      : "No token set.";
  }

  function act(memberId, action) {
    $("admin-status").textContent = (action === "drain" ? "Draining " : "Undraining ") + memberId + "…";
    fetch("/api/v1/members/" + encodeURIComponent(memberId) + "/" + action, {
      method: "POST", headers: { Authorization: "Bearer " + token() }
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (r.ok) {
          $("admin-status").textContent = "Member " + memberId + " is now " + (body.state || action) + ".";
        } else {
          $("admin-status").textContent = "Could not " + action + " " + memberId + ": " + (body.message || "HTTP " + r.status);
        }
        refresh();
      });
    }).catch(function (e) { $("admin-status").textContent = "Could not reach the broker: " + e.message; });
  }

  $("admin-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var value = $("admin-token").value.trim();
    try { if (value) { sessionStorage.setItem(TOKEN_KEY, value); } } catch (e) { /* storage refused: no admin mode */ }
    $("admin-token").value = "";
    showAdmin();
  });
  $("admin-forget").addEventListener("click", function () {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing stored */ }
    showAdmin();
  });
  $("members").addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (button) { act(button.getAttribute("data-member"), button.getAttribute("data-action")); }
  });

  render(config.summary);
  showAdmin();
  if (token()) { $("admin").open = true; }
  setInterval(refresh, config.refresh_seconds * 1000);
  setInterval(ticker, 1000);
})();
