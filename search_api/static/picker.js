// The embeddable picker: keyboard-first choosing, events to the embedding origin only.
// Events (see docs/picker.md): resource-picked, cancelled, resized.
(function () {
  "use strict";
  var origin = document.body.getAttribute("data-picker-origin");
  // The embedding page (an iframe's parent), or the page that opened us as a popup.
  var target = window.parent !== window ? window.parent : window.opener;

  function send(message) {
    if (!target || !origin) { return; }
    message.source = "resources-picker";
    // Targeted at the session's origin: the browser drops it for any other parent.
    target.postMessage(message, origin);
  }

  var picks = Array.prototype.slice.call(document.querySelectorAll("button.pick"));
  var status = document.getElementById("picked-status");

  function pick(button) {
    var uri = button.getAttribute("data-uri");
    send({
      type: "resource-picked", uri: uri, id: button.getAttribute("data-id"),
      name: button.getAttribute("data-name"),
      "content-type": button.getAttribute("data-content-type"),
      size: Number(button.getAttribute("data-size"))
    });
    picks.forEach(function (b) { b.removeAttribute("aria-pressed"); });
    button.setAttribute("aria-pressed", "true");
    if (status) { status.textContent = "Chosen: " + button.getAttribute("data-name"); }
  }

  function cancel() { send({ type: "cancelled" }); }

  picks.forEach(function (b) { b.addEventListener("click", function () { pick(b); }); });
  var cancelButton = document.getElementById("picker-cancel");
  if (cancelButton) { cancelButton.addEventListener("click", cancel); }

  // How many buttons share the first row: ArrowUp/ArrowDown move by that much.
  function columns() {
    if (picks.length < 2) { return 1; }
    var top = picks[0].getBoundingClientRect().top;
    var n = 0;
    while (n < picks.length && Math.abs(picks[n].getBoundingClientRect().top - top) < 2) { n++; }
    return Math.max(n, 1);
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") { ev.preventDefault(); cancel(); return; }
    var i = picks.indexOf(document.activeElement);
    var search = document.getElementById("picker-q");
    if (i < 0) {
      if (document.activeElement === search && ev.key === "ArrowDown" && picks.length) {
        ev.preventDefault();
        picks[0].focus();
      }
      return;
    }
    var step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() }[ev.key];
    if (step === undefined) { return; }
    ev.preventDefault();
    var j = i + step;
    if (j < 0) { if (search) { search.focus(); } return; }
    picks[Math.min(j, picks.length - 1)].focus();
  });

  // Thumbnails that cannot be made (404) leave the type label in their place.
  document.querySelectorAll("img.thumb").forEach(function (img) {
    function fallback() {
      img.hidden = true;
      var ph = img.parentNode.querySelector(".ph");
      if (ph) { ph.hidden = false; }
    }
    if (img.complete && img.naturalWidth === 0) { fallback(); }   // failed before we ran
    img.addEventListener("error", fallback);
  });

  // Upload into the slot (sessions minted with write): the raw file streams to the
  // server, and the new resource is handed over like a picked one.
  var upload = document.getElementById("picker-upload");
  if (upload) {
    upload.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var file = document.getElementById("picker-file").files[0];
      if (!file) { return; }
      if (status) { status.textContent = "Uploading " + file.name + "…"; }
      var url = upload.getAttribute("data-upload-url") + "&filename=" + encodeURIComponent(file.name);
      fetch(url, { method: "POST", body: file, credentials: "omit",
                   headers: { "Content-Type": file.type || "application/octet-stream" } })
        .then(function (r) {
          return r.json().then(function (body) {
            if (!r.ok) { throw new Error(body.error ? body.error.message : "HTTP " + r.status); }
            return body.data;
          });
        })
        .then(function (d) {
          send({ type: "resource-picked", uri: d.uri, id: d.id, name: d.name,
                 "content-type": d["content-type"], size: d.size, uploaded: true });
          if (status) { status.textContent = "Uploaded and chosen: " + d.name; }
        })
        .catch(function (err) { if (status) { status.textContent = "Upload failed: " + err.message; } });
    });
  }

  // Tell the embedding page our height, so it can size the frame without scrollbars.
  var last = -1;
  function resized() {
    var h = Math.ceil(document.documentElement.scrollHeight);
    if (h !== last) { last = h; send({ type: "resized", height: h }); }
  }
  if (window.ResizeObserver) { new ResizeObserver(resized).observe(document.body); }
  resized();
})();
