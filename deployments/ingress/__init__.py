"""The platform's ingress, as configured for this instance."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from deployments.ingress.haproxy import HAProxyIngress, config_text


def ingress_dir() -> Path:
    return settings.DATA_DIR / "ingress"


def ingress() -> HAProxyIngress:
    return HAProxyIngress(admin_socket(), ingress_dir() / "hosts.map")


def admin_socket() -> Path:
    """HAProxy's runtime API: a file of mode 0600 in a directory of mode 0700, so no other
    local user can re-point a route."""
    return settings.RUN_DIR / "ingress.sock"


def write_config() -> Path:
    """Write HAProxy's configuration (and an empty hosts map) for `manage.py up`."""
    directory = ingress_dir()
    directory.mkdir(parents=True, exist_ok=True)
    map_file = directory / "hosts.map"
    map_file.write_text("")  # routes are restored at runtime, from the database
    path = directory / "haproxy.cfg"
    path.write_text(
        config_text(
            bind=settings.INGRESS_BIND,
            port=settings.INGRESS_PORT,
            socket_path=admin_socket(),
            map_file=map_file,
            slots=settings.INGRESS_SLOTS,
            servers_per_slot=settings.INGRESS_SERVERS_PER_SLOT,
        )
    )
    return path
