// Live logs: a WebSocket that replays stored lines from an offset, then streams new
// ones. On a dropped connection it reconnects from the last line it has.
(function () {
  const pre = document.getElementById("log");
  if (!pre) return;
  const state = document.getElementById("log-state");
  const statusBadge = document.getElementById("stream-status");
  // A page may render the stored lines itself (it works without JavaScript): go on from there.
  let next = parseInt(pre.dataset.next || "0", 10);
  let ended = false;
  let delay = 500;

  function append(lines) {
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;
    const text = lines.map((l) => l.text + "\n").join("");
    pre.appendChild(document.createTextNode(text));
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws/logs/${pre.dataset.stream}/?offset=${next}`);
    ws.onopen = () => { state.textContent = "Live"; delay = 500; };
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "lines") {
        const fresh = msg.lines.filter((l) => l.seq >= next);
        if (fresh.length) { append(fresh); next = fresh[fresh.length - 1].seq + 1; }
        // Output means it runs: a badge still saying "queued" (or "pending") says so now.
        const running = statusBadge && statusBadge.dataset.running;
        if (fresh.length && running && ["queued", "pending"].includes(statusBadge.textContent)) {
          statusBadge.textContent = running;
          statusBadge.className = `status ${running}`;
        }
      } else if (msg.type === "end") {
        ended = true;
        state.textContent = `Finished: ${msg.status}`;
        if (statusBadge && statusBadge.textContent !== msg.status) {
          statusBadge.textContent = msg.status;
          statusBadge.className = `status ${msg.status}`;
          setTimeout(() => location.reload(), 800);
        }
        ws.close();
      }
    };
    ws.onclose = () => {
      if (ended) return;
      state.textContent = "Reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  connect();
})();
