// The card preview page's behaviour (a file: the page's CSP allows no inline script; loaded with defer).
// Picking an example shows it at once; a suggestion button shows what accepting it would do.
document.getElementById("example").addEventListener("change", function () {
  document.getElementById("choose").submit();
});
document.querySelectorAll("button.suggestion").forEach(function (button) {
  button.addEventListener("click", function () {
    var actions = button.nextElementSibling;
    actions.hidden = !actions.hidden;
    button.setAttribute("aria-expanded", String(!actions.hidden));
  });
});
