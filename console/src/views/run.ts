// One run: its facts, objects and their live status, functions' responses,
// attempts, callback, the pipeline tree, its logs (followed while it runs,
// the kept tail once its pods are gone), and cancel / retry, each asked to
// be confirmed first.

import { ApiError, get, json, raw, type Report, type RunDetail, type TreeNode } from "../api";
import { facts, h, link, replace, short, status, table, when, type Child } from "../dom";
import { aborted, errorBox, pause, type Page } from "../page";

const LIVE_MS = 2000;
const CANCELLABLE = ["Pending", "Queued", "Running"];

export function run(page: Page, uid: string): void {
  const heading = page.title("Run ", h("code", {}, uid));
  const summary = h("section", { "aria-labelledby": "summary-h" }, h("h2", { id: "summary-h" }, "Summary"), h("p", {}, "Loading…"));
  const actions = h("div", { class: "actions" });
  const objects = h("section", { "aria-labelledby": "objects-h" }, h("h2", { id: "objects-h" }, "Objects"));
  const functions = h("section", { "aria-labelledby": "functions-h" }, h("h2", { id: "functions-h" }, "Responses"));
  const tree = h("section", { "aria-labelledby": "tree-h" }, h("h2", { id: "tree-h" }, "Pipeline"));
  const logs = h("section", { "aria-labelledby": "logs-h" });
  page.main.append(summary, actions, logs, objects, functions, tree);

  let current: RunDetail | null = null;
  let logsStarted = false;

  const drawActions = (view: RunDetail) => {
    const buttons: Child[] = [];
    if (CANCELLABLE.includes(view.status)) {
      buttons.push(confirmable("Cancel run", "Confirm cancel", "Keep it running", async () => {
        const { body } = await json<RunDetail>(`/requests/${encodeURIComponent(uid)}`, { method: "DELETE" });
        draw(body);
        return `Cancelled: the run is ${body.status}.`;
      }));
    }
    if (view.status === "Failed") {
      buttons.push(confirmable("Retry run", "Confirm retry", "Do not retry", async () => {
        const { body } = await json<Report>(`/requests/${encodeURIComponent(uid)}/retry`, { method: "POST" });
        location.hash = `#/runs/${encodeURIComponent(body.requestUid)}`;
        return `Retried as ${body.requestUid}.`;
      }));
    }
    replace(actions, buttons);
  };

  const draw = (view: RunDetail) => {
    current = view;
    replace(
      summary,
      h("h2", { id: "summary-h" }, "Summary"),
      facts([
        ["Status", h("span", { id: "run-status" }, status(view.status))],
        ["Topic", link(`#/topics/${encodeURIComponent(view.topic)}`, view.topic)],
        ["Trigger", view.trigger],
        ["Scheduled for", when(view.scheduledTime)],
        ["Queue position", view.queue ? String(view.queue.position) : ""],
        ["Created", when(view.createdAt)],
        ["Expires", when(view.expiresAt)],
        ["Commit", h("code", {}, short(view.commit))],
        ["Parent", view.parent ? link(`#/runs/${encodeURIComponent(view.parent)}`, h("code", {}, view.parent)) : ""],
        ["Retry of", view.retryOf ? link(`#/runs/${encodeURIComponent(view.retryOf)}`, h("code", {}, view.retryOf)) : ""],
        ["Children", view.children.length ? h("ul", { class: "inline" }, view.children.map((c) => h("li", {}, link(`#/runs/${encodeURIComponent(c)}`, h("code", {}, c))))) : ""],
        ["CloudEvent", view.cloudEvent ? h("code", {}, JSON.stringify(view.cloudEvent)) : ""],
        ["Report", view.report && typeof view.report.message === "string" ? view.report.message : ""],
      ]),
      view.attempts?.length
        ? table("Apply attempts", ["At", "Outcome"], view.attempts.map((a) => [when(String(a.at ?? "")), JSON.stringify(a)]))
        : null,
      view.callback
        ? h("details", {}, h("summary", {}, "Callback"), h("pre", { class: "json" }, JSON.stringify(view.callback, null, 2)))
        : null,
    );
    drawActions(view);
    replace(
      objects,
      h("h2", { id: "objects-h" }, "Objects"),
      view.objects.length
        ? table(
            "Objects the run applied, with their live status",
            ["Kind", "Namespace", "Name", "Manifest", "Phase", "Active / succeeded / failed", "Conditions"],
            view.objects.map((o) => [
              o.kind,
              o.namespace ?? "",
              h("code", {}, o.name),
              o.path,
              o.status.phase ? status(String(o.status.phase)) : "",
              ["active", "succeeded", "failed"].map((k) => String(o.status[k] ?? 0)).join(" / "),
              conditions(o.status.conditions),
            ]),
          )
        : h("p", {}, "No object (yet)."),
    );
    replace(
      functions,
      h("h2", { id: "functions-h" }, "Responses"),
      view.functions.length
        ? view.functions.map((f) =>
            h(
              "div",
              { class: "response" },
              h("h3", {}, f.path, " ", h("code", {}, f.functionUid)),
              f.response === null ? h("p", {}, "No response yet.") : h("pre", { class: "json" }, typeof f.response === "string" ? f.response : JSON.stringify(f.response, null, 2)),
            ),
          )
        : h("p", {}, "No function."),
    );
    if (!logsStarted) {
      logsStarted = true;
      // Followed while the run may still print: not once it is settled.
      followLogs(page, uid, logs, () => !!current && (current.done || !CANCELLABLE.includes(current.status)));
    }
  };

  const drawTree = async () => {
    try {
      const body = await get<{ root: TreeNode; truncated: boolean }>(`/requests/${encodeURIComponent(uid)}/tree`, { signal: page.signal });
      const node = (n: TreeNode): HTMLElement =>
        h(
          "li",
          {},
          n.requestUid === uid ? h("strong", {}, h("code", {}, n.requestUid)) : link(`#/runs/${encodeURIComponent(n.requestUid)}`, h("code", {}, n.requestUid)),
          " ",
          n.topic,
          " ",
          status(n.status),
          n.children.length ? h("ul", {}, n.children.map(node)) : null,
        );
      replace(tree, h("h2", { id: "tree-h" }, "Pipeline"), h("ul", { class: "tree" }, node(body.root)), body.truncated ? h("p", {}, "The tree is cut (too many runs).") : null);
    } catch (e) {
      if (!aborted(e)) replace(tree, h("h2", { id: "tree-h" }, "Pipeline"), errorBox(e, "The pipeline could not be read:"));
    }
  };

  (async () => {
    let treeDrawn = "";
    while (!page.signal.aborted) {
      try {
        const view = await get<RunDetail>(`/requests/${encodeURIComponent(uid)}`, { signal: page.signal });
        draw(view);
        if (treeDrawn !== view.status) {
          treeDrawn = view.status;
          await drawTree();
        }
        if (view.done && view.status !== "Pending" && view.status !== "Queued") return;
      } catch (e) {
        if (aborted(e)) return;
        if (e instanceof ApiError && e.status === 404) {
          notFound(page, heading, e);
          return;
        }
        replace(summary, h("h2", { id: "summary-h" }, "Summary"), errorBox(e, "The run could not be read:"));
      }
      await pause(LIVE_MS, page.signal);
    }
  })();
}

