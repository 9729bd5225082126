// The console works without this file; it only adds two conveniences.
"use strict";

// A "select all" box for lists of checkboxes (hidden until this runs).
document.querySelectorAll("[data-select-all]").forEach(function (box) {
  var name = box.getAttribute("data-select-all");
  var boxes = box.form.querySelectorAll('input[type="checkbox"][name="' + name + '"]');
  box.hidden = false;
  box.addEventListener("change", function () {
    boxes.forEach(function (each) { each.checked = box.checked; });
  });
});

// "Line 7" in a list of problems selects line 7 in the rule's text area.
document.querySelectorAll("a[data-line]").forEach(function (link) {
  link.addEventListener("click", function (event) {
    var area = document.getElementById("source");
    if (!area) { return; }
    event.preventDefault();
    var lines = area.value.split("\n");
    var line = Math.min(parseInt(link.getAttribute("data-line"), 10), lines.length);
    var start = 0;
    for (var i = 0; i < line - 1; i++) { start += lines[i].length + 1; }
    area.focus();
    area.setSelectionRange(start, start + lines[line - 1].length);
    var height = area.scrollHeight / lines.length;
    area.scrollTop = Math.max(0, (line - 3) * height);
  });
});
