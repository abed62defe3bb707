"""A load client for zero-downtime tests."""

import http.client
import threading


class KeepAliveLoad:
    """Clients that keep one connection alive each and never retry a request."""

    def __init__(self, port: int, host: str, clients: int = 4):
        self.port, self.host = port, host
        self.ok = self.bad = self.errors = 0
        self.bodies: set[str] = set()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set():
            try:
                conn.request("GET", "/", headers={"Host": self.host})
                response = conn.getresponse()
                body = response.read().decode().strip()
                with self._lock:
                    if 200 <= response.status < 300:
                        self.ok += 1
                        self.bodies.add(body)
                    else:
                        self.bad += 1
                        self.failures.append(f"{response.status} {body[:80]}")
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.errors += 1
                    self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.close()