function notFound(page: Page, heading: HTMLElement, e: ApiError): void {
  heading.textContent = "Run not found";
  document.title = "Run not found · gitfaas";
  replace(
    page.main,
    heading,
    errorBox(e, "gitfaas has no such run: it never existed, or its record expired."),
    h("p", {}, link("#/runs", "Back to the runs")),
  );
}

function conditions(value: unknown): Child {
  if (!Array.isArray(value) || value.length === 0) return "";
  return h(
    "ul",
    { class: "plain" },
    value.map((c) => {
      const o = c as Record<string, unknown>;
      return h("li", {}, `${o.type ?? ""}${o.reason ? ` (${o.reason})` : ""}${o.message ? `: ${o.message}` : ""}`);
    }),
  );
}

/// A button that asks to be confirmed before it does anything.
function confirmable(label: string, yes: string, no: string, act: () => Promise<string>): HTMLElement {
  const box = h("div", { class: "confirmable" });
  const result = h("div", { class: "result", "aria-live": "polite" });
  const start = h("button", { type: "button" }, label);
  const ask = () => {
    const confirm = h("button", { type: "button", class: "danger" }, yes);
    const cancel = h("button", { type: "button" }, no);
    confirm.addEventListener("click", async () => {
      confirm.disabled = true;
      try {
        replace(result, h("p", {}, await act()));
        replace(box, result);
      } catch (e) {
        replace(box, start, result);
        replace(result, errorBox(e, `${label} failed:`));
      }
    });
    cancel.addEventListener("click", () => {
      replace(box, start, result);
      start.focus();
    });
    replace(box, h("span", { class: "ask" }, `${label}?`), " ", confirm, " ", cancel, result);
    confirm.focus();
  };
  start.addEventListener("click", ask);
  box.append(start, result);
  return box;
}

