// The console's only script (served from /console/assets/console.js; the CSP allows no
// inline script). Progressive: every form works without it.
//  - [data-copy="<id>"] buttons copy the text of element #<id> (the new token, shown once).
//  - forms with [data-confirm] ask before they are sent (revoke, delete, rotate).
'use strict';

document.addEventListener('click', async (event) => {
  const button = event.target.closest('[data-copy]');
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const text = source.textContent.trim();
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch (_) {
    // No clipboard (plain http on another host): select the text for Ctrl-C.
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = 'Selected: press Ctrl-C';
  }
  setTimeout(() => { button.textContent = label; }, 2000);
});

document.addEventListener('submit', (event) => {
  const form = event.target;
  const question = form.dataset && form.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
