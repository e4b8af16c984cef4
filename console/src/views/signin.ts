// The token prompt: the token is entered once and kept in this tab's session
// storage; a 401 anywhere brings the user back here.

import { ApiError, get, setToken } from "../api";
import { h } from "../dom";
import { errorBox, type Page } from "../page";

export function signin(page: Page, refused: ApiError | null, then: () => void): void {
  page.title("Sign in to gitfaas");
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    required: true,
    spellcheck: "false",
    "aria-describedby": "token-help",
  });
  const result = h("div", { class: "result" });
  const open = h("button", { type: "button", class: "secondary" }, "Continue without a token");
  const form = h(
    "form",
    { class: "signin", novalidate: true },
    h("label", { for: "token" }, "API token"),
    input,
    h(
      "p",
      { id: "token-help", class: "help" },
      "A token of gitfaas' --api-token-file, or a Kubernetes service-account token minted for gitfaas' audience. It is kept in this tab only (session storage) and sent as Authorization: Bearer.",
    ),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in"), open),
    result,
  );
  open.addEventListener("click", () => check(""));
  const check = async (value: string) => {
    setToken(value);
    try {
      await get("/requests", { query: { limit: "1" }, keepOn401: true });
      then();
    } catch (e) {
      setToken(null);
      result.replaceChildren(errorBox(e, value ? "The token was refused:" : "This gitfaas asks for a token:"));
      input.focus();
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) {
      result.replaceChildren(h("p", { class: "error", role: "alert" }, "Enter a token."));
      return;
    }
    check(value);
  });
  page.main.append(refused ? errorBox(refused, "Sign in again:") : "", form);
  input.focus();
}
