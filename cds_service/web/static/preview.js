// The card preview page's behaviour (a file: the page's CSP allows no inline script; loaded with defer).
// Picking an example shows it at once (without script, the Show button does). Suggestions open without script.
document.getElementById("example").addEventListener("change", function () {
  document.getElementById("choose").submit();
});