/// The logs: followed while the run runs, read once when it has finished
/// (from the pods, or the tail gitfaas kept once they are gone).
function followLogs(page: Page, uid: string, section: HTMLElement, done: () => boolean): void {
  const source = h("p", { class: "log-source" });
  const pre = h("pre", { class: "log", id: "log", tabindex: 0, role: "log", "aria-live": "off", "aria-label": "Log lines" });
  replace(section, h("h2", { id: "logs-h" }, "Logs"), source, pre);
  (async () => {
    for (let round = 0; !page.signal.aborted; round++) {
      const follow = !done();
      try {
        const response = await raw(`/requests/${encodeURIComponent(uid)}/logs`, {
          query: follow ? { follow: "true" } : {},
          signal: page.signal,
          headers: { Accept: "text/plain" },
        });
        const state = response.headers.get("Gitfaas-Run-Status") ?? "";
        const from = response.headers.get("Gitfaas-Log-Source") ?? "";
        const where = from === "kept" ? "the lines gitfaas kept when the run ended (its pods are gone)" : "the pods' logs";
        source.textContent = follow
          ? `Following ${where}…`
          : state === "NoJobs"
            ? "The run created no Job: no log."
            : state === "Gone"
              ? "The run's Jobs are gone and nothing of their logs was kept."
              : `Read ${where}; the run was ${state} then.`;
        if (follow) {
          // Lines as they come.
          pre.textContent = "";
          const reader = response.body?.getReader();
          const decoder = new TextDecoder();
          if (reader) {
            for (;;) {
              const { value, done: end } = await reader.read();
              if (end) break;
              pre.append(decoder.decode(value, { stream: true }));
              pre.scrollTop = pre.scrollHeight;
            }
            pre.append(decoder.decode());
          }
        } else {
          // Read again whole, then shown at once: the lines already shown
          // never blink away.
          pre.textContent = await response.text();
        }
        if (!pre.textContent) pre.textContent = state === "Pending" ? "(no container has started yet)" : "(no log lines)";
        if (follow) source.textContent = `Followed ${where} until the run's Jobs finished.`;
        // A follow that ended with the run: read once more so that the last
        // lines and the final source show. A pending run's empty answer:
        // ask again shortly.
        if (state === "Pending" || (follow && round < 1)) {
          await pause(LIVE_MS, page.signal);
          continue;
        }
        return;
      } catch (e) {
        if (aborted(e)) return;
        replace(section, h("h2", { id: "logs-h" }, "Logs"), errorBox(e, "The logs could not be read:"));
        return;
      }
    }
  })();
}
