"""`GET /healthz`: 200 once web, workers, ingress and registry are up; 503 naming what is not.
Like the URLs, it looks at every app's parts.

Also what `manage.py up` checks before it starts anything: that the database, Redis and the
Docker Engine answer, each refusal one line naming the thing and the fix.
"""

import os
from urllib.parse import urlsplit, urlunsplit

import django_rq
import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from rq import Worker

from builds import registry
from builds.dockerbuild import BuildStepError, engine_version
from deployments.ingress import ingress


def shown_url(url: str) -> str:
    """A service URL as it may be printed: the user name kept, the password dropped."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}@" if parts.username else ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=user + host))


def _database_problem() -> str | None:
    db = settings.DATABASES["default"]
    try:
        connection.ensure_connection()
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if db["ENGINE"].endswith("sqlite3"):
            return f"The SQLite database {db['NAME']} cannot be opened ({reason}): check DATA_DIR and its permissions."
        where = shown_url(os.environ.get("DATABASE_URL", "")) or f"{db.get('HOST')}:{db.get('PORT')}"
        return f"The database at {where} does not answer ({reason}): start it, or unset DATABASE_URL to use SQLite in DATA_DIR."
    finally:
        connection.close()
    return None


def _redis_problem() -> str | None:
    where = shown_url(settings.REDIS_URL)
    fix = "start it, or unset REDIS_URL to let make up run one" if os.environ.get("REDIS_URL") else "run make up, which starts one"
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.AuthenticationError:
        return f"Redis at {where} refused the credentials: give the right password in REDIS_URL."
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            return f"Redis at {where} needs a password: give it in REDIS_URL, or unset REDIS_URL to use the one make up starts."
        return f"Redis at {where} answered with an error ({exc}): check REDIS_URL."
    except redis.RedisError:
        return f"Redis at {where} does not answer: {fix}"
    finally:
        client.close()
    return None


def _docker_problem() -> str | None:
    try:
        engine_version()
    except BuildStepError:
        return "The Docker Engine does not answer on its socket: start it (make up does: dockerd &)."
    return None


def unreachable_dependencies() -> list[str]:
    """What `up` needs and cannot reach, one line each naming the fix; empty when all answer."""
    return [problem for problem in (_database_problem(), _redis_problem(), _docker_problem()) if problem]


def _checks() -> dict[str, str]:
    checks = {}
    try:
        connection.ensure_connection()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {exc}"
    try:
        queue = django_rq.get_queue(settings.BUILDS_QUEUE)
        queue.connection.ping()
        workers = {
            name: len([w for w in Worker.all(connection=queue.connection) if name in w.queue_names()])
            for name in (settings.BUILDS_QUEUE, settings.DEFAULT_QUEUE, settings.GIT_QUEUE)
        }
        checks["redis"] = "ok"
        checks["workers"] = "ok" if all(workers.values()) else "no worker on " + ", ".join(q for q, n in workers.items() if not n)
    except Exception as exc:
        checks["redis"] = checks["workers"] = f"down: {exc}"
    checks["registry"] = "ok" if registry.is_up() else f"not answering at {settings.REGISTRY_URL}"
    checks["ingress"] = "ok" if ingress().is_up() else "HAProxy's runtime API is not answering"
    return checks


def healthz(request):
    checks = _checks()
    healthy = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if healthy else "unavailable", "checks": checks}, status=200 if healthy else 503)
