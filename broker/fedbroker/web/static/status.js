// The status page: refreshes the server-rendered members, map and numbers every few seconds
// (fetching /status again and swapping those parts in, so the cards are drawn in one place);
// with an admin token (kept in sessionStorage only) it can drain and undrain members.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var config = JSON.parse($("status-config").textContent);
  var TOKEN_KEY = "fedbroker-admin-token";
  var lastGood = Date.now();
  // The parts the server renders (templates/statuscards.html) and a refresh swaps in.
  var PARTS = ["summary-line", "glance", "map-markers", "members"];

  function swapIn(fresh) {
    var list = $("members");
    var active = document.activeElement;
    var focused = active && active.closest ? active.closest("li.member") : null;
    var focusKey = focused ? [focused.getAttribute("data-member"), active.getAttribute("data-action")] : null;
    PARTS.forEach(function (id) {
      var part = fresh.getElementById(id);
      if (part) { $(id).replaceChildren.apply($(id), Array.prototype.map.call(part.childNodes, function (n) {
        return document.importNode(n, true);
      })); }
    });
    showAdminButtons();
    if (focusKey && focusKey[1]) {  // keep keyboard focus on the same button across redraws
      var again = list.querySelector('button[data-member="' + CSS.escape(focusKey[0]) + '"][data-action="' + focusKey[1] + '"]');
      if (again) { again.focus(); }
    }
  }

  function refresh() {
    fetch("/status", { cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.text();
    }).then(function (text) {
      lastGood = Date.now();
      $("refresh-error").hidden = true;
      swapIn(new DOMParser().parseFromString(text, "text/html"));
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

  function showAdminButtons() {
    var has = !!token();
    document.querySelectorAll(".admin-actions").forEach(function (p) { p.hidden = !has; });
  }

  function showAdmin() {
    showAdminButtons();
    var has = !!token();
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

  showAdmin();
  if (token()) { $("admin").open = true; }
  setInterval(refresh, config.refresh_seconds * 1000);
  setInterval(ticker, 1000);
})();
