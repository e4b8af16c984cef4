// Publishing from a form: a dry run first, which shows the objects exactly as
// the API server would apply them and the policy's verdict; only then may the
// same request be published, and the run is followed on its own page.

import { ApiError, get, json, type Report, type Status, type Topics } from "../api";
import { h, link, replace } from "../dom";
import { aborted, errorBox, type Page } from "../page";

interface Request {
  topic: string;
  body: string;
  json: boolean;
  params: [string, string][];
  key: string;
  callback: string;
}

export function publish(page: Page, preset: string): void {
  page.title("Publish");
  const topicSelect = h("select", { id: "p-topic", name: "topic", required: true }, h("option", { value: preset }, preset || "Loading…"));
  const format = (value: string, label: string, checked: boolean) =>
    h("label", { class: "inline" }, h("input", { type: "radio", name: "format", value, checked }), ` ${label}`);
  const body = h("textarea", { id: "p-body", name: "body", rows: 6, spellcheck: "false" });
  const params = h("textarea", { id: "p-params", name: "params", rows: 3, spellcheck: "false", "aria-describedby": "p-params-help" });
  const key = h("input", { id: "p-key", name: "key", autocomplete: "off" });
  const callback = h("input", { id: "p-callback", name: "callback", type: "url", autocomplete: "off", "aria-describedby": "p-callback-help" });
  const dry = h("button", { type: "submit" }, "Dry run");
  const go = h("button", { type: "button", disabled: true, "aria-describedby": "p-go-help" }, "Publish");
  const result = h("div", { class: "result", "aria-live": "polite" });

  const form = h(
    "form",
    { class: "publish", "aria-label": "Publish a request" },
    h("div", { class: "field" }, h("label", { for: "p-topic" }, "Topic"), topicSelect),
    h("fieldset", {}, h("legend", {}, "Body format"), format("json", "JSON", false), format("text", "Text", true)),
    h("div", { class: "field" }, h("label", { for: "p-body" }, "Body"), body),
    h(
      "div",
      { class: "field" },
      h("label", { for: "p-params" }, "Parameters"),
      params,
      h("p", { id: "p-params-help", class: "help" }, "One name=value per line: the query parameters that fill the topic's template variables."),
    ),
    h("div", { class: "field" }, h("label", { for: "p-key" }, "Idempotency-Key"), key),
    h(
      "div",
      { class: "field" },
      h("label", { for: "p-callback" }, "Callback URL"),
      callback,
      h("p", { id: "p-callback-help", class: "help" }, "Sent as X-Callback-Url: gitfaas posts the run there when its Jobs have finished."),
    ),
    h("div", { class: "actions" }, dry, " ", go),
    h("p", { id: "p-go-help", class: "help" }, "Publish is enabled once a dry run of exactly this request has passed; changing anything asks for a new dry run."),
  );
  page.main.append(form, result);

  const read = (): Request => {
    const data = new FormData(form);
    const lines = String(data.get("params") ?? "")
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
    return {
      topic: topicSelect.value,
      body: body.value,
      json: data.get("format") === "json",
      params: lines.map((l) => {
        const at = l.indexOf("=");
        return at < 0 ? [l, ""] : [l.slice(0, at).trim(), l.slice(at + 1)];
      }),
      key: key.value.trim(),
      callback: callback.value.trim(),
    };
  };

  let checked: string | null = null;
  form.addEventListener("input", () => {
    if (checked !== null && checked !== JSON.stringify(read())) {
      checked = null;
      go.disabled = true;
    }
  });

  const send = (request: Request, dryRun: boolean) => {
    const query: Record<string, string> = {};
    const search = new URLSearchParams();
    for (const [k, v] of request.params) search.append(k, v);
    if (dryRun) search.set("dryRun", "true");
    for (const [k, v] of search) query[k] = v;
    const headers: Record<string, string> = {
      "Content-Type": request.json ? "application/json" : "text/plain; charset=utf-8",
    };
    if (request.key) headers["Idempotency-Key"] = request.key;
    if (request.callback) headers["X-Callback-Url"] = request.callback;
    return json<Report>(`/publish/${encodeURIComponent(request.topic)}`, { method: "POST", query, body: request.body, headers });
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const request = read();
    if (!request.topic) return;
    dry.disabled = true;
    go.disabled = true;
    checked = null;
    replace(result, h("p", {}, "Dry run…"));
    try {
      const { body: report } = await send(request, true);
      if (report.filtered) {
        replace(result, h("p", { class: "verdict" }, `Filtered: ${(report as unknown as { message: string }).message}`));
      } else {
        checked = JSON.stringify(request);
        go.disabled = false;
        replace(
          result,
          h("h2", {}, "Dry run of ", h("code", {}, report.topic)),
          h(
            "p",
            { class: "verdict ok" },
            "Allowed: the policy accepts every object and the API server's dry run passed. Nothing was applied.",
          ),
          report.applies.map((a) =>
            h(
              "section",
              { class: "rendered" },
              h("h3", {}, h("code", {}, a.path), " — ", a.message),
              (a.rendered ?? []).map((o, i) =>
                h("figure", {}, h("figcaption", {}, `Object ${i + 1} of ${a.path}, as it would be applied`), h("pre", { tabindex: 0, class: "json" }, JSON.stringify(o, null, 2))),
              ),
            ),
          ),
        );
      }
    } catch (e) {
      replace(result, errorBox(e, e instanceof ApiError && e.code === "policy_violation" ? "Refused by the policy: nothing would be applied." : "The dry run failed: nothing was applied."));
    } finally {
      dry.disabled = false;
    }
  });

  go.addEventListener("click", async () => {
    const request = read();
    if (checked !== JSON.stringify(request)) return;
    go.disabled = true;
    replace(result, h("p", {}, "Publishing…"));
    try {
      const { body: report } = await send(request, false);
      if (report.filtered) {
        replace(result, h("p", {}, `Filtered: ${(report as unknown as { message: string }).message}`));
        return;
      }
      location.hash = `#/runs/${encodeURIComponent(report.requestUid)}`;
    } catch (e) {
      replace(result, errorBox(e, "The publish failed:"));
      go.disabled = false;
    }
  });

  (async () => {
    let names: string[];
    try {
      names = (await get<Topics>("/topics", { signal: page.signal })).topics.map((t) => t.name);
    } catch (e) {
      if (aborted(e)) return;
      // A gitfaas without GET /topics (404) lists them in /status; any other
      // refusal is shown, then /status' list is used all the same.
      if (!(e instanceof ApiError && e.status === 404)) result.append(errorBox(e, "The topics could not be listed (the form offers those /status names):"));
      try {
        names = (await get<Status>("/status", { signal: page.signal })).topics.map((t) => t.name);
      } catch (e2) {
        if (!aborted(e2)) result.append(errorBox(e2, "The topics could not be read:"));
        return;
      }
    }
    if (preset && !names.includes(preset)) names.unshift(preset);
    replace(topicSelect, names.map((n) => h("option", { value: n, selected: n === preset }, n)));
    if (!names.length) result.append(h("p", {}, "No topic to publish to. ", link("#/sync", "See the sync")));
  })();
}
