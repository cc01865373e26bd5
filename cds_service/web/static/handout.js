// The handout's print button (a file: the page's CSP allows no inline script; loaded with defer).
document.getElementById("print").addEventListener("click", function () {
  window.print();
});
