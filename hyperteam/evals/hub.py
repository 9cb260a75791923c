"""Fetching the math suites from the Hugging Face hub into hyperteam's data cache.

A suite's split is downloaded once with ``huggingface_hub`` (which honours
``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE``),
checked against the record count the data set is published with, converted
to the JSONL layout a ``HYPERTEAM_DATA_DIR`` has (``gsm8k/test.jsonl``, ...)
and written under ``cache_dir()``. Later loads read that file and never touch
the network.

Sources (the files, as the hub serves them):

==========  ====================  ================================================  =====================
suite       repo (dataset)        files                                             records
==========  ====================  ================================================  =====================
gsm8k       openai/gsm8k          ``main/{train,test}-00000-of-00001.parquet``      train 7473, test 1319
gsm-hard    reasoning-machines/   ``gsmhardv2.jsonl``                               test 1319
            gsm-hard
multiarith  ChilleD/MultiArith    ``train.json`` + ``test.json`` (JSON lists)       test 600 (420 + 180)
==========  ====================  ================================================  =====================
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from hyperteam.errors import ConfigError

__all__ = ["SOURCES", "HubFile", "HubSource", "cache_dir", "fetch", "offline"]

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "HYPERTEAM_CACHE_DIR"
# A hub that does not answer within this many seconds is treated as unreachable:
# a newcomer offline should get the fallback in seconds, not after minutes of retries.
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class HubFile:
    """One file of a hub dataset repo and how to read its records.

    Attributes:
        path: the path inside the repo.
        question: the field holding the question.
        answer: the field holding the gold answer.
    """

    path: str
    question: str
    answer: str


@dataclass(frozen=True, slots=True)
class HubSource:
    """Where one split of a suite lives on the hub.

    Attributes:
        repo: the dataset repo id.
        files: the files whose records, in order, make up the split.
        records: how many records the split is published with.
        revision: the branch, tag or commit to read.
    """

    repo: str
    files: tuple[HubFile, ...]
    records: int
    revision: str = "main"


_GSM8K = "openai/gsm8k"
_MULTIARITH = (HubFile("train.json", "question", "final_ans"), HubFile("test.json", "question", "final_ans"))

# suite -> split -> source
SOURCES: dict[str, dict[str, HubSource]] = {
    "gsm8k": {
        "train": HubSource(_GSM8K, (HubFile("main/train-00000-of-00001.parquet", "question", "answer"),), 7473),
        "test": HubSource(_GSM8K, (HubFile("main/test-00000-of-00001.parquet", "question", "answer"),), 1319),
    },
    "gsm-hard": {
        "test": HubSource("reasoning-machines/gsm-hard", (HubFile("gsmhardv2.jsonl", "input", "target"),), 1319)
    },
    "multiarith": {"test": HubSource("ChilleD/MultiArith", _MULTIARITH, 600)},
}


def cache_dir() -> Path:
    """The folder downloaded suites are kept in, laid out like a ``HYPERTEAM_DATA_DIR``.

    ``$HYPERTEAM_CACHE_DIR/data`` when that is set, else ``hyperteam/data``
    under ``$XDG_CACHE_HOME`` (default ``~/.cache``).
    """
    root = os.environ.get(CACHE_DIR_ENV)
    if root:
        return Path(root).expanduser() / "data"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(xdg).expanduser() / "hyperteam" / "data"


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) forbids downloads, read now, not at import."""
    raw = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return raw.strip().upper() in {"1", "ON", "YES", "TRUE"}


