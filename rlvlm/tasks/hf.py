"""Load VQA-style Hugging Face `datasets` as rlvlm QA records.

`datasets` is optional: it is imported only when a dataset is named by a
string; an already-built `datasets.Dataset` (or anything with the same
`column_names` / `__len__` / `__getitem__`) needs no import at all.
"""

from __future__ import annotations

from rlvlm.errors import ConfigError, DataError, OptionalDependencyError
from rlvlm.tasks.records import RecordSequence

DEFAULT_COLUMNS = {"image": "image", "question": "question", "answers": "answers"}
_OPTIONAL = ("facts", "rationale", "choices", "id")


def _answers(value, where: str) -> list[str]:
    """Answers as a list of str, from the shapes VQA datasets use:
    "yes"; ["yes", "no"]; [{"answer": "yes"}, ...] (VQAv2); {"answer": [...]}
    or {"text": [...]} (a Sequence of dicts, which `datasets` stores as a dict
    of lists)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        for key in ("answer", "text", "answers"):
            if key in value:
                return _answers(value[key], where)
        raise DataError(f"{where}: field 'answers' is a dict without 'answer' or 'text'; fix: map the answers column with columns={{'answers': ...}}")
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            if isinstance(item, dict):
                item = item.get("answer", item.get("text"))
            if not isinstance(item, str):
                raise DataError(f"{where}: field 'answers' holds {type(item).__name__}, not text; fix: map a column of strings")
            out.append(item)
        if out:
            return out
    raise DataError(f"{where}: field 'answers' is empty or not text ({value!r:.60}); fix: map a column of answer strings")


class HFVQADataset(RecordSequence):
    """A `datasets.Dataset` seen as a sequence of rlvlm QA records."""

    def __init__(self, dataset, columns: dict[str, str] | None = None, limit: int | None = None):
        names = list(getattr(dataset, "column_names", None) or [])
        if not names or not hasattr(dataset, "__getitem__"):
            raise DataError(
                f"dataset of type {type(dataset).__name__} has no column_names; fix: pass a datasets.Dataset (pick a split of a DatasetDict)"
            )
        self.columns = {**DEFAULT_COLUMNS, **(columns or {})}
        unknown = set(self.columns) - set(DEFAULT_COLUMNS) - set(_OPTIONAL)
        if unknown:
            raise ConfigError(f"columns has unknown record fields {sorted(unknown)}; fix: map only {', '.join((*DEFAULT_COLUMNS, *_OPTIONAL))}")
        for field, col in self.columns.items():
            if col not in names:
                raise DataError(
                    f"dataset has no column '{col}' for field '{field}' (columns: {', '.join(names)}); "
                    f"fix: pass columns={{'{field}': '<column name>'}}"
                )
        self.dataset = dataset
        self.size = len(dataset) if limit is None else min(int(limit), len(dataset))

    def _record(self, index: int) -> dict:
        row = self.dataset[index]
        where = f"dataset row {index}"
        record = {field: row[col] for field, col in self.columns.items()}
        record["answers"] = _answers(record["answers"], where)
        record.setdefault("id", str(index))
        return record


def load_hf_vqa(dataset, *, split: str | None = None, columns: dict[str, str] | None = None, limit: int | None = None, **load_kwargs) -> HFVQADataset:
    """QA records from a Hugging Face dataset.

    dataset: a `datasets.Dataset`, a `DatasetDict` (give `split`), or a name
        or local path for `datasets.load_dataset(dataset, split=split, **load_kwargs)`.
    columns: map record fields to columns, e.g. {"answers": "multiple_choice_answer"};
        defaults to image/question/answers; facts, rationale, choices, id optional.
    limit: use only the first `limit` rows.
    """
    if isinstance(dataset, str):
        try:
            import datasets  # lazy: optional dependency
        except ImportError as exc:
            raise OptionalDependencyError(
                "loading a dataset by name needs the 'datasets' package; fix: pip install datasets"
            ) from exc
        dataset = datasets.load_dataset(dataset, split=split, **load_kwargs)
    # A DatasetDict (or a plain dict of splits) maps split names to datasets;
    # its column_names, if any, is a dict per split.
    cols = getattr(dataset, "column_names", None)
    if isinstance(cols, dict) or (cols is None and hasattr(dataset, "keys")):
        if split is None or split not in dataset:
            raise DataError(f"dataset has splits {list(dataset.keys())}, split={split!r}; fix: pass split=<one of them>")
        dataset = dataset[split]
    return HFVQADataset(dataset, columns, limit)
