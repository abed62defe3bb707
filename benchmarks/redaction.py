"""Redaction cost per log line with 10, 100 and 1,000 secrets defined.

Side by side in one run: the platform's Redactor (Aho-Corasick, one pass over the line)
and the way it worked before (a substring search and replace per secret form), on the
same secrets and the same lines: a typical 120-character line with no secret in it, and
one that carries a secret. No database: the secrets are made here.

Usage: .venv/bin/python -m benchmarks.redaction
"""

from __future__ import annotations

import os
import secrets
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "choreo_site.settings")

import django  # noqa: E402

django.setup()

from choreo_site.redaction import MASK, Redactor  # noqa: E402


class LoopRedactor(Redactor):
    """The former algorithm: each form, longest first, searched and replaced in turn."""

    def __init__(self, values):
        super().__init__(values)
        self._by_length = sorted(self._forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._by_length:
            if form in text:
                text = text.replace(form, MASK)
        return text


def per_line_us(redact, lines: list[str], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        for line in lines:
            redact(line)
    return (time.perf_counter() - started) / (rounds * len(lines)) * 1e6


def main() -> None:
    print("µs per log line (median of 5 runs of 2,000 lines), same lines and secrets for both:")
    print(f"{'secrets':>8} {'line':>12} {'loop (before)':>14} {'Aho-Corasick':>13} {'after/before':>13}")
    for count in (10, 100, 1000):
        values = [secrets.token_urlsafe(18) for _ in range(count)]
        plain = [f"2026-11-28T15:00:{i % 60:02d}Z step 3/7 : RUN pip install -r requirements.txt (wheel {i})" for i in range(100)]
        carrying = [f"{line} DB_PASSWORD={values[i % count]}" for i, line in enumerate(plain)]
        fast, slow = Redactor(values), LoopRedactor(values)
        assert fast(carrying[0]) == slow(carrying[0]) and values[0] not in fast(carrying[0])
        for name, lines in (("no secret", plain), ("one secret", carrying)):
            before = sorted(per_line_us(slow, lines, 20) for _ in range(5))[2]
            after = sorted(per_line_us(fast, lines, 20) for _ in range(5))[2]
            print(f"{count:>8} {name:>12} {before:>14.2f} {after:>13.2f} {after / before:>12.4f}x")


if __name__ == "__main__":
    main()
