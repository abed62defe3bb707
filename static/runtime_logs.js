// Runtime logs, live: the server rendered the chosen range; a WebSocket sends what the
// replicas print after its last line, and reconnects from the newest line it has.
(function () {
  const pre = document.getElementById("runtime-log");
  if (!pre) return;
  const state = document.getElementById("runtime-log-state");
  let after = pre.dataset.after;
  let delay = 500;

  function append(lines) {
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;
    for (const line of lines) {
      const at = document.createElement("span");
      at.className = "at";
      at.textContent = line.at.slice(11, 23);
      const replica = document.createElement("span");
      replica.className = "replica";
      replica.textContent = line.replica;
      pre.append(at, " ", replica, ` ${line.text}\n`);
    }
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams();
    if (pre.dataset.replica) query.set("replica", pre.dataset.replica);
    if (after) query.set("after", after);
    else query.set("since", pre.dataset.since);
    const ws = new WebSocket(`${scheme}://${location.host}${pre.dataset.url}?${query}`);
    ws.onopen = () => { delay = 500; };
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "lines") {
        const fresh = msg.lines.filter((l) => !after || l.at > after);
        if (fresh.length) { append(fresh); after = fresh[fresh.length - 1].at; }
      } else if (msg.type === "state") {
        state.textContent = msg.text;
      }
    };
    ws.onclose = () => {
      state.textContent = "Reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  connect();
})();
