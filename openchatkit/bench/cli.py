"""Every ``openchatkit bench`` command, registered here; each lives in its own module."""

from __future__ import annotations

from openchatkit.apps import bench_app
from openchatkit.bench.feedback import bench_feedback
from openchatkit.bench.gateway_cli import gateway
from openchatkit.bench.learn import bench_learn
from openchatkit.bench.moderation import bench_moderation
from openchatkit.bench.moderation_window import bench_moderation_window
from openchatkit.bench.retrieval import bench_retrieval
from openchatkit.bench.serving import bench_serving
from openchatkit.bench.suite import bench_all

bench_app.command("serving")(bench_serving)
bench_app.command("gateway")(gateway)
bench_app.command("moderation")(bench_moderation)
bench_app.command("moderation-window")(bench_moderation_window)
bench_app.command("retrieval")(bench_retrieval)
bench_app.command("feedback")(bench_feedback)
bench_app.command("learn")(bench_learn)
bench_app.command("all")(bench_all)
