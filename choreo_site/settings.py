"""The one settings module. Every value comes from the environment (django-environ)
and has a default that works with nothing set."""

import contextlib
import hashlib
import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


class _Environment(environ.Env):
    """django-environ's reader, remembering the name of each variable a setting is read
    from: the systemd units pass on those (manage.py systemd_units)."""

    def __init__(self, **scheme):
        super().__init__(**scheme)
        self.names: set[str] = set()

    def get_value(self, var, *args, **kwargs):
        self.names.add(var)
        return super().get_value(var, *args, **kwargs)


env = _Environment()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "data"))).resolve()
# Only the platform's user may enter it: the database, keys, mirrors and sockets are inside.
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
with contextlib.suppress(PermissionError):  # another user's directory: theirs to protect
    DATA_DIR.chmod(0o700)
# Unix sockets of the platform's own processes (the ingress's runtime API, the web tier):
# a directory only the platform's user can enter.
RUN_DIR = DATA_DIR / "run"
RUN_DIR.mkdir(mode=0o700, exist_ok=True)
with contextlib.suppress(PermissionError):
    RUN_DIR.chmod(0o700)


def _secret_file(path: Path) -> str:
    """A random secret kept in a file with mode 0600, made on first use. Made whole and
    then linked into place, so processes starting together all read the same one."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(50))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="") or _secret_file(DATA_DIR / "secret-key")

# The keys that encrypt secrets at rest (environments.keyring): CONFIG_ENCRYPTION_KEYS
# (comma-separated, the first one encrypts), or else the key file, made here on first
# use with mode 0600. `manage.py rotate_config_key` replaces it.
CONFIG_ENCRYPTION_KEYS = env.list("CONFIG_ENCRYPTION_KEYS", default=[])
CONFIG_KEY_FILE = Path(env.str("CONFIG_KEY_FILE", default=str(DATA_DIR / "config-key")))
if not CONFIG_ENCRYPTION_KEYS:
    _secret_file(CONFIG_KEY_FILE)
# Largest configuration value: an environment variable, and a file.
CONFIG_VALUE_MAX_BYTES = env.int("CONFIG_VALUE_MAX_BYTES", default=32 * 1024)
CONFIG_FILE_MAX_BYTES = env.int("CONFIG_FILE_MAX_BYTES", default=1024 * 1024)
# Uploads stay in memory: a secret file must never be spooled to a temporary file on disk.
# The config API refuses larger requests before they are read.
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.MemoryFileUploadHandler"]
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * CONFIG_FILE_MAX_BYTES
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

# Two instances that share one Redis must not share queues or channel groups: the
# namespace comes from the data directory, which differs between instances.
INSTANCE_NAMESPACE = env.str("INSTANCE_NAMESPACE", default="choreo-" + hashlib.sha256(str(DATA_DIR).encode()).hexdigest()[:10])

WEB_HOST = env.str("WEB_HOST", default="127.0.0.1")
WEB_PORT = env.int("WEB_PORT", default=8000)
# gunicorn processes serving pages and the API (choreo_site/webfront.py); one per core.
WEB_WORKERS = env.int("WEB_WORKERS", default=os.cpu_count() or 1)
# How long `up` waits for /healthz before it stops what it started and gives up.
UP_HEALTH_TIMEOUT = env.int("UP_HEALTH_TIMEOUT", default=90)
INGRESS_PORT = env.int("INGRESS_PORT", default=8080)
INGRESS_DOMAIN = env.str("INGRESS_DOMAIN", default="localhost")
INGRESS_BIND = env.str("INGRESS_BIND", default="127.0.0.1")
# HAProxy is never reloaded: it starts with this many empty backends, one per routed
# component and environment.
INGRESS_SLOTS = env.int("INGRESS_SLOTS", default=64)
# Servers in each slot's pool: enough for the old and the new replicas during a rollout.
INGRESS_SERVERS_PER_SLOT = env.int("INGRESS_SERVERS_PER_SLOT", default=16)
POLL_INTERVAL = env.int("POLL_INTERVAL", default=60)
PUBLIC_URL = env.str("PUBLIC_URL", default=f"http://{WEB_HOST}:{WEB_PORT}")

# The registry: the embedded one (Debian's docker-registry, run by `manage.py up`) unless
# REGISTRY_URL names an external one.
REGISTRY_PORT = env.int("REGISTRY_PORT", default=5000)
REGISTRY_URL = env.str("REGISTRY_URL", default="")
REGISTRY_EMBEDDED = not REGISTRY_URL
REGISTRY_URL = REGISTRY_URL or f"http://127.0.0.1:{REGISTRY_PORT}"
REGISTRY_USERNAME = env.str("REGISTRY_USERNAME", default="")
REGISTRY_PASSWORD = env.str("REGISTRY_PASSWORD", default="")
# Read-only credentials of an external registry, for those that only pull: the Docker
# Engine, and a Kubernetes cluster's nodes (a pull Secret in each namespace). The
# platform's own credentials above may push and delete, and never go into a cluster.
REGISTRY_PULL_USERNAME = env.str("REGISTRY_PULL_USERNAME", default="")
REGISTRY_PULL_PASSWORD = env.str("REGISTRY_PULL_PASSWORD", default="")
# A CA bundle for an external registry whose certificate is not from a public CA.
REGISTRY_CA_FILE = env.str("REGISTRY_CA_FILE", default="")
# The embedded registry's garbage collection: how often (seconds; 0: never), and how long one may take.
REGISTRY_GC_INTERVAL = env.int("REGISTRY_GC_INTERVAL", default=86400)
REGISTRY_GC_TIMEOUT = env.int("REGISTRY_GC_TIMEOUT", default=1800)

# Builds
BUILD_CONCURRENCY = env.int("BUILD_CONCURRENCY", default=2)
BUILD_TIMEOUT = env.int("BUILD_TIMEOUT", default=30 * 60)
BUILD_USE_CACHE = env.bool("BUILD_USE_CACHE", default=True)
# Source builds fetch dependencies from the package registries trusting this CA bundle (the
# host's, so that a TLS-intercepting proxy's CA works); only the build stage sees it, unless
# BUILD_CA_IN_IMAGE puts it in the image as its trust store too.
BUILD_CA_BUNDLE = Path(env.str("BUILD_CA_BUNDLE", default="/etc/ssl/certs/ca-certificates.crt"))
BUILD_CA_IN_IMAGE = env.bool("BUILD_CA_IN_IMAGE", default=False)
# The worker of a running build or rollout writes a heartbeat this often; a run whose
# heartbeat is older than RUN_HEARTBEAT_TIMEOUT is taken as orphaned and failed
# (choreo_site.runs).
RUN_HEARTBEAT_INTERVAL = env.int("RUN_HEARTBEAT_INTERVAL", default=5)
RUN_HEARTBEAT_TIMEOUT = env.int("RUN_HEARTBEAT_TIMEOUT", default=60)
WORKSPACE_DIR = DATA_DIR / "workspaces"
# What one build may use (each RUN step's container): memory (no swap beyond it), cores, and
# processes. The process limit is shared by the builds running at once.
BUILD_MEMORY = env.int("BUILD_MEMORY", default=2 * 1024**3)
BUILD_CPUS = env.float("BUILD_CPUS", default=1.0)
BUILD_PIDS = env.int("BUILD_PIDS", default=2048)
# What one replica may use where its descriptor's `resources` does not say.
REPLICA_MEMORY = env.int("REPLICA_MEMORY", default=512 * 1024**2)
REPLICA_CPUS = env.float("REPLICA_CPUS", default=1.0)
REPLICA_PIDS = env.int("REPLICA_PIDS", default=1024)
# Components may name a local repository (a path or file://) only under these directories,
# links resolved, and never inside DATA_DIR. The default holds just the demo's sample.
LOCAL_REPOSITORY_ROOTS = [Path(p) for p in env.list("LOCAL_REPOSITORY_ROOTS", default=[str(BASE_DIR / "examples" / "repositories")])]
DEMO_REPOSITORY_DIR = BASE_DIR / "examples" / "repositories" / INSTANCE_NAMESPACE

# Logs (builds, rollouts, executions): the longest line kept whole, and the most text one
# log keeps; past either, a marker says what was cut.
LOG_MAX_LINE = env.int("LOG_MAX_LINE", default=16 * 1024)
LOG_MAX_BYTES = env.int("LOG_MAX_BYTES", default=8 * 1024 * 1024)

# Rollouts: how long old replicas may finish in-flight requests, and how long they get
# between SIGTERM and SIGKILL.
ROLLOUT_DRAIN_TIMEOUT = env.int("ROLLOUT_DRAIN_TIMEOUT", default=30)
ROLLOUT_STOP_GRACE = env.int("ROLLOUT_STOP_GRACE", default=10)

# Where replicas and executions run: `docker` (this machine's Engine) or `kubernetes` (the
# cluster of KUBECONFIG, else in-cluster credentials; deployments/runtimes/kubernetes.py).
RUNTIME = env.str("RUNTIME", default="docker")
if RUNTIME not in ("docker", "kubernetes"):
    raise ImproperlyConfigured(f"RUNTIME must be docker or kubernetes, got {RUNTIME!r}")
# The Kubernetes runtime: the label of the ingress controller's namespace, which each
# environment's NetworkPolicy admits traffic from ("key=value"); the IngressClass of the
# Ingresses it makes; the registry's address as the cluster's nodes reach it (an image
# reference's host is replaced by it; empty: as the platform reaches it); and how long a
# finished execution's Job and pod are kept.
KUBERNETES_INGRESS_CLASS = env.str("KUBERNETES_INGRESS_CLASS", default="nginx")
KUBERNETES_IMAGE_REGISTRY = env.str("KUBERNETES_IMAGE_REGISTRY", default="")
KUBERNETES_INGRESS_NAMESPACE = env.str("KUBERNETES_INGRESS_NAMESPACE", default="kubernetes.io/metadata.name=ingress-nginx")
KUBERNETES_JOB_TTL = env.int("KUBERNETES_JOB_TTL", default=3600)

INSTALLED_APPS = [
    "daphne",
    "choreo_site",  # before django_rq: its rqworker command does start-up housekeeping
    "choreo_site.admin_site.PlatformAdminConfig",  # django.contrib.admin, for superusers only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",  # only for the migration that deleted its plaintext tokens
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's assets, served locally: the docs work offline
    "django_rq",
    "channels",
    "environments",
    "builds",
    "deployments",
    "tasks",
]

MIDDLEWARE = [
    # Requests by status and latency, for /metrics (choreo_site/metrics.py).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves /static/ from the ASGI app itself: no separate web server to set up.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Names the actor and the interface of the audit events a request records.
    "choreo_site.audit.AuditMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "choreo_site.urls"
ASGI_APPLICATION = "choreo_site.asgi.application"
WSGI_APPLICATION = "choreo_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "choreo_site.pages.rules",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
if "ENGINE" not in DATABASES["default"]:
    raise ImproperlyConfigured("DATABASE_URL is not a database URL: give postgres://USER:PASSWORD@HOST:PORT/NAME or sqlite:////PATH")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and workers write the same file: wait for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
    # Tests run real worker and web processes, which must open the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
else:
    # An unreachable server must fail a connection in seconds, not hang `up` or a request.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# An explicit REDIS_URL is used as given. Without one, the Redis that `make up` starts
# (scripts/redis.sh): 127.0.0.1:6379 with the password in a root-only file.
REDIS_PASSWORD_FILE = Path(env.str("REDIS_PASSWORD_FILE", default="/etc/redis/choreo-password"))


def _default_redis_url() -> str:
    try:
        password = REDIS_PASSWORD_FILE.read_text().strip()
    except OSError:
        return "redis://127.0.0.1:6379/0"
    return f"redis://:{password}@127.0.0.1:6379/0"


REDIS_URL = env.str("REDIS_URL", default="") or _default_redis_url()
# Builds have a queue of their own, served by BUILD_CONCURRENCY workers, so that a long
# build never delays a rollout. Git work (polls, push events that need a fetch) has
# another, so that a stalled remote never holds a rollout on the default queue.
BUILDS_QUEUE = f"{INSTANCE_NAMESPACE}.builds"
DEFAULT_QUEUE = f"{INSTANCE_NAMESPACE}.default"
GIT_QUEUE = f"{INSTANCE_NAMESPACE}.git"
# Task executions have their own queue and TASK_CONCURRENCY workers: an hour-long task
# never holds a rollout, and at most that many executions run at once.
TASKS_QUEUE = f"{INSTANCE_NAMESPACE}.tasks"
TASK_CONCURRENCY = env.int("TASK_CONCURRENCY", default=2)
RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": BUILD_TIMEOUT + 300} for name in (BUILDS_QUEUE, DEFAULT_QUEUE, GIT_QUEUE, TASKS_QUEUE)
}
# A failed attempt's retry waits this many seconds, doubling with each attempt (at most an hour).
TASK_RETRY_BACKOFF = env.float("TASK_RETRY_BACKOFF", default=10.0)
# Finished executions and their logs are kept this many days, then pruned by housekeeping.
EXECUTION_RETENTION_DAYS = env.int("EXECUTION_RETENTION_DAYS", default=90)
# How long a fetch for a push event may take (a build's own fetch may take longer).
GIT_FETCH_TIMEOUT = env.int("GIT_FETCH_TIMEOUT", default=60)

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{INSTANCE_NAMESPACE}:asgi"},
    }
}

# Shared by every web process: login throttling counts failures here.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"{INSTANCE_NAMESPACE}:cache",
    }
}
AUTHENTICATION_BACKENDS = ["choreo_site.throttling.ThrottledModelBackend"]
# Failed logins (page or API) allowed per user name and per client address in the window.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
LOGIN_FAILURE_WINDOW = env.int("LOGIN_FAILURE_WINDOW", default=300)
# A request for a change in a protected environment expires after this many hours.
APPROVAL_EXPIRY_HOURS = env.int("APPROVAL_EXPIRY_HOURS", default=24)
# Refused (unauthenticated) webhook deliveries allowed per client address a minute; past it, 429.
WEBHOOK_FAILURE_LIMIT = env.int("WEBHOOK_FAILURE_LIMIT", default=30)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# Git hosts send push payloads of several MiB; the webhook refuses more than 10 MiB itself.
DATA_UPLOAD_MAX_MEMORY_SIZE = 11 * 1024 * 1024

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "projects"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",  # `Authorization: Token <key>`, stored hashed (choreo_site/tokens.py)
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "choreo_site.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# API tokens expire after this many days (0: never); `manage.py drf_create_token --days` overrides.
API_TOKEN_DAYS = env.int("API_TOKEN_DAYS", default=90)
REST_KNOX = {"TOKEN_TTL": timedelta(days=API_TOKEN_DAYS) if API_TOKEN_DAYS else None, "AUTH_HEADER_PREFIX": "Token"}

SPECTACULAR_SETTINGS = {
    "TITLE": "Choreo-style build once, deploy many platform",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema needs a token (or a session), like every other API endpoint.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"redact": {"()": "choreo_site.redaction.RedactingFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "rq.worker": {"level": env.str("RQ_LOG_LEVEL", default="WARNING")},
    },
}

# Every variable a setting above was read from (the last line: none is read after it).
ENVIRONMENT_SETTINGS = tuple(sorted(env.names))
