"""The Logs page's WebSocket: follows the runtime logs of a component's active replicas in
an environment (`deployments.runtime_logs`), and goes on across a redeploy."""

from __future__ import annotations

import asyncio
import math
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from builds.models import Component
from choreo_site.errors import PlatformError
from deployments import runtime_logs
from environments.permissions import visible_get

FOLLOW_INTERVAL = 1.0  # seconds between looks at the runtime


def _target(component_id: int, environment_id: int, user):
    """The component and environment, if `user` may view them; else LookupError."""
    try:
        component = visible_get(Component.objects.select_related("project"), pk=component_id, noun="Component", actor=user)
    except PlatformError:
        raise LookupError(component_id) from None
    environment = component.project.environments.filter(pk=environment_id).first()
    if environment is None:
        raise LookupError(environment_id)
    return component, environment


class RuntimeLogConsumer(AsyncJsonWebsocketConsumer):
    """Sends {"type": "lines", "lines": [{"at", "replica", "text"}]} as replicas print, and
    {"type": "state", "text"} when there is nothing to follow (nothing deployed)."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        kwargs = self.scope["url_route"]["kwargs"]
        try:
            self.component, self.environment = await database_sync_to_async(_target)(
                int(kwargs["component"]), int(kwargs["environment"]), user
            )
        except LookupError:
            await self.close(code=4404)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        self.replica = (query.get("replica") or [""])[0][:200] or None
        after = (query.get("after") or [""])[0]
        self.after = runtime_logs.normal_stamp(after)
        self.since = None
        if self.after is None:  # no line yet: from when the page read the logs, at most a day back
            now = time.time()
            try:
                since = float((query.get("since") or [""])[0])
            except ValueError:
                since = now
            self.since = min(max(since, now - 86400), now) if math.isfinite(since) else now
        self.redactors = runtime_logs.RedactorCache()
        await self.accept()
        self.follower = asyncio.create_task(self._follow())

    async def disconnect(self, code):
        follower = getattr(self, "follower", None)
        if follower is not None:
            follower.cancel()

    async def _follow(self):
        state = None
        while True:
            try:
                found = await database_sync_to_async(runtime_logs.lines)(
                    component=self.component,
                    environment=self.environment,
                    since=self.since,
                    replica=self.replica,
                    after=self.after,
                    redactors=self.redactors,
                )
                text = "Live"
            except PlatformError as exc:
                found, text = [], exc.detail
            if text != state:
                state = text
                await self.send_json({"type": "state", "text": text})
            if found:
                self.after, self.since = found[-1].at, None
                await self.send_json({"type": "lines", "lines": [{"at": x.at, "replica": x.replica, "text": x.text} for x in found]})
            await asyncio.sleep(FOLLOW_INTERVAL)
