// The console's only script, served at /static/console.js (the Content-Security-Policy allows
// no inline script). A form with data-confirm="…" asks that question before it is sent.
document.addEventListener("submit", function (event) {
  var question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// The tips list: the box in the header ticks or clears every tip of the page.
document.addEventListener("change", function (event) {
  if (event.target.id === "check-all") {
    document.querySelectorAll("input.pick").forEach(function (box) {
      box.checked = event.target.checked;
    });
  }
});
