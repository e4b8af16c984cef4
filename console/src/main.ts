// gitfaas' web console: a client of the public HTTP API, served by gitfaas
// at /ui/. Pages are addressed by the URL's hash (#/runs, #/runs/<uid>,
// #/topics, #/topics/<name>, #/publish/<topic>, #/sync), so that the
// server has one file to serve and a link to a run can be shared; the token
// never appears in a URL.

import { ApiError, openApi, setToken, token, whenUnauthorized } from "./api";
import { h, replace, type Child } from "./dom";
import { type Page } from "./page";
import { publish } from "./views/publish";
import { run } from "./views/run";
import { runs } from "./views/runs";
import { signin } from "./views/signin";
import { sync } from "./views/sync";
import { topic, topics } from "./views/topics";

const main = h("main", { id: "main", tabindex: -1 });
const signOut = h("button", { type: "button", class: "link" }, "Sign out");
const nav = h(
  "nav",
  { "aria-label": "Console" },
  h(
    "ul",
    {},
    [
      ["#/runs", "Runs"],
      ["#/topics", "Topics"],
      ["#/publish/", "Publish"],
      ["#/sync", "Sync"],
    ].map(([href, label]) => h("li", {}, h("a", { href, "data-section": label.toLowerCase() }, label))),
    h("li", {}, signOut),
  ),
);
let controller = new AbortController();
let signingIn = false;

function page(): Page {
  controller.abort();
  controller = new AbortController();
  replace(main);
  return {
    main,
    signal: controller.signal,
    title(text: string, ...extra: Child[]) {
      const heading = h("h1", { tabindex: -1 }, text, ...extra);
      document.title = `${heading.textContent} · gitfaas`;
      main.prepend(heading);
      return heading;
    },
  };
}

function route(focus = true): void {
  if (signingIn) return;
  const hash = location.hash.replace(/^#/, "") || "/runs";
  const [path, search = ""] = hash.split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(search);
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.section === parts[0]) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const p = page();
  switch (parts[0]) {
    case undefined:
    case "runs":
      if (parts[1]) run(p, parts[1]);
      else runs(p, params);
      break;
    case "topics":
      if (parts[1]) topic(p, parts[1]);
      else topics(p);
      break;
    case "publish":
      publish(p, parts[1] ?? "");
      break;
    case "sync":
      sync(p);
      break;
    default:
      p.title("Page not found");
      main.append(h("p", {}, "The console has no page ", h("code", {}, hash), ". ", h("a", { href: "#/runs" }, "See the runs"), "."));
  }
  if (focus) focusHeading();
}

function focusHeading(): void {
  const heading = main.querySelector("h1");
  if (heading instanceof HTMLElement && document.activeElement?.tagName !== "INPUT") heading.focus({ preventScroll: true });
}

function prompt(refused: ApiError | null): void {
  signingIn = true;
  setToken(null);
  nav.hidden = true;
  signin(page(), refused, () => {
    signingIn = false;
    nav.hidden = false;
    route();
  });
}

whenUnauthorized((error) => {
  if (!signingIn) prompt(error);
});
signOut.addEventListener("click", () => prompt(null));

async function start(): Promise<void> {
  document.body.append(
    h("a", { class: "skip", href: "#main" }, "Skip to content"),
    h("header", {}, h("p", { class: "brand" }, "gitfaas"), nav),
    main,
  );
  // The skip link moves focus without changing the route.
  document.querySelector(".skip")?.addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });
  window.addEventListener("hashchange", () => route());
  // No token yet: the prompt, which can also go on without one (an open
  // API, --auth none). Asking the API first would cost a 401 in the
  // browser's console on every first load.
  if (!token() && !openApi()) {
    prompt(null);
    return;
  }
  // A fresh load keeps the focus at the top of the page (the skip link is
  // the first Tab); a change of page moves it to the new page's heading.
  route(false);
}

start();
