// The dashboard's only script: confirmations before a form that changes a callout, and regions that refresh
// themselves while work goes on (an import, a batch operation, a callout's statistics): a region asks its
// data-source (a fragment of the dashboard), else the page again, every data-refresh seconds, and is replaced
// by the same region of the answer. Every page works without it.
"use strict";

document.addEventListener("submit", (event) => {
  const message = event.target.dataset && event.target.dataset.confirm;
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});

function refresh(region) {
  const seconds = Number(region.dataset.refresh) || 5;
  window.setTimeout(async () => {
    try {
      const response = await fetch(region.dataset.source || window.location.href, {credentials: "same-origin"});
      if (response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById(region.id);
        if (fresh) {
          region.replaceWith(fresh);
          if (fresh.dataset.refresh) {
            refresh(fresh);
          }
          return;
        }
      }
    } catch (error) {
      // a slow or broken link: try again later
    }
    refresh(region);
  }, seconds * 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh][id]").forEach(refresh);
});
