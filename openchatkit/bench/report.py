"""``benchmarks/README.md`` from one ``bench all`` run folder: the machine, a table of headline
figures against their goals, each benchmark's table and plot, and the older result files kept
because they are cited (``KEPT``). ``benchmarks/NOTES.md``, written by people, is included as
the analysis, so regenerating never loses it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

KEPT = {
    "gateway_auth-latest.json": "what virtual keys + rate limits add to a gateway request (JSON answers)",
    "gateway_auth_stream-latest.json": "the same for streamed answers",
    "gateway_auth_instant-latest.json": "auth + limits over the plain gateway, instant upstream (JSON)",
    "gateway_auth_instant_stream-latest.json": "the same for streamed answers",
    "gateway_instant-latest.json": "the gateway against an instant upstream: added latency at c=1, throughput at 16",
    "retrieval-lookalikes-1000-latest.json": "ranking quality on look-alike documents, 1k (ranking.py's defaults)",
    "retrieval-lookalikes-10000-latest.json": "the same at 10k documents",
    "retrieval-lookalikes-100000-latest.json": "the same at 100k documents, with and without HNSW",
    "retrieval-eval.json": "retrieval quality eval (hit rate, MRR)",
    "moderation-eval-test.json": "moderation classifier on the test split",
    "moderation-window-latest.json": "moderating a 6-message conversation window, turn by turn and cold",
    "feedback-everysec.json": "feedback accept rate with Redis AOF fsync everysec (the stack runs always)",
    "feedback-postgres.json": "feedback drain into PostgreSQL instead of SQLite",
}


ORDER = ("serving", "gateway", "moderation", "retrieval", "feedback")


def load_run(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every result in the folder, in the order ``bench all`` runs them."""
    paths = sorted(
        run_dir.glob("*.json"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else len(ORDER), p.stem)
    )
    return {p.stem: json.loads(p.read_text()) for p in paths}


def _f(value: float | None, digits: int = 1, suffix: str = "") -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


def _met(met: bool | None) -> str:
    return "n/a" if met is None else ("yes" if met else "**no**")


