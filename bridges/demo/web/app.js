// The demo messenger's page: a user picker, a room list, a conversation and
// a search of the health directory. It talks only to its own app's API;
// the app talks to the hub.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { user: "", room: "", rooms: [] };

async function api(path, body) {
  const res = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

async function loadConfig() {
  const cfg = await api("/api/config");
  document.title = cfg.name + " — EIMIS demo";
  $("app-name").textContent = cfg.name;
  document.documentElement.style.setProperty("--accent", cfg.color);
  const sel = $("user");
  const keep = state.user;
  sel.replaceChildren(...cfg.users.map((u) => new Option(u.name, u.user_id)));
  if (cfg.users.some((u) => u.user_id === keep)) sel.value = keep;
  state.user = sel.value;
}

async function loadRooms() {
  if (!state.user) return;
  const { rooms } = await api("/api/rooms?as=" + encodeURIComponent(state.user));
  state.rooms = rooms;
  if (!state.room && rooms.length) state.room = rooms[0].id;
  render();
}

function render() {
  $("rooms").replaceChildren(...state.rooms.map((r) => {
    const li = document.createElement("li");
    li.textContent = r.name || "Conversation";
    li.dataset.room = r.id;
    li.className = r.id === state.room ? "active" : "";
    li.onclick = () => { state.room = r.id; render(); };
    return li;
  }));
  const room = state.rooms.find((r) => r.id === state.room);
  $("room-name").textContent = room ? (room.name || "Conversation") : "Choisissez une conversation";
  $("text").disabled = $("send").disabled = !room;
  $("messages").replaceChildren(...((room && room.messages) || []).map((m) => {
    const li = document.createElement("li");
    li.className = m.external ? "external" : "";
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = m.name;
    const body = document.createElement("span");
    body.className = "body";
    body.textContent = m.body; // text only: never inject received HTML
    li.append(who, body);
    return li;
  }));
  $("messages").scrollTop = $("messages").scrollHeight;
}

$("user").onchange = () => { state.user = $("user").value; state.room = ""; loadRooms(); };

$("composer").onsubmit = async (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text || !state.room) return;
  $("text").value = "";
  try {
    await api("/api/send", { as: state.user, room: state.room, text, txn: crypto.randomUUID() });
  } catch (err) {
    alert("Envoi impossible : " + err.message);
  }
};

let searchTimer;
$("search").oninput = () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const q = $("search").value.trim();
    if (q.length < 2) { $("results").replaceChildren(); return; }
    const { results } = await api("/api/search?q=" + encodeURIComponent(q));
    $("results").replaceChildren(...results.map((p) => {
      const li = document.createElement("li");
      li.textContent = p.display_name;
      li.onclick = async () => {
        const { room_id } = await api("/api/rooms", { as: state.user, invite: [p.idnat] });
        state.room = room_id;
        $("search").value = "";
        $("results").replaceChildren();
        loadRooms();
      };
      return li;
    }));
  }, 250);
};
$("new-room").onsubmit = (e) => e.preventDefault();

function listen() {
  const es = new EventSource("/api/events");
  es.onmessage = async (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === "users") await loadConfig();
    loadRooms();
  };
  // Belt and braces: a proxy that buffers event streams, or a nudge
  // dropped for a slow page, costs at most two seconds.
  setInterval(() => loadRooms().catch(() => {}), 2000);
}

loadConfig().then(loadRooms).then(listen);
