// Resources web view: progressive enhancements only (every form also works without JS).
(function () {
  "use strict";

  // "Copy signed link": fetch a fresh signed URL, show it and try the clipboard.
  document.querySelectorAll("form[data-signed-link]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var box = document.querySelector(".signed");
      var input = document.getElementById("signed-url");
      var status = document.getElementById("signed-status");
      fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "Accept": "application/json" }
      }).then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      }).then(function (body) {
        var link = body.data;
        input.value = link.url;
        box.hidden = false;
        input.select();
        var done = function (ok) {
          status.textContent = (ok ? "Copied. " : "Copy it from the box. ") + "Valid until " + link["expires-at"];
        };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(link.url).then(function () { done(true); }, function () { done(false); });
        } else {
          done(false);
        }
      }).catch(function (err) {
        box.hidden = false;
        status.textContent = "Could not make a link: " + err.message;
      });
    });
  });

  // Picker: hand the uri to the page that opened or embeds us (same origin only), then
  // follow the return path when there is one.
  document.querySelectorAll("form[data-pick]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      var uri = form.getAttribute("data-uri");
      var message = { type: "resource-picked", uri: uri };
      var targets = [];
      if (window.opener && window.opener !== window) { targets.push(window.opener); }
      if (window.parent && window.parent !== window) { targets.push(window.parent); }
      targets.forEach(function (t) {
        try { t.postMessage(message, window.location.origin); } catch (e) { /* other origin */ }
      });
      if (!form.querySelector('input[name="return"]')) {
        ev.preventDefault();
        var status = document.getElementById("picked-status");
        if (status) {
          status.textContent = "Chosen: " + uri;
          status.hidden = false;
        }
      }
    });
  });

  // A thumbnail that cannot be made (404: bomb, slow or broken file) hides its figure.
  document.querySelectorAll("img.thumb").forEach(function (img) {
    var box = img.closest("figure") || img;
    function fallback() { box.hidden = true; }
    if (img.complete && img.naturalWidth === 0) { fallback(); }
    img.addEventListener("error", fallback);
  });

  // "/" focuses the search box, as on most search sites (not while typing elsewhere).
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "/" || ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var t = ev.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) { return; }
    var box = document.querySelector('main input[type="search"]');
    if (box) { ev.preventDefault(); box.focus(); box.select(); }
  });

  // Search forms leave empty fields out of the URL, so a link says only what is set.
  document.querySelectorAll('form[role="search"]').forEach(function (form) {
    form.addEventListener("submit", function () {
      form.querySelectorAll("input[name], select[name]").forEach(function (el) {
        if (el.value === "") { el.disabled = true; }
      });
    });
  });
  // Coming back (bfcache) must not leave fields disabled.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll('form[role="search"] [disabled]').forEach(function (el) {
      el.disabled = false;
    });
  });

  // "Copy uri": the clipboard when the page may use it, else select the text to copy.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.querySelector(button.getAttribute("data-copy"));
      var status = document.getElementById("copy-status");
      if (!source) { return; }
      var text = source.textContent;
      var say = function (msg) { if (status) { status.textContent = msg; } };
      var select = function () {
        var range = document.createRange();
        range.selectNodeContents(source);
        var sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        say("Selected: press Ctrl+C to copy.");
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { say("Copied."); }, select);
      } else {
        select();
      }
    });
  });

  // A tiny image (a 16 x 16 icon) is shown larger, with crisp pixels, not as a speck.
  document.querySelectorAll("img.preview-image").forEach(function (img) {
    function check() { if (img.naturalWidth && img.naturalWidth < 128) { img.classList.add("upscaled"); } }
    if (img.complete) { check(); } else { img.addEventListener("load", check); }
  });

  // Timeline bars: positions come from data attributes (the CSP allows no inline style).
  document.querySelectorAll(".tl-bar").forEach(function (bar) {
    bar.style.left = bar.getAttribute("data-left") + "%";
    bar.style.width = bar.getAttribute("data-width") + "%";
  });
})();
