// Keyboard-first labelling. Gradio has no shortcut API, so this clicks the Label tab's controls by
// elem_id. Keys typed into text fields are left alone.
(() => {
  const MAX = 8;
  let active = 1;       // the highlighted card: Shift+1..7 rate it; only J/K or a click move it
  let submitting = false;
  // Unsaved answers on the shown item: ← / Back and S / Skip then need a second press (nothing is lost
  // silently). Cleared whenever another item (or the same item at another stage) is shown.
  let dirty = false, armed = null, shownItem = null;
  const SUBMIT_LABEL = "Submit (Ctrl+Enter)";
  const $ = (sel) => document.querySelector(sel);
  const visible = (el) => el && el.offsetParent !== null;
  const labelTabShown = () => visible($("#label-panel"));
  const cards = () => [...Array(MAX).keys()].map((i) => $(`#card-${i + 1}`)).filter(visible);
  function highlight() {
    const best = Number($("#best input:checked")?.value || 0);
    for (let i = 1; i <= MAX; i++) {
      const c = $(`#card-${i}`);
      if (c) {
        c.classList.toggle("active-card", i === active);
        c.classList.toggle("best-card", i === best);
      }
    }
  }
  function itemChanged() {
    // The markdown itself: Gradio also puts its progress text inside the block while an event runs.
    const head = ($("#prompt [data-testid='markdown']")?.innerText || "").split("\n")[0];
    // The highlight goes back to card 1 here, as the new item renders, and not in a Gradio .then() step:
    // that ran later, so a J pressed as soon as the item showed could be undone under a person's hands.
    if (head !== shownItem) { shownItem = head; active = 1; dirty = false; armed = null; if (!submitting) note(""); }
  }
  // True when the action may go ahead; otherwise says why and arms it for the next press.
  function leaveOk(action) {
    if (!dirty || armed === action) { armed = null; return true; }
    armed = action;
    note(`Your answers on this item are not saved: press ${action === "back" ? "← (Back)" : "S (Skip)"} again to `
         + "leave it without saving, or Ctrl+Enter to submit.");
    return false;
  }
  function moveTo(k) {
    active = k;
    highlight();
    $(`#card-${k}`)?.scrollIntoView({block: "nearest", inline: "nearest"});
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
  function note(text) {
    let el = $("#submit-note");
    if (!el) {
      const button = $("#submit-btn");
      if (!button) return;
      el = document.createElement("span");
      el.id = "submit-note";
      el.setAttribute("role", "status");
      button.after(el);
    }
    el.textContent = text;
    el.style.display = text ? "" : "none";
  }
  window.critlabSetActiveCard = (k) => { active = k; highlight(); };
  // The Submit button says so while a submit runs; a second Ctrl+Enter then only says it is still running.
  window.critlabSubmitStart = () => {
    submitting = true;
    const b = $("#submit-btn");
    if (b) b.textContent = "Submitting…";
  };
  window.critlabSubmitEnd = () => {
    submitting = false;
    const b = $("#submit-btn");
    if (b) b.textContent = SUBMIT_LABEL;
    note("");
  };
  document.addEventListener("keydown", (e) => {
    if (!labelTabShown() || typing(e.target)) return;
    const n = cards().length;
    if (e.ctrlKey && e.key === "Enter") {
      e.preventDefault();
      if (submitting) { note("Still submitting the last label…"); return; }
      $("#submit-btn")?.click();
      return;
    }
    if (e.ctrlKey || e.altKey || e.metaKey) return;
    const digit = /^Digit([1-8])$/.exec(e.code);
    if (digit && e.shiftKey) {          // Shift+1..7: rate the highlighted card
      if (clickRadio(`#rating-${active}`, digit[1])) { dirty = true; e.preventDefault(); }
      return;
    }
    if (digit && !e.shiftKey && Number(digit[1]) <= n) {  // 1..8: pick the best (the highlight stays)
      if (clickRadio("#best", digit[1])) dirty = true;
      highlight();
      e.preventDefault();
      return;
    }
    if (e.target && e.target.type === "radio" && e.key.startsWith("Arrow")) return;  // native radio moves
    if (e.key === "j" || e.key === "ArrowRight" || e.key === "ArrowDown") {
      if (n) { moveTo((active % n) + 1); e.preventDefault(); }
    } else if (e.key === "k" || e.key === "ArrowUp") {
      if (n) { moveTo(((active + n - 2) % n) + 1); e.preventDefault(); }
    } else if (e.key === "s" || e.key === "S") {
      $("#skip-btn")?.click(); e.preventDefault();   // held by the click guard below while answers are unsaved
    } else if (e.key === "ArrowLeft") {
      $("#back-btn")?.click(); e.preventDefault();
    }
  });
  // A person's own change of an answer makes the item dirty; a click on Back or Skip is held as above.
  for (const type of ["input", "change"]) {
    document.addEventListener(type, (e) => {
      if (e.isTrusted && labelTabShown() && e.target?.closest?.("#label-panel")
          && !e.target.closest("#study-select")) dirty = true;
      if (type === "change" && e.target?.closest?.("#best")) highlight();
    }, true);
  }
  document.addEventListener("click", (e) => {
    if (e.isTrusted && e.target?.closest?.("#label-panel [id^='pick-']")) dirty = true;
    const button = e.target?.closest?.("#back-btn, #skip-btn");
    if (button && !leaveOk(button.id === "back-btn" ? "back" : "skip")) {
      e.stopImmediatePropagation();
      e.preventDefault();
    }
  }, true);
  // A click anywhere in a Label card (its text, its rating) highlights that card.
  document.addEventListener("click", (e) => {
    const card = e.target && e.target.closest ? e.target.closest("[id^='card-']") : null;
    const k = card ? Number(card.id.slice(5)) : 0;
    if (k >= 1 && k <= MAX && k !== active) { active = k; highlight(); }
  }, true);
  // The Live tab: typing in the prompt box after picking a study prompt keeps what was typed (live_tab.py).
  document.addEventListener("input", (e) => {
    if (e.target && e.target.closest && e.target.closest("#live-prompt")) window.critlabLiveEdited = true;
  }, true);
  // A response taller than its box gets a cue until it is scrolled to the end.
  const resized = new ResizeObserver(() => scrollCues());
  function scrollCues() {
    for (const box of document.querySelectorAll(".resp-text")) {
      if (box.querySelector(".resp-text")) continue;  // Gradio puts the class on the block and its prose: the inner one scrolls
      const outer = box.parentElement?.closest(".resp-text") || box;  // the cue goes outside both
      let cue = outer.nextElementSibling;
      if (!cue || !cue.classList.contains("scroll-cue")) {
        cue = document.createElement("div");
        cue.className = "scroll-cue";
        cue.textContent = "▼ more below: scroll the response";
        outer.after(cue);
        box.addEventListener("scroll", scrollCues, {passive: true});
        resized.observe(box);  // a card shown later (hidden when the text arrived) has its size only then
      }
      const more = box.scrollHeight - box.scrollTop - box.clientHeight > 4;
      cue.style.display = more ? "" : "none";
    }
  }
  new MutationObserver(() => { itemChanged(); highlight(); scrollCues(); })
    .observe(document.documentElement, {childList: true, subtree: true});
  window.addEventListener("resize", scrollCues);
})();
