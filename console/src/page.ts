// What a page is given: where to draw, and a signal that ends when the user
// leaves it (its polls and log streams stop then).

import { ApiError } from "./api";
import { h, type Child } from "./dom";

export interface Page {
  main: HTMLElement;
  signal: AbortSignal;
  /// Sets the document's title and the page's heading (focused, so that a
  /// screen reader announces the new page).
  title(text: string, ...extra: Child[]): HTMLHeadingElement;
}

/// An error as the API worded it: its message and code.
export function errorBox(error: unknown, what?: string): HTMLElement {
  if (error instanceof ApiError) {
    const problems = Array.isArray(error.body.problems) ? (error.body.problems as unknown[]) : [];
    return h(
      "div",
      { class: "error", role: "alert" },
      what ? h("p", { class: "what" }, what) : null,
      h("p", { class: "message" }, error.message),
      h(
        "p",
        { class: "code" },
        error.status ? `HTTP ${error.status} · code ` : "code ",
        h("code", {}, error.code),
      ),
      typeof error.body.requestUid === "string" && !error.body.filtered
        ? h("p", { class: "run" }, "Its run: ", h("a", { href: `#/runs/${encodeURIComponent(error.body.requestUid)}` }, h("code", {}, error.body.requestUid)))
        : null,
      problems.length
        ? h(
            "ul",
            { class: "problems", "aria-label": "Problems" },
            problems.map((p) => h("li", {}, h("code", {}, problemText(p)))),
          )
        : null,
    );
  }
  return h("div", { class: "error", role: "alert" }, what ?? "", " ", String(error));
}

function problemText(p: unknown): string {
  if (p && typeof p === "object") {
    const o = p as { file?: string; line?: number; message?: string };
    return o.line ? `${o.file}:${o.line}: ${o.message}` : `${o.file}: ${o.message}`;
  }
  return String(p);
}

/// Waits `ms`, or less when the page is left.
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

export function aborted(e: unknown): boolean {
  return e instanceof DOMException && e.name === "AbortError";
}
