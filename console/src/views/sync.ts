// The sync: the serving commit, the last sync, a rejected commit with its
// problems, and a button to sync now (POST /refresh).

import { get, json, problem, type Status, type SyncError } from "../api";
import { facts, h, replace, when } from "../dom";
import { aborted, errorBox, type Page } from "../page";

function failure(error: SyncError): HTMLElement {
  return h(
    "section",
    { class: "rejected", "aria-label": error.commit ? `Rejected commit ${error.commit}` : "Last error" },
    h("h3", {}, error.commit ? "Rejected commit " : "Last error", error.commit ? h("code", {}, error.commit) : null),
    h("p", {}, error.message, " (", when(error.at), ")"),
    error.problems?.length
      ? h("ul", { class: "problems", "aria-label": "Problems" }, error.problems.map((p) => h("li", {}, h("code", {}, problem(p)))))
      : null,
    error.commit ? h("p", {}, "The previous commit keeps serving.") : null,
  );
}

export function sync(page: Page): void {
  page.title("Sync");
  const state = h("section", { "aria-labelledby": "state-h" }, h("h2", { id: "state-h" }, "Repository"), h("p", {}, "Loading…"));
  const result = h("div", { class: "result", "aria-live": "polite" });
  const button = h("button", { type: "button" }, "Refresh now");
  page.main.append(h("div", { class: "actions" }, button), result, state);

  const load = async () => {
    try {
      const s = await get<Status>("/status", { signal: page.signal });
      // A rejected commit stays shown through a later failure of another
      // kind (lastRejected, newer gitfaas), beside that failure.
      const error = s.sync.lastError;
      const rejected = s.sync.lastRejected && s.sync.lastRejected.commit !== error?.commit ? s.sync.lastRejected : null;
      replace(
        state,
        h("h2", { id: "state-h" }, "Repository"),
        facts([
          ["Source", h("code", {}, s.source)],
          ["Serving commit", h("code", { id: "serving-commit" }, s.commit ?? "none")],
          ["Last sync", when(s.sync.lastSync)],
          ["Last success", when(s.sync.lastSuccess)],
          ["Consecutive failures", String(s.sync.consecutiveFailures)],
          ["Functions' namespace", s.namespace],
          ["Topics", s.topics.map((t) => t.name).join(", ")],
        ]),
        error ? failure(error) : h("p", {}, "The last sync succeeded."),
        rejected ? failure(rejected) : null,
      );
    } catch (e) {
      if (!aborted(e)) replace(state, h("h2", { id: "state-h" }, "Repository"), errorBox(e, "The status could not be read:"));
    }
  };

  button.addEventListener("click", async () => {
    button.disabled = true;
    replace(result, h("p", {}, "Syncing…"));
    try {
      const { body } = await json<{ commit: string; changed: boolean }>("/refresh", { method: "POST" });
      replace(result, h("p", {}, body.changed ? "Synced: now serving " : "Synced: unchanged, serving ", h("code", {}, body.commit), "."));
    } catch (e) {
      replace(result, errorBox(e, "The sync failed:"));
    } finally {
      button.disabled = false;
      await load();
    }
  });
  load();
}
