"""`manage.py systemd_units --output DIR`: systemd unit files that run the platform as
services, with the same processes as `up` (choreo_site.daemons) and the same settings.

Writes, into DIR:
- `choreo.env` (mode 0600: it may hold passwords): the settings given to this command's
  environment, DATA_DIR made absolute;
- `choreo-prepare.service`: a oneshot that checks, migrates and writes the daemons'
  configuration (`manage.py prepare`) before the others start;
- one `choreo-<name>.service` per daemon (registry, ingress, the web tier, workers,
  scheduler), restarted when it exits;
- `choreo.target`, which wants them all: `systemctl enable --now choreo.target`.

Redis and the Docker Engine stay system services of their own (redis-server, docker).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from choreo_site.daemons import Daemon, NotReady, daemons
from choreo_site.metrics import MULTIPROC_ENV

# The settings a unit passes on, when they are set where this command runs: every variable
# a setting is read from, and those read outside the settings module.
SETTINGS = (*settings.ENVIRONMENT_SETTINGS, "ADMIN_PASSWORD", "KUBECONFIG")
TARGET = "choreo.target"
PREPARE = "choreo-prepare.service"


def _quote(value: str) -> str:
    """One argument or value as systemd reads it: double-quoted, with `%` doubled."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def _env_line(name: str, value: str) -> str:
    return f'{name}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Command(BaseCommand):
    help = "Write systemd unit files that run the platform as services."

    def add_arguments(self, parser):
        parser.add_argument("--output", required=True, help="Where to write them, e.g. /etc/systemd/system")

    def handle(self, *args, output: str, **options):
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        try:
            found = daemons()
        except NotReady as exc:
            raise CommandError(str(exc)) from None
        env_file = out / "choreo.env"
        values = {name: os.environ[name] for name in SETTINGS if name in os.environ}
        values["DATA_DIR"] = str(settings.DATA_DIR)
        values[MULTIPROC_ENV] = str(settings.RUN_DIR / "metrics")
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# The platform's settings for its systemd units (manage.py systemd_units).\n")
            f.writelines(_env_line(k, v) + "\n" for k, v in sorted(values.items()))
        os.chmod(env_file, 0o600)

        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        units = {PREPARE: self._prepare(env_file, manage)}
        for daemon in found:
            units[f"choreo-{daemon.name}.service"] = self._service(daemon, env_file)
        units[TARGET] = self._target([name for name in units if name != TARGET])
        for name, text in units.items():
            (out / name).write_text(text)
        self.stdout.write(f"Wrote {', '.join(units)} and choreo.env to {out}.")
        self.stdout.write(f"Then: systemctl daemon-reload; systemctl enable --now {TARGET}")

    def _common(self, description: str) -> str:
        return (
            "[Unit]\n"
            f"Description=build once, deploy many: {description}\n"
            f"PartOf={TARGET}\n"
            "Wants=network-online.target docker.service redis-server.service\n"
            "After=network-online.target docker.service redis-server.service\n"
        )

    def _prepare(self, env_file: Path, manage: list[str]) -> str:
        return (
            self._common("checks, migrations and configuration before the platform starts")
            + "\n[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            + f"EnvironmentFile={env_file}\nWorkingDirectory={settings.BASE_DIR}\n"
            + f"ExecStart={' '.join(_quote(a) for a in [*manage, 'prepare'])}\n"
            + f"\n[Install]\nWantedBy={TARGET}\n"
        )

    def _service(self, daemon: Daemon, env_file: Path) -> str:
        output = f"StandardOutput=append:{settings.DATA_DIR / daemon.log}\nStandardError=inherit\n" if daemon.log else ""
        return (
            self._common(daemon.description or daemon.name)
            + f"Requires={PREPARE}\nAfter={PREPARE}\n"
            + "\n[Service]\nType=simple\n"
            + f"EnvironmentFile={env_file}\nWorkingDirectory={settings.BASE_DIR}\n"
            + f"ExecStart={' '.join(_quote(a) for a in daemon.argv)}\n"
            + output
            # SIGTERM to the main process first (workers finish their job, HAProxy drains),
            # then SIGKILL to whatever is left of the unit.
            + "KillMode=mixed\nTimeoutStopSec=30\nRestart=always\nRestartSec=2\n"
            + f"\n[Install]\nWantedBy={TARGET}\n"
        )

    def _target(self, units: list[str]) -> str:
        return (
            "[Unit]\nDescription=build once, deploy many: the whole platform\n"
            f"Wants={' '.join(units)}\n"
            "\n[Install]\nWantedBy=multi-user.target\n"
        )
