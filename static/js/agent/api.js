// The adapter's REST calls (/apps/api/v1/agent/…): the session cookie, the CSRF header, JSON in
// and out. A refusal throws ApiError carrying the server's sentence ({"error": "..."}).

const BASE = "/apps/api/v1/agent";

export class ApiError extends Error {
  constructor(message, status, code = "") {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (method !== "GET") {
    headers["X-CSRFToken"] = csrfToken();
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body || {});
  }
  let response;
  try {
    response = await fetch(`${BASE}${path}`, init);
  } catch (err) {
    throw new ApiError("The portal cannot be reached. Check your connection.", 0, "network");
  }
  if (response.status === 401 || response.status === 403) {
    // The session ended (signed out elsewhere, or expired): back to the login page.
    const data = await response.json().catch(() => ({}));
    if (response.status === 401 || /credentials|authenticat/i.test(data.error || "")) {
      window.location.assign(`/accounts/login/?next=${encodeURIComponent(window.location.pathname)}`);
    }
    throw new ApiError(data.error || "Not allowed.", response.status, data.code || "");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(data.error || `The portal answered ${response.status}.`, response.status, data.code || "");
  }
  return data;
}

export const api = {
  state: () => call("GET", "/state"),
  setStatus: (status) => call("POST", "/status", { status }),
  stats: () => call("GET", "/stats"),
  outbound: (consumer_number, portal_number_id, body) =>
    call("POST", "/outbound", { consumer_number, portal_number_id, body }),
  transferTargets: () => call("GET", "/transfer-targets"),
  accept: (chatId) => call("POST", `/offers/${chatId}/accept`),
  messages: (chatId) => call("GET", `/chats/${chatId}/messages`),
  send: (chatId, body) => call("POST", `/chats/${chatId}/messages`, { body }),
  transfer: (chatId, target) => call("POST", `/chats/${chatId}/transfer`, target),
  end: (chatId) => call("POST", `/chats/${chatId}/end`),
  doNotContact: (chatId) => call("POST", `/chats/${chatId}/do-not-contact`),
  read: (chatId) => call("POST", `/chats/${chatId}/read`),
  contact: (chatId) => call("GET", `/chats/${chatId}/contact`),
  chooseContact: (chatId, choice) => call("POST", `/chats/${chatId}/contact`, choice),
  // Calls (SPEC B1–B3): the agent's calls, the texts beside them, in-call SMS and app links.
  calls: () => call("GET", "/calls"),
  callDetail: (callId) => call("GET", `/calls/${callId}`),
  callMessages: (callId) => call("GET", `/calls/${callId}/messages`),
  callOptions: (callId) => call("GET", `/calls/${callId}/presets`),
  openSmsSession: (callId) => call("POST", `/calls/${callId}/sms-session`),
  sendCallPreset: (callId, presetId) => call("POST", `/calls/${callId}/sms`, { preset_id: presetId }),
  sendCallText: (callId, body) => call("POST", `/calls/${callId}/sms`, { body }),
  sendAppLink: (callId, platform, link) => call("POST", `/calls/${callId}/app-link`, { platform, link }),
};
