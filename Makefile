# `make up`: install what is missing and run the platform in the foreground.
# `make test`: the whole test suite, on SQLite and on PostgreSQL.
.PHONY: up test lint bench install lock mutate

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
	.venv/bin/python -m benchmarks.web_tier
	.venv/bin/python -m benchmarks.redaction
	.venv/bin/python -m benchmarks.isolation_cost
	.venv/bin/python -m benchmarks.permission_cost
	.venv/bin/python -m benchmarks.scheduler_skew
	.venv/bin/python -m benchmarks.task_start
	.venv/bin/python -m benchmarks.pipeline_page
	.venv/bin/python -m benchmarks.source_builds
	.venv/bin/python -m benchmarks.kubernetes

# Pin and hash every dependency, from requirements.txt and requirements-dev.txt.
lock:
	python3 -m venv .venv-lock
	.venv-lock/bin/pip install -q pip-tools==7.6.2
	.venv-lock/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-find-links -o requirements.lock requirements.txt
	.venv-lock/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-find-links -o requirements-dev.lock requirements-dev.txt
	.venv-lock/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-find-links -o requirements-mutate.lock requirements-mutate.txt

# Mutation testing of the modules that hold the rules (pyproject.toml [tool.mutate]); slow,
# so not part of `make test`. `make mutate TARGETS="redaction webhooks"` for some of them;
# `make mutate TARGETS=rollout JOBS=2` runs a slow target's mutants two at a time.
mutate:
	scripts/mutate.sh $(if $(JOBS),--jobs $(JOBS)) $(TARGETS)