def headlines(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """(benchmark, figure, measured, goal, met) rows."""
    rows: list[tuple[str, str, str, str, str]] = []
    serving = results.get("serving")
    if serving:
        goals = serving["goals"]
        for name, label in (
            ("vllm_vs_one_at_a_time", "vLLM / one-at-a-time bot, tokens/s at 16 concurrent"),
            ("vllm_vs_static", "vLLM / static batching (batch 16), tokens/s"),
            ("gateway_vs_direct", "gateway / direct vLLM, tokens/s at 16 concurrent"),
        ):
            g = goals[name]
            rows.append(
                (
                    "serving",
                    label,
                    _f(g["value"], 2, "x"),
                    f">= {g['goal']:g}x",
                    _met(g["met"] if g["value"] is not None else None),
                )
            )
        vllm16 = next((r for r in serving["vllm"] if r["concurrency"] == 16), None)
        if vllm16:
            rows.append(("serving", "vLLM tokens/s at 16 concurrent", _f(vllm16["tokens_per_s"]), "", ""))
    gateway = results.get("gateway")
    if gateway:
        for config in gateway["configs"]:
            if config["concurrency"] == max(c["concurrency"] for c in gateway["configs"]):
                ratio = config["ratio"]["throughput"]
                mode = "stream" if config["stream"] else "JSON"
                rows.append(("gateway", f"gateway / direct tokens/s, {mode}, c={config['concurrency']}",
                             _f(ratio, 3, "x"), ">= 0.97x", _met(ratio >= 0.97 if ratio else None)))  # fmt: skip
        for overhead in gateway.get("overhead", []):
            mode = "stream" if overhead["stream"] else "JSON"
            rows.append(("gateway", f"added latency p50, one-token {mode} request",
                         _f(overhead["added_ms"]["p50"], 2, " ms"), "", ""))  # fmt: skip
    moderation = results.get("moderation")
    if moderation:
        g = moderation["goals"]
        rows.append(("moderation", "single text p50", _f(moderation["single_text_latency_ms"]["p50"], 2, " ms"),
                     f"<= {g['p50_ms_at_most']:g} ms", _met(g["p50_met"])))  # fmt: skip
        rows.append(("moderation", f"texts/s in batches of {moderation['batched']['batch_size']}",
                     _f(moderation["batched"]["texts_per_second"], 0), f">= {g['texts_per_second_at_least']:g}",
                     _met(g["throughput_met"])))  # fmt: skip
    retrieval = results.get("retrieval")
    if retrieval:
        ingest, search = retrieval["goals"]["ingest_chunks_per_s"], retrieval["goals"]["search_p50_ms_at_largest"]
        rows.append(
            ("retrieval", "ingest chunks/s", _f(ingest["value"], 0), f">= {ingest['goal']:g}", _met(ingest["met"]))
        )
        figure = f"hybrid search p50 at {search['size']:,} chunks (edge)"
        value = _f(search["value"], 1, " ms")
        rows.append(("retrieval", figure, value, f"<= {search['goal']:g} ms", _met(search["met"])))
    feedback = results.get("feedback")
    if feedback:
        best = max(feedback["accept"], key=lambda r: r["events_per_s"])
        goal = feedback["goal"]
        rows.append(("feedback", f"accepted events/s (best, c={best['concurrency']})", _f(best["events_per_s"], 0),
                     f">= {goal['events_per_s']:g}", _met(best["events_per_s"] >= goal["events_per_s"])))  # fmt: skip
        rows.append(("feedback", f"accept p99 at c={best['concurrency']}", _f(best["p99_ms"], 2, " ms"),
                     f"<= {goal['p99_ms']:g} ms", _met(best["p99_ms"] <= goal["p99_ms"])))  # fmt: skip
        for drain in feedback["drain"]:
            rows.append(
                (
                    "feedback",
                    f"worker drain, {drain['workers']} worker(s), events/s",
                    _f(drain["events_per_s"], 0),
                    "",
                    "",
                )
            )
    return rows


def serving_section(serving: dict[str, Any], link: str) -> list[str]:
    lines = [
        "## Serving: vLLM against OpenChatKit's bot",
        "",
        f"`openchatkit bench serving`: {serving['model']} (the same local weights in every mode), "
        f"{serving['prompt_set']['prompts']} prompts from `{serving['prompt_set']['file']}` "
        f"({serving['prompt_set']['short']} short questions, {serving['prompt_set']['long']} long pasted documents), "
        f"greedy, {serving['max_tokens']} tokens per answer in every mode. `one at a time` is `transformers` "
        "`generate` per request as OpenChatKit's `bot.py` does (at concurrency c its TTFT includes the wait behind "
        "the other users); `static` is `generate` on batches of c; `vLLM` is its OpenAI server under c concurrent "
        f"streaming users; the gateway row goes through our gateway. transformers ran in "
        f"{serving['transformers']['dtype']} on {serving['transformers']['torch_threads']} thread(s), the faster here.",
        "",
        "| concurrency | mode | tokens/s | requests/s | TTFT p50 ms | TTFT p95 ms | TPOT p50 ms | TPOT p95 ms |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    modes = [("vLLM", "vllm"), ("static", "static_batches"), ("one at a time", "one_at_a_time")]
    rows = [(r["concurrency"], label, r) for label, mode in modes for r in serving[mode]]
    if serving.get("gateway"):
        rows.append((serving["gateway"]["concurrency"], "gateway -> vLLM", serving["gateway"]))
    order = {label: i for i, label in enumerate(["vLLM", "gateway -> vLLM", "static", "one at a time"])}
    for c, label, r in sorted(rows, key=lambda x: (x[0], order[x[1]])):
        lines.append(
            f"| {c} | {label} | {_f(r['tokens_per_s'])} | {_f(r['requests_per_s'], 2)} | {_f(r['ttft_ms']['p50'])} | "
            f"{_f(r['ttft_ms']['p95'])} | {_f(r['tpot_ms']['p50'])} | {_f(r['tpot_ms']['p95'])} |"
        )
    lines += ["", "| concurrency | vLLM / one at a time | vLLM / static batching |", "| ---: | ---: | ---: |"]
    for r in serving["ratios"]:
        lines.append(
            f"| {r['concurrency']} | {_f(r['vllm_vs_one_at_a_time'], 2, 'x')} | {_f(r['vllm_vs_static'], 2, 'x')} |"
        )
    return [*lines, "", f"![serving throughput and TTFT]({link}/serving.png)", ""]


def gateway_section(gateway: dict[str, Any], link: str) -> list[str]:
    lines = [
        "## Gateway",
        "",
        f"`openchatkit bench gateway`: the same prompts straight to vLLM and through the gateway in alternating "
        f"rounds ({gateway['rounds']} each), {gateway['max_tokens']} tokens per answer, and paired one-token "
        "requests for the added latency.",
        "",
        "| mode | concurrency | direct tokens/s | gateway tokens/s | ratio | direct p50 ms | gateway p50 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in gateway["configs"]:
        lines.append(
            f"| {'stream' if c['stream'] else 'JSON'} | {c['concurrency']} | {_f(c['direct']['tokens_per_s'])} | "
            f"{_f(c['gateway']['tokens_per_s'])} | {_f(c['ratio']['throughput'], 3, 'x')} | "
            f"{_f(c['direct']['latency_ms']['p50'])} | {_f(c['gateway']['latency_ms']['p50'])} |"
        )
    return [*lines, "", f"![gateway vs direct]({link}/gateway.png)", ""]


def machine_section(results: dict[str, dict[str, Any]]) -> list[str]:
    first = next(iter(results.values()))["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in first.get("versions", {}).items())
    lines = [
        "## Machine",
        "",
        f"{first.get('cpu_model', '?')}, {first.get('cpus')} cores, Python {first.get('python')}; {versions}.",
        "The machine is shared with other work, so absolute figures move with its load; the ratios compare "
        "modes measured in the same run. Load average (1, 5, 15 min) before and after each benchmark:",
        "",
        "| benchmark | load before | load after |",
        "| --- | --- | --- |",
    ]
    for name, result in results.items():
        m = result["machine"]
        load = lambda v: " / ".join(f"{x:.1f}" for x in v) if v else "n/a"  # noqa: E731
        lines.append(f"| {name} | {load(m.get('loadavg_before'))} | {load(m.get('loadavg_after'))} |")
    return [*lines, ""]


def render(run_dir: Path, readme: Path, quick: bool = False, failures: dict[str, str] | None = None) -> str:
    results = load_run(run_dir)
    link = Path(os.path.relpath(run_dir, readme.parent)).as_posix()
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `openchatkit bench all{' --quick' if quick else ''}` from [`{link}/`]({link}/) "
        "(one JSON per benchmark, with the machine's facts, and its plot); regenerate with the same command.",
        "",
    ]
    if quick:
        lines += ["**A `--quick` run: sizes that check the plumbing, not the speed.**", ""]
    for name, reason in (failures or {}).items():
        lines += [f"- **{name} did not run**: {reason}"]
    if failures:
        lines.append("")
    if results:
        lines += [
            "## Headline figures",
            "",
            "| benchmark | figure | measured | goal | met |",
            "| --- | --- | ---: | ---: | --- |",
        ]
        lines += [f"| {' | '.join(row)} |" for row in headlines(results)]
        lines += [""]
        notes = readme.parent / "NOTES.md"
        if notes.exists() and not quick:
            lines += [notes.read_text().strip(), ""]
        lines += machine_section(results)
    if "serving" in results:
        lines += serving_section(results["serving"], link)
    if "gateway" in results:
        lines += gateway_section(results["gateway"], link)
    for name, title in (("moderation", "Moderation"), ("retrieval", "Retrieval"), ("feedback", "Feedback")):
        if name in results and (run_dir / f"{name}.png").exists():
            lines += [f"## {title}", "", f"![{name}]({link}/{name}.png)", ""]
    kept = [(f, why) for f, why in KEPT.items() if (readme.parent / "results" / f).exists()]
    if kept and not quick:
        lines += ["## Other recorded results", "", "Older runs kept because they are cited:", ""]
        lines += [f"- [`results/{f}`](results/{f}): {why}" for f, why in kept]
        lines += [""]
    return "\n".join(lines)


def write_readme(run_dir: Path, readme: Path, quick: bool = False, failures: dict[str, str] | None = None) -> Path:
    readme.parent.mkdir(parents=True, exist_ok=True)
    readme.write_text(render(run_dir, readme, quick, failures))
    return readme
