// The chat page. It talks to examples/chat/server.py with the official Socket.IO client
// (loaded before this script as the global `io`).
//
// Events it sends:     join(room) -> state, leave() -> state, message(text) -> {id, time},
//                      typing(bool)
// Events it receives:  joined(state), users({room, users}), rooms([{name, users}]),
//                      message(msg), notice({room, text}), typing({nickname, typing})
// where state is {room, history, users}.
//
// With connection state recovery (on in server.py unless --no-recovery), a page back after
// a short network loss gets the messages it missed: the official client hands them over
// before its "connect" event, with `socket.recovered` already true. Those are marked
// "recovered".
"use strict";

(() => {
  const TYPING_REPEAT = 2000; // while typing, say so again this often (ms)
  const TYPING_IDLE = 3000; // stop saying so after this long without a keystroke
  const TYPING_SHOWN = 5000; // forget someone's "is typing" not repeated for this long

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"),
    whoami: $("whoami"),
    login: $("login"),
    loginForm: $("login-form"),
    nickname: $("nickname"),
    loginRoom: $("login-room"),
    loginError: $("login-error"),
    chat: $("chat"),
    rooms: $("rooms"),
    joinForm: $("join-form"),
    joinRoom: $("join-room"),
    roomError: $("room-error"),
    usersRoom: $("users-room"),
    userCount: $("user-count"),
    users: $("users"),
    roomName: $("room-name"),
    leave: $("leave"),
    messages: $("messages"),
    typing: $("typing"),
    sendForm: $("send-form"),
    text: $("text"),
  };

  // A random value kept for the tab's lifetime: after a reload or a dropped connection the
  // server lets this tab take its nickname back from its own stale connection.
  const token = sessionStorage.getItem("chat-token") || randomToken();
  sessionStorage.setItem("chat-token", token);

  let socket = null;
  let nickname = null;
  let room = "lobby"; // the room to be in, also after a reconnection (sent in `auth`)
  let shownRoom = null; // the room whose messages are on screen
  let everConnected = false;
  let live = false; // the current connection's "connect" event has come
  let recoveredCount = 0; // messages marked recovered on the current connection
  const shownIds = new Set();
  const typists = new Map(); // nickname -> timer that forgets them
  let typingSince = 0;
  let typingIdleTimer = null;

  ui.nickname.value = sessionStorage.getItem("chat-nickname") || "";

  // -- connection --------------------------------------------------------------------------
  ui.loginForm.addEventListener("submit", (event) => {
    event.preventDefault();
    nickname = ui.nickname.value.trim();
    room = ui.loginRoom.value.trim().toLowerCase() || "lobby";
    if (!nickname) return;
    ui.loginError.hidden = true;
    ui.loginForm.querySelector("button").disabled = true;
    setStatus("connecting", "connecting…");
    connect();
  });

  function connect() {
    socket = io({
      // Called on every (re)connection, so the server always learns who we are and where.
      auth: (send) => send({ nickname, token, room }),
      reconnectionDelay: 1000,
      reconnectionDelayMax: 4000,
    });

    socket.on("connect", () => {
      live = true;
      if (socket.recovered) {
        const count = `${recoveredCount} missed message${recoveredCount === 1 ? "" : "s"}`;
        addNotice(`Connection state recovered (${count}).`, "ok");
      }
      recoveredCount = 0;
      if (!everConnected) {
        everConnected = true;
        sessionStorage.setItem("chat-nickname", nickname);
        setStatus("online", "connected");
        ui.whoami.textContent = `signed in as ${nickname}`;
        ui.whoami.hidden = false;
        ui.login.hidden = true;
        ui.chat.hidden = false;
        ui.text.focus();
      }
    });

    socket.on("connect_error", (err) => {
      if (socket.active) {
        // The server cannot be reached: the client retries by itself.
        if (!everConnected) setStatus("reconnecting", "cannot reach the server, retrying…");
        return;
      }
      // Refused by the server (e.g. the nickname is taken): back to the login form.
      refused(err.message);
    });

    socket.on("disconnect", (reason) => {
      live = false;
      stopTyping(false);
      clearTypists();
      if (socket.active) {
        setStatus("reconnecting", "connection lost, reconnecting…");
        addNotice(`Connection lost (${reason}). Reconnecting…`, "warn");
      } else {
        setStatus("offline", "disconnected");
        addNotice(`Disconnected (${reason}).`, "warn");
      }
    });

    // The manager (socket.io) owns the underlying connection and its reconnection.
    socket.io.on("reconnect_attempt", (attempt) => {
      setStatus("reconnecting", `reconnecting… (attempt ${attempt})`);
    });
    socket.io.on("reconnect", (attempts) => {
      setStatus("online", "reconnected");
      addNotice(`Reconnected after ${attempts} attempt${attempts === 1 ? "" : "s"}.`, "ok");
    });

    socket.on("joined", showRoom);
    socket.on("users", (update) => {
      if (update.room === shownRoom) showUsers(update.users);
    });
    socket.on("rooms", showRooms);
    socket.on("notice", (notice) => {
      if (notice.room === shownRoom) addNotice(notice.text);
    });
    socket.on("message", (message) => {
      if (message.room !== shownRoom || shownIds.has(message.id)) return;
      forgetTypist(message.nickname);
      // Before "connect" on a recovered connection: sent while this page was offline.
      const recovered = socket.recovered && !live;
      if (recovered) recoveredCount += 1;
      addMessage(message, false, recovered);
    });
    socket.on("typing", ({ nickname: who, typing }) => {
      clearTimeout(typists.get(who));
      if (typing) {
        typists.set(who, setTimeout(() => forgetTypist(who), TYPING_SHOWN));
      } else {
        typists.delete(who);
      }
      showTypists();
    });
  }

  function refused(message) {
    socket.removeAllListeners();
    socket.io.removeAllListeners();
    socket.disconnect();
    socket = null;
    everConnected = false;
    shownRoom = null;
    setStatus("offline", "not connected");
    ui.whoami.hidden = true;
    ui.chat.hidden = true;
    ui.login.hidden = false;
    ui.loginError.textContent = message;
    ui.loginError.hidden = false;
    ui.loginForm.querySelector("button").disabled = false;
    ui.nickname.focus();
  }

  function setStatus(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
  }

  // -- rooms -------------------------------------------------------------------------------
  function showRoom(state) {
    if (state.room !== shownRoom) {
      ui.messages.replaceChildren();
      shownIds.clear();
      clearTypists();
    }
    shownRoom = room = state.room;
    ui.roomName.textContent = state.room;
    ui.usersRoom.textContent = state.room;
    ui.leave.disabled = state.room === "lobby";
    // After a reconnection the history is merged with what is already on screen.
    for (const message of state.history) {
      if (!shownIds.has(message.id)) addMessage(message);
    }
    showUsers(state.users);
    markCurrentRoom();
  }

  function join(name) {
    ui.roomError.hidden = true;
    socket.emit("join", name, (state) => {
      if (state.error) {
        ui.roomError.textContent = state.error;
        ui.roomError.hidden = false;
      } else {
        showRoom(state);
      }
    });
  }

  ui.joinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = ui.joinRoom.value.trim().toLowerCase();
    if (!name || !socket) return;
    ui.joinRoom.value = "";
    join(name);
  });

  ui.leave.addEventListener("click", () => {
    if (socket) socket.emit("leave", showRoom);
  });

  function showRooms(rooms) {
    ui.rooms.replaceChildren(
      ...rooms.map(({ name, users }) => {
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.room = name;
        button.append(`#${name}`);
        const count = document.createElement("span");
        count.className = "count";
        count.textContent = users;
        button.append(count);
        button.addEventListener("click", () => {
          if (name !== shownRoom) join(name);
        });
        const item = document.createElement("li");
        item.append(button);
        return item;
      }),
    );
    markCurrentRoom();
  }

  function markCurrentRoom() {
    for (const button of ui.rooms.querySelectorAll("button")) {
      button.classList.toggle("current", button.dataset.room === shownRoom);
    }
  }

  function showUsers(users) {
    ui.userCount.textContent = users.length;
    ui.users.replaceChildren(
      ...users.map((name) => {
        const item = document.createElement("li");
        item.textContent = name;
        if (name === nickname) {
          item.classList.add("me");
          item.title = "you";
        }
        return item;
      }),
    );
    for (const who of typists.keys()) {
      if (!users.includes(who)) forgetTypist(who);
    }
  }

  // -- messages ----------------------------------------------------------------------------
  ui.sendForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.text.value.trim();
    if (!text || !socket) return;
    ui.text.value = "";
    stopTyping(true);
    const item = addMessage({ nickname, text, time: new Date().toISOString() }, true);
    // Sent now if connected, otherwise buffered by the client until it reconnects; the ack
    // comes back once the server has stored the message.
    socket.emit("message", text, (reply) => {
      const ack = item.querySelector(".ack");
      if (reply && reply.id) {
        item.dataset.id = reply.id;
        shownIds.add(reply.id);
        item.querySelector("time").textContent = clock(reply.time);
        ack.textContent = "✓ delivered";
        ack.dataset.state = "delivered";
        ack.title = `stored as ${reply.id} at ${new Date(reply.time).toLocaleString()}`;
      } else {
        ack.textContent = `✗ ${(reply && reply.error) || "not delivered"}`;
        ack.dataset.state = "failed";
      }
    });
  });

  function addMessage(message, pending = false, recovered = false) {
    const mine = message.nickname === nickname;
    const item = document.createElement("li");
    item.className = mine ? "message mine" : "message";
    if (recovered) item.classList.add("recovered");
    if (message.id) {
      item.dataset.id = message.id;
      shownIds.add(message.id);
    }
    const meta = document.createElement("div");
    meta.className = "meta";
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = message.nickname;
    const time = document.createElement("time");
    time.dateTime = message.time;
    time.textContent = clock(message.time);
    meta.append(author, time);
    if (recovered) {
      const badge = document.createElement("span");
      badge.className = "recovered-badge";
      badge.textContent = "↺ recovered";
      badge.title = "sent while you were offline, delivered when the connection came back";
      meta.append(badge);
    }
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = message.text;
    item.append(meta, text);
    if (mine) {
      const ack = document.createElement("span");
      ack.className = "ack";
      ack.dataset.state = pending ? "pending" : "delivered";
      ack.textContent = pending ? "…" : "✓ delivered";
      ack.title = pending ? "waiting for the server" : "stored by the server";
      item.append(ack);
    }
    append(item);
    return item;
  }

  function addNotice(text, kind = "") {
    const item = document.createElement("li");
    item.className = `notice ${kind}`.trim();
    item.textContent = text;
    append(item);
  }

  function append(item) {
    const list = ui.messages;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(item);
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  // -- typing ------------------------------------------------------------------------------
  ui.text.addEventListener("input", () => {
    if (!socket || !socket.connected) return;
    if (!ui.text.value) {
      stopTyping(true);
      return;
    }
    const now = Date.now();
    if (now - typingSince > TYPING_REPEAT) {
      typingSince = now;
      // Only sent while connected (a typing notice is worth nothing late, so it is never
      // buffered for a reconnection), but not volatile either: a volatile packet is dropped
      // whenever the transport is busy, e.g. during the upgrade to WebSocket.
      socket.emit("typing", true);
    }
    clearTimeout(typingIdleTimer);
    typingIdleTimer = setTimeout(() => stopTyping(true), TYPING_IDLE);
  });

  function stopTyping(tell) {
    clearTimeout(typingIdleTimer);
    if (typingSince && tell && socket && socket.connected) socket.emit("typing", false);
    typingSince = 0;
  }

  function forgetTypist(who) {
    clearTimeout(typists.get(who));
    if (typists.delete(who)) showTypists();
  }

  function clearTypists() {
    for (const timer of typists.values()) clearTimeout(timer);
    typists.clear();
    showTypists();
  }

  function showTypists() {
    const names = [...typists.keys()];
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = `${names.length} people are typing…`;
    ui.typing.textContent = text;
  }

  // -- helpers -----------------------------------------------------------------------------
  function clock(iso) {
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function randomToken() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
})();
