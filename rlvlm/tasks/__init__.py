"""rlvlm.tasks: visual QA data as (image, question, answers, facts) records.

- Procedural tasks, generated on demand and reproducible by seed:
  `make_task("digits" | "counting" | "colours" | "spatial" | "mixed", split, size, seed, image_size)`.
- Hugging Face VQA-style datasets: `load_hf_vqa(dataset, split=, columns=)`.
- Answer scoring: `normalize_answer`, `vqa_accuracy` (exact or VQA soft).
- Record checks: `validate_record`, `to_image_array`.

No torch here: the package is safe to import in env workers.
"""

from rlvlm.tasks.answers import normalize_answer, vqa_accuracy
from rlvlm.tasks.hf import HFVQADataset, load_hf_vqa
from rlvlm.tasks.procedural import COLOURS, GENERATORS, SHAPES, SPLITS, ProceduralTask, make_task
from rlvlm.tasks.records import RecordSequence, to_image_array, validate_record

TASKS = tuple(GENERATORS)

__all__ = [
    "COLOURS",
    "SHAPES",
    "SPLITS",
    "TASKS",
    "HFVQADataset",
    "ProceduralTask",
    "RecordSequence",
    "load_hf_vqa",
    "make_task",
    "normalize_answer",
    "to_image_array",
    "validate_record",
    "vqa_accuracy",
]
