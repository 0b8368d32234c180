// Keyboard-first labelling. Gradio has no shortcut API, so this clicks the Label tab's controls by
// elem_id. Keys typed into text fields are left alone.
(() => {
  const MAX = 8;
  let active = 1;
  const $ = (sel) => document.querySelector(sel);
  const visible = (el) => el && el.offsetParent !== null;
  const labelTabShown = () => visible($("#label-panel"));
  const cards = () => [...Array(MAX).keys()].map((i) => $(`#card-${i + 1}`)).filter(visible);
  function highlight() {
    for (let i = 1; i <= MAX; i++) {
      const c = $(`#card-${i}`);
      if (c) c.classList.toggle("active-card", i === active);
    }
  }
  function typing(t) {
    if (!t) return false;
    if (t.isContentEditable || t.tagName === "TEXTAREA" || t.tagName === "SELECT") return true;
    return t.tagName === "INPUT" && !["radio", "checkbox", "button", "range"].includes(t.type);
  }
  function clickRadio(fieldset, value) {
    const input = $(`${fieldset} input[value='${value}']`);
    if (input) { input.click(); return true; }
    return false;
  }
  window.critlabSetActiveCard = (k) => { active = k; highlight(); };
  document.addEventListener("keydown", (e) => {
    if (!labelTabShown() || typing(e.target)) return;
    const n = cards().length;
    if (e.ctrlKey && e.key === "Enter") { $("#submit-btn")?.click(); e.preventDefault(); return; }
    if (e.ctrlKey || e.altKey || e.metaKey) return;
    const digit = /^Digit([1-8])$/.exec(e.code);
    if (digit && e.shiftKey) {          // Shift+1..7: rate the highlighted card
      if (clickRadio(`#rating-${active}`, digit[1])) e.preventDefault();
      return;
    }
    if (digit && !e.shiftKey && Number(digit[1]) <= n) {  // 1..8: pick the best
      active = Number(digit[1]);
      highlight();
      clickRadio("#best", digit[1]);
      e.preventDefault();
      return;
    }
    if (e.target && e.target.type === "radio" && e.key.startsWith("Arrow")) return;  // native radio moves
    if (e.key === "j" || e.key === "ArrowRight" || e.key === "ArrowDown") {
      if (n) { active = (active % n) + 1; highlight(); e.preventDefault(); }
    } else if (e.key === "k" || e.key === "ArrowUp") {
      if (n) { active = ((active + n - 2) % n) + 1; highlight(); e.preventDefault(); }
    } else if (e.key === "s" || e.key === "S") {
      $("#skip-btn")?.click(); e.preventDefault();
    } else if (e.key === "ArrowLeft") {
      $("#back-btn")?.click(); e.preventDefault();
    }
  });
  // The Live tab: typing in the prompt box after picking a study prompt keeps what was typed (live_tab.py).
  document.addEventListener("input", (e) => {
    if (e.target && e.target.closest && e.target.closest("#live-prompt")) window.critlabLiveEdited = true;
  }, true);
  new MutationObserver(highlight).observe(document.documentElement, {childList: true, subtree: true});
})();
