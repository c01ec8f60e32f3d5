// The home page: builds the launch URL and badges from the form, as BinderHub's home page does.
(function () {
  "use strict";
  var form = document.getElementById("launch-form");
  if (!form) { return; }
  var $ = function (id) { return document.getElementById(id); };
  var provider = $("provider"), repository = $("repository"), ref = $("ref");
  var path = $("path"), pathType = $("path-type"), list = $("dataset-list");
  // Links and badges name the broker's configured public URL (what READMEs should point at).
  var base = (form.getAttribute("data-broker-url") || window.location.origin).replace(/\/+$/, "");

  // The provider table (fedproto.providers), as the server rendered it into the page.
  var providers = {};
  JSON.parse($("providers").textContent).forEach(function (p) { providers[p.prefix] = p; });

  function selected() { return providers[provider.value]; }

  function trimSlashes(s) { return s.replace(/^\/+|\/+$/g, ""); }

  // The spec part of /v2/<provider>/<spec>, from what the user typed (a name or a URL).
  // DOIs keep their own slash, as BinderHub's data providers expect.
  function specFor(p, repo, gitRef) {
    var r = trimSlashes(repo.trim().replace(new RegExp(p.strip), ""));
    if (p.drop_git_suffix) { r = r.replace(/\.git$/, ""); }
    if (p.escape) { r = encodeURIComponent(r); }
    return p.has_ref ? r + "/" + encodeURIComponent(gitRef.trim() || "HEAD") : r;
  }

  function datasets() {
    var values = [];
    list.querySelectorAll("input[name=data]").forEach(function (input) {
      if (input.value.trim()) { values.push(input.value.trim()); }
    });
    return values;
  }

  function launchUrl() {
    var repo = repository.value.trim();
    if (!repo) { return ""; }
    var url = base + "/v2/" + provider.value + "/" + specFor(selected(), repo, ref.value);
    var query = new URLSearchParams();
    datasets().forEach(function (d) { query.append("data", d); });
    var where = path.value.trim();
    // A URL path goes as typed ("/" is the server's root page); a file is relative to the repository.
    if (where) { query.append(pathType.value, pathType.value === "labpath" ? where.replace(/^\/+/, "") : where); }
    var qs = query.toString();
    return qs ? url + "?" + qs : url;
  }

  function update() {
    var p = selected();
    $("repository-label").textContent = p.label;
    repository.placeholder = p.placeholder;
    ref.disabled = !p.has_ref;
    var url = launchUrl();
    $("launch-url").value = url || "Fill in the repository to get a link";
    var target = url || base + "/v2/gh/OWNER/REPOSITORY/HEAD";
    var badge = base + "/badge_logo.svg";
    $("badge-markdown").value = "[![Binder](" + badge + ")](" + target + ")";
    $("badge-rst").value = ".. image:: " + badge + "\n   :target: " + target;
  }

  var datasetCount = 1;
  function addDataset() {
    datasetCount += 1;
    var id = "data-" + datasetCount;
    var li = document.createElement("li");
    li.className = "dataset";
    var label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = "Dataset " + datasetCount;
    var input = document.createElement("input");
    input.id = id; input.name = "data"; input.type = "text"; input.autocomplete = "off"; input.spellcheck = false;
    input.setAttribute("aria-describedby", "datasets-hint");
    var remove = document.createElement("button");
    remove.type = "button"; remove.className = "button secondary"; remove.textContent = "Remove";
    remove.setAttribute("aria-label", "Remove dataset " + datasetCount);
    remove.addEventListener("click", function () { li.remove(); update(); $("add-dataset").focus(); });
    li.append(label, input, remove);
    list.appendChild(li);
    input.focus();
  }

  function copy(id) {
    var field = $(id);
    var done = function () { $("copy-status").textContent = "Copied to the clipboard."; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () { field.select(); });
    } else {
      field.select();
      try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected for the user */ }
    }
  }

  form.addEventListener("input", update);
  form.addEventListener("change", update);
  $("add-dataset").addEventListener("click", addDataset);
  document.querySelectorAll("button.copy").forEach(function (b) {
    b.addEventListener("click", function () { copy(b.getAttribute("data-copy")); });
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var url = launchUrl();
    var error = $("form-error");
    if (!url) {
      error.textContent = "Please give the repository to launch.";
      error.hidden = false;
      repository.focus();
      return;
    }
    error.hidden = true;
    window.location.assign(url);
  });
  update();
})();
