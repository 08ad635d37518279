// belfry console: light enhancement of server-rendered pages. Every page works without it.
"use strict";

(function () {
  function csrfToken() {
    var input = document.querySelector("input[name=csrf]");
    return input ? input.value : "";
  }

  // Cluster page: refresh the leader, term and roles every 2 s.
  function watchCluster() {
    var leader = document.getElementById("leader");
    var note = document.getElementById("live-note");
    if (!leader || !note) return;
    var term = document.getElementById("term");
    function refresh() {
      fetch("/cluster/status.json", { credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (!response.ok) throw new Error("status " + response.status);
          return response.json();
        })
        .then(function (s) {
          leader.textContent = "Leader: " + (s.leader === null ? "none" : "node " + s.leader);
          if (term) term.textContent = "Term: " + s.term;
          (s.members || []).forEach(function (m) {
            var row = document.querySelector("#members tr[data-node='" + Number(m.id) + "']");
            if (row) {
              var role = row.querySelector(".role");
              if (role) role.textContent = m.role;
            }
          });
          var now = new Date().toISOString().replace("T", " ").slice(0, 19);
          note.textContent = "Updated " + now + " UTC (node " + s.node_id + ")";
        })
        .catch(function () {
          note.textContent = "node unreachable";
        });
    }
    setInterval(refresh, 2000);
  }

  // Schedule form: live validation and preview through POST /api/validate.
  function watchForm() {
    var form = document.getElementById("schedule-form");
    if (!form) return;
    var kind = document.getElementById("kind");
    var solar = form.querySelector(".solar-only");
    var preview = document.getElementById("preview");
    function showSolar() {
      if (solar && kind) solar.hidden = kind.value !== "solar";
    }
    function fields() {
      var body = {};
      ["name", "task", "kind", "spec", "timezone", "latitude", "longitude", "args", "kwargs",
        "queue", "labels", "revision"].forEach(function (name) {
        var el = form.elements.namedItem(name);
        if (el) body[name] = el.value;
      });
      return body;
    }
    function clearLive() {
      form.querySelectorAll("[data-live]").forEach(function (el) { el.remove(); });
      form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
    }
    function show(result) {
      clearLive();
      if (result.ok) {
        form.querySelectorAll(".error[role=alert]").forEach(function (el) { el.remove(); });
        if (preview) {
          preview.textContent = "";
          (result.preview || []).forEach(function (text) {
            var li = document.createElement("li");
            li.textContent = text;
            preview.appendChild(li);
          });
        }
        return;
      }
      var box = form.querySelector("[data-field='" + result.field + "']") || form;
      form.querySelectorAll(".error[role=alert]").forEach(function (el) { el.remove(); });
      var p = document.createElement("p");
      p.className = "error";
      p.setAttribute("role", "alert");
      p.setAttribute("data-live", "");
      p.textContent = result.error;
      box.appendChild(p);
      var input = document.getElementById(result.field);
      if (input) input.setAttribute("aria-invalid", "true");
      if (preview) preview.textContent = "";
    }
    var timer = null;
    function validate() {
      fetch("/api/validate", {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": csrfToken() },
        body: JSON.stringify(fields())
      })
        .then(function (response) { return response.json(); })
        .then(show)
        .catch(function () { /* the server checks again on save */ });
    }
    form.addEventListener("input", function () {
      showSolar();
      clearTimeout(timer);
      timer = setTimeout(validate, 300);
    });
    form.addEventListener("change", showSolar);
    showSolar();
  }

  document.addEventListener("DOMContentLoaded", function () {
    watchCluster();
    watchForm();
  });
})();
