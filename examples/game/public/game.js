// The game page. It talks to examples/game/server.py with the official Socket.IO client
// (loaded before this script as the global `io`).
//
// Sends:     input({x, y}) with x, y in -1, 0, 1 (the keys held), or input({tx, ty}) (a point)
// Receives:  welcome({id, w, h, r, cr, hz}), players([[id, name, color], ...]),
//            world({t, p: [[id, x, y, score], ...], c: [[x, y], ...]})  (volatile, 30 Hz)
//
// Open /?name=ada to join at once. For tests, the page keeps the last world received in
// `window.gameState`, its player id in `window.myId` and a count in `window.worldsReceived`.
"use strict";

(() => {
  const KEYS = {
    ArrowLeft: [-1, 0], KeyA: [-1, 0],
    ArrowRight: [1, 0], KeyD: [1, 0],
    ArrowUp: [0, -1], KeyW: [0, -1],
    ArrowDown: [0, 1], KeyS: [0, 1],
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"),
    whoami: $("whoami"),
    join: $("join"),
    joinForm: $("join-form"),
    name: $("name"),
    joinError: $("join-error"),
    canvas: $("arena"),
    scores: $("scores"),
    playerCount: $("player-count"),
    stats: $("stats"),
  };
  const ctx = ui.canvas.getContext("2d");

  let socket = null;
  let arena = { w: 960, h: 540, r: 14, cr: 8, hz: 30 };
  const roster = new Map(); // id -> {name, color}
  let previous = null; // the world before `current`, for interpolation
  let current = null; // {world, at}: the last world and when it came (performance.now())
  const arrivals = []; // arrival times of the last second's worlds
  const held = new Set(); // the movement keys held down (KeyboardEvent.code)
  let sentKeys = "0,0"; // the direction the server last heard
  let shownScores = "";

  window.gameState = null;
  window.myId = null;
  window.worldsReceived = 0;

  function setStatus(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
  }

  // -- joining -----------------------------------------------------------------------------
  ui.joinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = ui.name.value.trim();
    if (name) join(name);
  });

  function join(name) {
    ui.joinError.hidden = true;
    ui.join.hidden = true;
    setStatus("connecting", "connecting…");
    socket = io({
      // WebSocket only: the world comes 30 times a second as volatile packets, which the
      // server drops whenever the connection cannot take them at once; over HTTP long
      // polling (between two polls) that would be most of them.
      transports: ["websocket"],
      auth: { name },
      reconnectionDelayMax: 3000,
    });

    socket.on("connect", () => setStatus("online", "connected"));
    socket.on("connect_error", (err) => {
      if (socket.active) {
        setStatus("reconnecting", "cannot reach the server, retrying…");
      } else {
        // Refused by the server (no name, or the game is full).
        setStatus("refused", "refused");
        ui.joinError.textContent = err.message;
        ui.joinError.hidden = false;
        ui.join.hidden = false;
      }
    });
    socket.on("disconnect", (reason) => {
      current = previous = null;
      window.gameState = null;
      if (socket.active) setStatus("reconnecting", `connection lost (${reason}), reconnecting…`);
      else setStatus("offline", `disconnected (${reason})`);
    });
    socket.io.on("reconnect_attempt", (attempt) => {
      setStatus("reconnecting", `reconnecting… (attempt ${attempt})`);
    });

    socket.on("welcome", (info) => {
      arena = info;
      window.myId = info.id;
      ui.whoami.textContent = `playing as ${name}`;
      ui.whoami.hidden = false;
      // A new connection is a new player: tell it which keys are held right now.
      sentKeys = "0,0";
      sendKeys();
    });
    socket.on("players", (list) => {
      roster.clear();
      for (const [id, playerName, color] of list) roster.set(id, { name: playerName, color });
      shownScores = "";
    });
    socket.on("world", (world) => {
      const now = performance.now();
      previous = current;
      current = { world, at: now };
      window.gameState = world;
      window.worldsReceived += 1;
      arrivals.push(now);
      while (arrivals[0] < now - 1000) arrivals.shift();
      showScores(world);
    });
  }

  // -- input -------------------------------------------------------------------------------
  function direction() {
    let x = 0;
    let y = 0;
    for (const code of held) {
      x += KEYS[code][0];
      y += KEYS[code][1];
    }
    return [Math.sign(x), Math.sign(y)];
  }

  // A plain (not volatile) emit, and only when the direction changes: losing "keys released"
  // would leave the player running.
  function sendKeys() {
    const [x, y] = direction();
    const keys = `${x},${y}`;
    if (keys === sentKeys || !socket || !socket.connected) return;
    sentKeys = keys;
    socket.emit("input", { x, y });
  }

  window.addEventListener("keydown", (event) => {
    if (!(event.code in KEYS) || !ui.join.hidden) return;
    event.preventDefault(); // no scrolling with the arrows
    held.add(event.code);
    sendKeys();
  });
  window.addEventListener("keyup", (event) => {
    if (!(event.code in KEYS)) return;
    held.delete(event.code);
    sendKeys();
  });
  window.addEventListener("blur", () => {
    held.clear();
    sendKeys();
  });

  ui.canvas.addEventListener("pointerdown", (event) => {
    if (!socket || !socket.connected) return;
    const box = ui.canvas.getBoundingClientRect();
    const tx = Math.round(((event.clientX - box.left) / box.width) * arena.w);
    const ty = Math.round(((event.clientY - box.top) / box.height) * arena.h);
    socket.emit("input", { tx, ty });
    sentKeys = "0,0"; // the server now follows the point, not the keys
  });

  // -- drawing -----------------------------------------------------------------------------
  function showScores(world) {
    const rows = world.p
      .map(([id, , , score]) => ({ id, score, ...(roster.get(id) || { name: "?", color: "#888" }) }))
      .sort((a, b) => b.score - a.score || a.name.localeCompare(b.name));
    const signature = JSON.stringify(rows);
    if (signature === shownScores) return;
    shownScores = signature;
    ui.playerCount.textContent = String(rows.length);
    ui.scores.replaceChildren(
      ...rows.map((row) => {
        const li = document.createElement("li");
        li.className = row.id === window.myId ? "me" : "";
        const dot = document.createElement("span");
        dot.className = "dot";
        dot.style.background = row.color;
        const name = document.createElement("span");
        name.className = "name";
        name.textContent = row.id === window.myId ? `${row.name} (you)` : row.name;
        const score = document.createElement("span");
        score.className = "score";
        score.textContent = String(row.score);
        li.append(dot, name, score);
        return li;
      }),
    );
  }

  function drawGrid() {
    ctx.strokeStyle = "#1b1e27";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let x = 40; x < arena.w; x += 40) {
      ctx.moveTo(x + 0.5, 0);
      ctx.lineTo(x + 0.5, arena.h);
    }
    for (let y = 40; y < arena.h; y += 40) {
      ctx.moveTo(0, y + 0.5);
      ctx.lineTo(arena.w, y + 0.5);
    }
    ctx.stroke();
  }

  function drawCoin(x, y) {
    ctx.beginPath();
    ctx.arc(x, y, arena.cr, 0, Math.PI * 2);
    ctx.fillStyle = "#f2c94c";
    ctx.fill();
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#a67c00";
    ctx.stroke();
  }

  function drawPlayer(id, x, y) {
    const who = roster.get(id) || { name: "?", color: "#888" };
    const mine = id === window.myId;
    ctx.beginPath();
    ctx.arc(x, y, arena.r, 0, Math.PI * 2);
    ctx.fillStyle = who.color;
    ctx.fill();
    ctx.lineWidth = mine ? 3 : 1.5;
    ctx.strokeStyle = mine ? "#ffffff" : "rgba(0, 0, 0, 0.6)";
    ctx.stroke();
    ctx.font = "12px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    ctx.fillStyle = mine ? "#ffffff" : "#c9cdd8";
    ctx.fillText(who.name, x, y - arena.r - 4);
  }

  function frame(now) {
    requestAnimationFrame(frame);
    if (ui.canvas.width !== arena.w || ui.canvas.height !== arena.h) {
      ui.canvas.width = arena.w;
      ui.canvas.height = arena.h;
    }
    ctx.clearRect(0, 0, arena.w, arena.h);
    drawGrid();
    if (current === null) {
      ctx.fillStyle = "#8a90a3";
      ctx.font = "16px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(socket ? "waiting for the world…" : "join to play", arena.w / 2, arena.h / 2);
      return;
    }
    // Interpolate between the last two worlds: one tick behind, but smooth at any frame rate.
    const period = 1000 / arena.hz;
    const alpha = previous ? Math.min(1, (now - current.at) / period) : 1;
    const before = new Map((previous ? previous.world.p : []).map(([id, x, y]) => [id, [x, y]]));
    for (const [x, y] of current.world.c) drawCoin(x, y);
    for (const [id, x, y] of current.world.p) {
      const [x0, y0] = before.get(id) || [x, y];
      drawPlayer(id, x0 + (x - x0) * alpha, y0 + (y - y0) * alpha);
    }
    ui.stats.textContent = `tick ${current.world.t} · ${arrivals.length} worlds/s`;
  }
  requestAnimationFrame(frame);

  const asked = new URLSearchParams(location.search).get("name");
  if (asked && asked.trim()) join(asked.trim());
})();
