"""``openchatkit finetune moderation`` and ``openchatkit eval moderation`` (``bench moderation``: openchatkit/bench)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from moderation_server.config import ModerationSettings
from moderation_server.dataset import DatasetError, LabelledText, load_jsonl, split_path
from moderation_server.evaluation import BenignReport, EvaluationReport, evaluate, evaluate_benign
from openchatkit.apps import eval_app, finetune_app, stderr_console
from services.moderation_labels import LABELS

if TYPE_CHECKING:
    from moderation_server.model import TextClassifier

# torch and transformers load inside the commands, so the rest of the CLI starts fast.

console = stderr_console()

ArtifactOption = Annotated[
    Path | None,
    typer.Option(help="The classifier directory (default: MODERATION_ARTIFACT_DIR or <data dir>/moderation)."),
]
UrlOption = Annotated[
    str | None, typer.Option(help="Use a running moderation service (any backend) instead of the local classifier.")
]


def artifact_dir(path: Path | None) -> Path:
    return path or ModerationSettings().classifier_dir()


def load_local_classifier(path: Path | None) -> TextClassifier:
    from moderation_server.model import TextClassifier
    from moderation_server.training import is_current

    directory = artifact_dir(path)
    if not is_current(directory):
        console.print(f"[red]error:[/red] no current classifier at {directory}: run `openchatkit finetune moderation`")
        raise typer.Exit(1)
    settings = ModerationSettings()
    return TextClassifier.load(directory, settings.runtime, settings.threads)


@finetune_app.command("moderation")
def finetune_moderation(
    output: ArtifactOption = None,
    force: Annotated[bool, typer.Option("--force", help="Train even when the artifact is current.")] = False,
) -> None:
    """Fine-tune the CPU moderation classifier on moderation_server/data (skipped when current)."""
    from moderation_server.training import ensure_artifact

    directory = artifact_dir(output)
    status = ensure_artifact(directory, force=force, progress=lambda line: console.print(line))
    metrics = status.manifest.get("dev_metrics", {})
    verb = "trained" if status.trained else "up to date"
    console.print(
        f"moderation classifier {verb}: {directory} (dev macro-F1 {metrics.get('macro_f1', float('nan')):.3f}, "
        f"intervention recall {metrics.get('intervention_recall', float('nan')):.3f}, "
        f"casual false flags {metrics.get('casual_false_flag_rate', float('nan')):.3f})"
    )


def predict_remote(url: str, texts: list[str], batch: int = 64) -> list[str]:
    labels: list[str] = []
    with httpx.Client(base_url=url.rstrip("/"), timeout=300, trust_env=False) as client:
        for start in range(0, len(texts), batch):
            response = client.post("/v1/classify", json={"input": texts[start : start + batch]})
            if response.status_code != 200:
                console.print(f"[red]error:[/red] {url} answered {response.status_code}: {response.text[:300]}")
                raise typer.Exit(1)
            labels.extend(r["label"] for r in response.json()["results"])
    return labels


@eval_app.command("moderation")
def eval_moderation(
    file: Annotated[Path, typer.Argument(help='JSONL, one {"text", "label"} per line.')],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    url: UrlOption = None,
    artifact: ArtifactOption = None,
    ood: Annotated[
        Path | None,
        typer.Option(help="Out-of-distribution benign set reported beside FILE (default: the shipped ood-test)."),
    ] = None,
    no_ood: Annotated[bool, typer.Option("--no-ood", help="Skip the out-of-distribution benign set.")] = False,
) -> None:
    """Per-label precision/recall/F1, macro-F1, accuracy and a confusion matrix on FILE, and
    the false-flag rates on an out-of-distribution benign set (code, numbers, tokens, prose,
    everyday troubles, non-English text ...), with the share the language policy would route."""
    try:
        examples = load_jsonl(file)
        benign = [] if no_ood else load_jsonl(ood or split_path("ood-test"))
    except DatasetError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    texts = [e.text for e in examples] + [e.text for e in benign]
    if url:
        predicted = predict_remote(url, texts)
    else:
        classifier = load_local_classifier(artifact)
        predicted = [classifier.label(s) for s in classifier.probabilities(texts)]
    report = evaluate([e.label for e in examples], predicted[: len(examples)])
    ood_report = evaluate_benign_set(benign, predicted[len(examples) :]) if benign else None
    if as_json:
        payload = report.to_dict()
        if ood_report is not None:
            payload["out_of_distribution"] = ood_report.to_dict()
        print(json.dumps(payload))
    else:
        print_report(report)
        if ood_report is not None:
            print_benign_report(ood_report)


def evaluate_benign_set(examples: list[LabelledText], predicted: list[str]) -> BenignReport:
    """The benign report, plus how many texts the language policy marks unjudgeable."""
    from moderation_server.language import LanguagePolicy

    settings = ModerationSettings()
    policy = LanguagePolicy(
        settings.supported_languages, settings.language_min_confidence, settings.language_min_letters
    )
    report = evaluate_benign([e.label for e in examples], predicted, [e.kind for e in examples])
    report.unsupported_language = sum(not policy.check(e.text).supported for e in examples)
    return report


def print_benign_report(report: BenignReport) -> None:
    out = Console()
    out.print(
        f"out-of-distribution benign set ({report.examples} texts): casual false-flag rate "
        f"{report.casual_false_flag_rate:.3f} ({report.casual_examples} casual), cautioned or refused "
        f"{report.cautioned_rate:.3f}, refused {report.refused_rate:.3f}; "
        f"{report.unsupported_language} in a language the classifier cannot judge (language policy applies)"
    )
    table = Table(title="false flags by kind")
    table.add_column("kind")
    table.add_column("flagged", justify="right")
    table.add_column("texts", justify="right")
    for kind, row in sorted(report.by_kind.items()):
        table.add_row(kind, str(row["flagged"]), str(row["examples"]))
    out.print(table)


def print_report(report: EvaluationReport) -> None:
    out = Console()
    table = Table(title=f"{report.examples} examples")
    for column in ("label", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, m in report.per_label.items():
        table.add_row(label, f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", str(m.support))
    out.print(table)
    out.print(
        f"accuracy {report.accuracy:.3f}   macro-F1 {report.macro_f1:.3f}   "
        f"intervention recall {report.intervention_recall:.3f}   "
        f"casual false-flag rate {report.casual_false_flag_rate:.3f}"
    )
    confusion = Table(title="confusion (rows: gold, columns: predicted)")
    confusion.add_column("gold")
    for label in LABELS:
        confusion.add_column(_short(label), justify="right")
    for label, row in zip(LABELS, report.confusion, strict=True):
        confusion.add_row(label, *(str(v) for v in row))
    out.print(confusion)


def _short(label: str) -> str:
    return {
        "casual": "casual",
        "possibly needs caution": "possibly",
        "probably needs caution": "probably",
        "needs caution": "caution",
        "needs intervention": "interv.",
    }[label]