def fetch(suite: str, split: str, *, dest: Path, question_field: str, answer_field: str) -> Path:
    """Downloads one split of ``suite``, checks its record count and writes it as JSONL at ``dest``.

    Records are written with ``question_field`` and ``answer_field`` as their
    keys, so that ``dest`` reads like the file of a data dir. The file appears
    whole or not at all (written beside, then renamed).

    Raises:
        ConfigError: offline with nothing cached, the hub unreachable or
            missing the file, or a download with the wrong number of records;
            each message says what to do.
    """
    source = SOURCES[suite][split]
    hint = _hint(dest)
    if offline():
        raise ConfigError(f"{suite} ({split}) is not cached and HF_HUB_OFFLINE is set: {hint}")
    hub = _hub()
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    commit = _probe(hub, source, endpoint, hint)
    records: list[dict[str, Any]] = []
    for file in source.files:
        try:
            local = hub.hf_hub_download(
                source.repo,
                file.path,
                repo_type="dataset",
                revision=commit,
                endpoint=endpoint,
                cache_dir=_hf_cache(),
                etag_timeout=PROBE_TIMEOUT_S,
            )
        except Exception as exc:  # huggingface_hub raises a variety (HTTP, OS, its own); all mean "not fetched"
            raise ConfigError(
                f"could not download {source.repo}/{file.path} from {endpoint}: {_why(exc)}; {hint}"
            ) from None
        for i, record in enumerate(_read_records(Path(local), file.path), start=1):
            question = record.get(file.question) if isinstance(record, dict) else None
            answer = record.get(file.answer) if isinstance(record, dict) else None
            if not isinstance(question, str) or not isinstance(answer, (str, int, float)):
                raise ConfigError(
                    f"{source.repo}/{file.path}: record {i} has no text {file.question!r} and {file.answer!r}; "
                    f"nothing cached: {hint}"
                )
            records.append({question_field: question, answer_field: answer})
    if len(records) != source.records:
        raise ConfigError(
            f"{source.repo} from {endpoint} has {len(records)} records for {suite} {split}, expected "
            f"{source.records}; nothing cached: {hint}"
        )
    _write_jsonl(dest, records)
    log.info("cached %s %s (%d records from %s) at %s", suite, split, len(records), source.repo, dest)
    return dest


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:  # pragma: no cover - a core dependency, missing only in a broken install
        raise ConfigError("downloading suites needs huggingface_hub: pip install huggingface_hub") from None
    return huggingface_hub


def _probe(hub: Any, source: HubSource, endpoint: str, hint: str) -> str:
    """One HEAD request with a short timeout: the commit to pin every file of the split to."""
    url = hub.hf_hub_url(source.repo, source.files[0].path, repo_type="dataset", revision=source.revision,
                         endpoint=endpoint)  # fmt: skip
    try:
        meta = hub.get_hf_file_metadata(url, timeout=PROBE_TIMEOUT_S, endpoint=endpoint)
    except Exception as exc:  # connection refused, DNS failure, timeout, 404: all end in the same advice
        raise ConfigError(f"cannot reach the Hugging Face hub at {endpoint} ({_why(exc)}): {hint}") from None
    if not meta.commit_hash:
        raise ConfigError(f"{endpoint} does not answer like a Hugging Face hub (no commit header): {hint}")
    return str(meta.commit_hash)


def _hf_cache() -> str | None:
    # huggingface_hub reads HF_HOME / HF_HUB_CACHE once, at import; read them now.
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]).expanduser() / "hub")
    return None


def _hint(dest: Path) -> str:
    return (
        f"connect to the internet (or set HF_ENDPOINT to a hub mirror) and retry, or set HYPERTEAM_DATA_DIR to a "
        f"folder holding {dest.parent.name}/{dest.name}, or run the bundled suite 'demo'"
    )


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _read_records(path: Path, name: str) -> Iterator[dict[str, Any]]:
    """Records of a downloaded file: parquet, a JSON list, or JSONL."""
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - a core dependency
            raise ConfigError("reading the hub's parquet files needs pyarrow: pip install pyarrow") from None
        try:
            yield from pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow's errors for a corrupt file are many
            raise ConfigError(f"{name}: not a readable parquet file ({_why(exc)})") from None
        return
    data = path.read_bytes()
    try:
        if name.endswith(".json"):
            items = orjson.loads(data)
            if not isinstance(items, list):
                raise ConfigError(f"{name}: expected a JSON list of records")
            yield from items
        else:
            for line in data.splitlines():
                if line.strip():
                    yield orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{name}: invalid JSON ({exc})") from None


def _write_jsonl(dest: Path, records: list[dict[str, Any]]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for record in records:
                f.write(orjson.dumps(record) + b"\n")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
