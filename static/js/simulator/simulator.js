// The phone simulator: send texts as a consumer, poll the thread once a second.
const $ = (id) => document.getElementById(id);
const csrf = () => document.querySelector("input[name=csrfmiddlewaretoken]").value;
const POLL_MS = 1000;

function renderThread(messages) {
  const thread = $("thread");
  const atBottom = thread.parentElement.scrollTop + thread.parentElement.clientHeight >= thread.parentElement.scrollHeight - 20;
  thread.replaceChildren(
    ...messages.map((m) => {
      const li = document.createElement("li");
      li.className = `bubble ${m.direction}`;
      li.dataset.key = m.key;
      for (const item of m.media || []) {
        const video = item.content_type.startsWith("video/");
        const el = document.createElement(video ? "video" : "img");
        el.src = item.url;
        if (video) el.controls = true;
        else el.alt = "Picture sent";
        li.append(el);
      }
      const text = document.createElement("div");
      text.className = "text";
      text.textContent = m.body; // always text, never HTML
      const meta = document.createElement("div");
      meta.className = `meta status-${m.status}`;
      const time = new Date(m.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
      meta.textContent = m.direction === "out" ? `${time} · ${m.status}${m.error ? " — " + m.error : ""}` : time;
      li.append(text, meta);
      return li;
    }),
  );
  if (atBottom) thread.parentElement.scrollTop = thread.parentElement.scrollHeight;
}

async function refresh() {
  const params = new URLSearchParams({ consumer: $("consumer").value.trim(), portal: $("portal").value });
  try {
    const response = await fetch(`/simulator/messages/?${params}`, { headers: { Accept: "application/json" } });
    if (response.ok) renderThread((await response.json()).messages);
  } catch (err) {
    /* the next poll tries again */
  }
}

$("compose").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = $("body").value;
  const file = $("media").files[0];
  if (!body.trim() && !file) return;
  const form = new FormData();
  form.append("consumer", $("consumer").value.trim());
  form.append("portal", $("portal").value);
  form.append("body", body);
  if (file) form.append("media", file);
  const response = await fetch("/simulator/send/", { method: "POST", body: form, headers: { "X-CSRFToken": csrf() } });
  const data = await response.json();
  $("error").textContent = response.ok ? "" : data.error;
  if (response.ok) {
    $("body").value = "";
    $("media").value = "";
    showAttached();
  }
  refresh();
});

function showAttached() {
  const file = $("media").files[0];
  $("attached").hidden = !file;
  $("attached").textContent = file ? `Attached: ${file.name} (${Math.ceil(file.size / 1024)} KB)` : "";
}
$("media").addEventListener("change", showAttached);
$("consumer").addEventListener("change", refresh);
$("portal").addEventListener("change", refresh);
refresh();
setInterval(refresh, POLL_MS);
