// The history of runs: filters (topic, status, trigger) in the URL's hash,
// cursor pages, and the page kept live by asking again every few seconds.

import { get, type Page as RunPage } from "../api";
import { h, link, replace, short, status, table, when } from "../dom";
import { aborted, errorBox, pause, type Page } from "../page";

const STATUSES = ["", "Pending", "Queued", "Running", "Succeeded", "Failed", "Cancelled"];
const TRIGGERS = ["", "http", "schedule", "cloudevent"];
const LIVE_MS = 3000;

export function runs(page: Page, params: URLSearchParams): void {
  page.title("Runs");
  const topic = params.get("topic") ?? "";
  const state = params.get("status") ?? "";
  const trigger = params.get("trigger") ?? "";
  const cursor = params.get("cursor") ?? "";
  // The cursors of the pages before this one, to go back.
  const back = params.getAll("back");

  const select = (id: string, label: string, options: string[], value: string) => [
    h("label", { for: id }, label),
    h(
      "select",
      { id, name: id },
      options.map((o) => h("option", { value: o, selected: o === value }, o || "any")),
    ),
  ];
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter runs" },
    h("div", {}, h("label", { for: "f-topic" }, "Topic"), h("input", { id: "f-topic", name: "topic", value: topic, autocomplete: "off" })),
    h("div", {}, select("f-status", "Status", STATUSES, state)),
    h("div", {}, select("f-trigger", "Trigger", TRIGGERS, trigger)),
    h("button", { type: "submit" }, "Filter"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = new URLSearchParams();
    for (const [k, v] of [["topic", data.get("topic")], ["status", data.get("f-status")], ["trigger", data.get("f-trigger")]] as const) {
      if (typeof v === "string" && v.trim()) next.set(k, v.trim());
    }
    location.hash = `#/runs?${next}`;
  });

  const filters = new URLSearchParams();
  if (topic) filters.set("topic", topic);
  if (state) filters.set("status", state);
  if (trigger) filters.set("trigger", trigger);

  const list = h("div", { class: "list" }, h("p", {}, "Loading…"));
  const updated = h("p", { class: "updated", "aria-live": "off" });
  page.main.append(form, list, updated);

  const draw = (body: RunPage) => {
    const rows = body.runs.map((r) => [
      link(`#/runs/${encodeURIComponent(r.requestUid)}`, h("code", {}, r.requestUid)),
      link(`#/topics/${encodeURIComponent(r.topic)}`, r.topic),
      status(r.status),
      r.trigger,
      when(r.createdAt),
      h("code", {}, short(r.commit)),
      r.parent ? link(`#/runs/${encodeURIComponent(r.parent)}`, h("code", {}, r.parent.slice(0, 14))) : "",
    ]);
    const nav = h("nav", { class: "pager", "aria-label": "Pages of runs" });
    if (cursor) {
      const prev = new URLSearchParams(filters);
      const before = back.slice(0, -1);
      const prevCursor = back[back.length - 1];
      if (prevCursor) prev.set("cursor", prevCursor);
      for (const b of before) prev.append("back", b);
      nav.append(link(`#/runs?${filters}`, "Newest"), " ", link(`#/runs?${prev}`, "Previous page"));
    }
    if (body.next) {
      const next = new URLSearchParams(filters);
      next.set("cursor", body.next);
      for (const b of back) next.append("back", b);
      next.append("back", cursor);
      nav.append(" ", link(`#/runs?${next}`, "Next page"));
    }
    replace(
      list,
      body.runs.length
        ? table("Runs, newest first", ["Run", "Topic", "Status", "Trigger", "Created", "Commit", "Parent"], rows, "one-line")
        : h("p", { class: "empty" }, "No runs match."),
      nav,
    );
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshed every ${LIVE_MS / 1000} s.`;
  };

  (async () => {
    const query: Record<string, string> = Object.fromEntries(filters);
    query.limit = "50";
    if (cursor) query.cursor = cursor;
    while (!page.signal.aborted) {
      try {
        draw(await get<RunPage>("/requests", { query, signal: page.signal }));
      } catch (e) {
        if (aborted(e)) return;
        replace(list, errorBox(e, "The runs could not be listed:"));
        return;
      }
      await pause(LIVE_MS, page.signal);
    }
  })();
}
