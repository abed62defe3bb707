"""WebSocket consumer for live logs: replay what is stored from an offset, then stream."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from choreo_site import logstream

REPLAY_BATCH = 500


class LogConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        self.stream = self.scope["url_route"]["kwargs"]["stream"]
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        try:
            # A stream of a project the user may not view does not exist for them.
            await database_sync_to_async(logstream.stream_check_reader)(self.stream, user)
        except LookupError:
            await self.close(code=4404)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        try:
            offset = int(query.get("offset", ["0"])[0])
        except ValueError:
            offset = 0
        self.next_seq = max(offset, 0)
        # Join the group first, then replay: a line written in between arrives live and is
        # dropped by its seq if the replay already sent it.
        await self.channel_layer.group_add(logstream.group_name(self.stream), self.channel_name)
        await self.accept()
        await self._replay()
        status = await database_sync_to_async(logstream.stream_final_status)(self.stream)
        if status is not None:
            await self._replay()
            await self.send_json({"type": "end", "status": status, "next": self.next_seq})

    async def disconnect(self, code):
        if hasattr(self, "next_seq"):
            await self.channel_layer.group_discard(logstream.group_name(self.stream), self.channel_name)

    async def _replay(self):
        while True:
            lines = await database_sync_to_async(logstream.read_lines)(self.stream, offset=self.next_seq, limit=REPLAY_BATCH)
            if not lines:
                return
            await self._send_lines([{"seq": line.seq, "text": line.text} for line in lines])

    async def _send_lines(self, lines):
        fresh = [line for line in lines if line["seq"] >= self.next_seq]
        if not fresh:
            return
        if fresh[0]["seq"] > self.next_seq:  # a gap: fetch the missing lines from storage
            await self._replay()
            fresh = [line for line in lines if line["seq"] >= self.next_seq]
            if not fresh:
                return
        self.next_seq = fresh[-1]["seq"] + 1
        await self.send_json({"type": "lines", "lines": fresh})

    async def log_lines(self, event):
        await self._send_lines(event["lines"])

    async def log_end(self, event):
        await self._replay()
        await self.send_json({"type": "end", "status": event["status"], "next": self.next_seq})
