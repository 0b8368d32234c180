// When the session is over (logged out in another tab, expired, account disabled, password reset), the
// server's session gate answers the page's requests with 401. Gradio would paint every output of the
// event with a red "Error" badge; instead the page goes to the login form, which says why.
(() => {
  const EXPIRED = "/login?expired=1";
  const nativeFetch = window.fetch.bind(window);
  let leaving = false;
  const leave = (to) => {
    if (!leaving) { leaving = true; window.location.replace(to); }
  };
  const sameOrigin = (input) => {
    try {
      const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url, window.location.href);
      return url.origin === window.location.origin;
    } catch (_) {
      return false;
    }
  };
  // Gradio's client calls the global fetch for every request (queue join, uploads, event streams), so
  // one wrapper sees them all: key presses, clicks and timer ticks alike.
  window.fetch = async (input, init) => {
    const response = await nativeFetch(input, init);
    if (response.status === 401 && sameOrigin(input)) {
      leave(EXPIRED);
      return new Promise(() => {});  // never settles: Gradio shows no error while the page navigates away
    }
    return response;
  };
  // Log out in this tab. replace(): the page that was logged out leaves the history, so Back cannot
  // return to it (and the page is sent with Cache-Control: no-store, so any other copy is asked for again).
  window.critlabLogout = async () => {
    try {
      await nativeFetch("/api/logout", {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"});
    } finally {
      leave("/login?logged_out=1");
    }
  };
  // A page restored from the back/forward cache runs no request of its own: ask whether its session lives.
  window.addEventListener("pageshow", (e) => {
    if (e.persisted) {
      nativeFetch("/api/me", {cache: "no-store"}).then((r) => { if (r.status === 401) leave(EXPIRED); });
    }
  });
})();
