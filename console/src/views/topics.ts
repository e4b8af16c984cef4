// The topics of the serving commit (GET /topics), and one topic with its
// manifests as the repository has them and its last runs.

import { ApiError, get, type Page as RunPage, type Status, type Topic, type TopicDetail, type Topics } from "../api";
import { facts, h, link, replace, short, status, table, when, type Child } from "../dom";
import { aborted, errorBox, type Page } from "../page";

function limits(t: Topic): Child {
  const parts: string[] = [];
  if (t.maxConcurrent !== null && t.maxConcurrent !== undefined) {
    parts.push(`at most ${t.maxConcurrent} at once`);
    if (t.overflow) {
      const queue = [t.maxQueued ? `${t.maxQueued} runs` : "", t.maxQueuedBytes ? `${t.maxQueuedBytes} bytes` : ""].filter(Boolean).join(", ");
      parts.push(`then ${t.overflow}${queue ? ` (at most ${queue})` : ""}`);
    }
  }
  if (t.retry) parts.push(`retried ${t.retry.attempts} times, backoff ${t.retry.backoff} up to ${t.retry.maxBackoff}`);
  return parts.join("; ");
}

function schedule(t: { schedule?: Topic["schedule"] }): Child {
  const s = t.schedule;
  if (!s) return "";
  return `${s.cron} (${s.timezone})${s.nextTick ? `, next ${when(s.nextTick)}` : ""}`;
}

/// Each topic's last run, one page of one run per topic (the first 50
/// topics: a repository of hundreds shows the rest on their own pages).
async function lastRuns(cells: Map<string, HTMLElement>, signal: AbortSignal): Promise<void> {
  let n = 0;
  for (const [name, cell] of cells) {
    if (signal.aborted) return;
    if (n++ >= 50) {
      replace(cell, link(`#/runs?topic=${encodeURIComponent(name)}`, "runs"));
      continue;
    }
    try {
      const page = await get<RunPage>("/requests", { query: { topic: name, limit: "1" }, signal });
      const run = page.runs[0];
      replace(cell, run ? [link(`#/runs/${encodeURIComponent(run.requestUid)}`, when(run.createdAt)), " ", status(run.status)] : "none");
    } catch (e) {
      if (aborted(e)) return;
      replace(cell, e instanceof ApiError ? `${e.code}` : "?");
    }
  }
}

export function topics(page: Page): void {
  page.title("Topics");
  const body = h("div", {}, h("p", {}, "Loading…"));
  page.main.append(body);
  (async () => {
    try {
      const answer = await get<Topics>("/topics", { signal: page.signal });
      const last = new Map(answer.topics.map((t) => [t.name, h("span", {}, "…")]));
      replace(
        body,
        h("p", {}, "Serving commit ", h("code", {}, short(answer.commit) || "none"), "."),
        answer.topics.length
          ? table(
              "Topics of the serving commit",
              ["Topic", "Files", "Limits and queue", "Schedule", "Filter", "Last run", "Publish"],
              answer.topics.map((t) => [
                link(`#/topics/${encodeURIComponent(t.name)}`, t.name),
                t.files.join(", "),
                limits(t),
                schedule(t),
                t.filter ? h("code", {}, t.filter) : "",
                last.get(t.name),
                link(`#/publish/${encodeURIComponent(t.name)}`, `Publish to ${t.name}`),
              ]),
            )
          : h("p", {}, "The serving commit has no topic."),
      );
      await lastRuns(last, page.signal);
    } catch (e) {
      if (aborted(e)) return;
      // An older gitfaas without GET /topics: its error, then what /status
      // says of the topics.
      replace(body, errorBox(e, "The topics could not be read:"));
      if (e instanceof ApiError && e.status === 401) return;
      try {
        const s = await get<Status>("/status", { signal: page.signal });
        body.append(
          table(
            "Topics (from /status)",
            ["Topic", "Files", "Schedule", "Publish"],
            s.topics.map((t) => [link(`#/topics/${encodeURIComponent(t.name)}`, t.name), t.configs.join(", "), schedule(t), link(`#/publish/${encodeURIComponent(t.name)}`, `Publish to ${t.name}`)]),
          ),
        );
      } catch (e2) {
        if (!aborted(e2)) body.append(errorBox(e2, "Nor could the status be read:"));
      }
    }
  })();
}

export function topic(page: Page, name: string): void {
  page.title("Topic ", h("code", {}, name));
  const about = h("section", { "aria-labelledby": "about-h" }, h("h2", { id: "about-h" }, "Settings"), h("p", {}, "Loading…"));
  const recent = h("section", { "aria-labelledby": "recent-h" }, h("h2", { id: "recent-h" }, "Last runs"));
  const manifests = h("section", { "aria-labelledby": "manifests-h" }, h("h2", { id: "manifests-h" }, "Manifests"));
  page.main.append(h("p", {}, link(`#/publish/${encodeURIComponent(name)}`, `Publish to ${name}`)), about, recent, manifests);
  (async () => {
    try {
      const t = await get<TopicDetail>(`/topics/${encodeURIComponent(name)}`, { signal: page.signal });
      replace(
        about,
        h("h2", { id: "about-h" }, "Settings"),
        facts([
          ["Commit", h("code", {}, short(t.commit))],
          ["Files", t.files.join(", ")],
          ["Limits and queue", limits(t) || "none"],
          ["Schedule", schedule(t)],
          ["Filter", t.filter ? h("code", {}, t.filter) : ""],
          ["Result", t.result ?? ""],
        ]),
      );
      replace(
        manifests,
        h("h2", { id: "manifests-h" }, "Manifests"),
        t.manifests.map((m) => h("figure", { class: "manifest" }, h("figcaption", {}, h("code", {}, m.path)), h("pre", { tabindex: 0 }, m.text))),
      );
    } catch (e) {
      if (aborted(e)) return;
      replace(about, h("h2", { id: "about-h" }, "Settings"), errorBox(e, `The topic ${name} could not be read:`));
      manifests.remove();
    }
    try {
      const runs = await get<RunPage>("/requests", { query: { topic: name, limit: "10" }, signal: page.signal });
      replace(
        recent,
        h("h2", { id: "recent-h" }, "Last runs"),
        runs.runs.length
          ? table(
              `Last runs of ${name}`,
              ["Run", "Status", "Trigger", "Created"],
              runs.runs.map((r) => [link(`#/runs/${encodeURIComponent(r.requestUid)}`, h("code", {}, r.requestUid)), status(r.status), r.trigger, when(r.createdAt)]),
            )
          : h("p", {}, "No run recorded."),
        h("p", {}, link(`#/runs?topic=${encodeURIComponent(name)}`, "Every run of this topic")),
      );
    } catch (e) {
      if (!aborted(e)) replace(recent, h("h2", { id: "recent-h" }, "Last runs"), errorBox(e, "Its runs could not be listed:"));
    }
  })();
}
