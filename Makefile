# `make up`: install what is missing and run the platform in the foreground.
# `make test`: the whole test suite, on SQLite and on PostgreSQL.
.PHONY: up test lint bench install

up:
	scripts/install.sh
	.venv/bin/python manage.py up

test:
	scripts/install.sh test
	scripts/test.sh

lint:
	.venv/bin/ruff check .

bench:
	scripts/install.sh test
	.venv/bin/python -m benchmarks.build_overhead
	.venv/bin/python -m benchmarks.webhook_latency
	.venv/bin/python -m benchmarks.rollout
