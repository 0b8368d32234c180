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
  // Once the page is leaving, nothing more reaches Gradio: the navigation aborts the requests still in
  // flight (the open event stream among them), and Gradio would paint each pending event with an Error
  // badge before the page unloads, which a busy machine gives it the time to do.
  const never = () => new Promise(() => {});
  // The body is piped natively (as Gradio's own reader would read it, at once and in full); only an error
  // is held back: once the page is leaving it never reaches Gradio, before that it passes on unchanged.
  const quietBody = (response) => {
    if (!response.body) return response;
    const pass = new TransformStream();
    response.body.pipeTo(pass.writable, {preventAbort: true}).catch((e) => {
      if (!leaving) pass.writable.abort(e).catch(() => {});
    });
    return new Response(pass.readable, {status: response.status, statusText: response.statusText, headers: response.headers});
  };
  window.fetch = async (input, init) => {
    if (leaving) return never();
    let response;
    try {
      response = await nativeFetch(input, init);
    } catch (e) {
      if (leaving) return never();
      throw e;
    }
    if (leaving) return never();
    if (response.status === 401 && sameOrigin(input)) {
      leave(EXPIRED);
      return never();  // Gradio shows no error while the page navigates away
    }
    const type = response.headers.get("content-type") || "";
    return type.startsWith("text/event-stream") ? quietBody(response) : response;
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
