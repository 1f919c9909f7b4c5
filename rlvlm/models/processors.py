"""Processor loading that works with and without torchvision.

transformers 5.x gives most image processors two backends: a torchvision one
(the default) and a PIL/NumPy one (`...ImageProcessorPil`). Qwen2-VL-family
processors also own a *video* processor whose module imports torchvision, and
there is no CPU build of torchvision on many machines (including ours). rlvlm
never feeds videos, so when torchvision is missing we rebuild the processor
from the same directory without the video processor. Hub checkpoints and our
tiny models go through the same function; with torchvision installed the
standard `AutoProcessor.from_pretrained` path is used unchanged.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
from pathlib import Path

from rlvlm.errors import ModelSetupError

log = logging.getLogger(__name__)


def has_torchvision() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def image_processor_class(name: str):
    """The image processor class `name`, or its PIL twin when torchvision is absent.

    Both produce the same `pixel_values` layout; the saved config records the
    base name, so a machine with torchvision loads the faster backend.
    """
    import transformers

    if not has_torchvision() and hasattr(transformers, name + "Pil"):
        return getattr(transformers, name + "Pil")
    return getattr(transformers, name)


_IMAGE_ONLY: dict[type, type] = {}


class _NoVideo:
    """Stands where a processor's video processor would be: some processors read its frame
    settings even for images (SmolVLM's chat template reads num_frames and fps)."""

    num_frames = None
    fps = None

    def __call__(self, *args, **kwargs):
        raise ModelSetupError("this processor was loaded without its video processor (no torchvision); "
                              "rlvlm sends images only")


def image_only_processor_class(cls: type) -> type:
    """A subclass of processor `cls` that has no video processor.

    ProcessorMixin derives a processor's parts from its `__init__` signature
    and type-checks each one against its base class; the video base class is
    unavailable without torchvision, so even `video_processor=None` fails. The
    subclass's signature is the parent's without `video_processor`: only image
    processor and tokenizer are checked, and every other setting the parent
    names (SmolVLM's `image_seq_len`, LLaVA-OneVision's `num_image_tokens`) is
    still saved, because transformers saves exactly the settings the signature
    names. It keeps the parent's name, so what it saves reloads as the
    standard class on a machine with torchvision.
    """
    if not has_torchvision() and "video_processor" in inspect.signature(cls.__init__).parameters:
        if cls not in _IMAGE_ONLY:
            _IMAGE_ONLY[cls] = _image_only_subclass(cls)
        return _IMAGE_ONLY[cls]
    return cls


def _image_only_subclass(cls: type) -> type:
    from transformers.processing_utils import ProcessorMixin

    parent = inspect.signature(cls.__init__)
    names = [n for n in parent.parameters if n != "self"]
    slot = names.index("video_processor")

    def __init__(self, *args, **kwargs):
        kwargs.pop("video_processor", None)
        if len(args) > slot:
            args = (*args[:slot], None, *args[slot:])
        else:
            kwargs["video_processor"] = None
        cls.__init__(self, *args, **kwargs)
        self.video_processor = _NoVideo()

    class _WithoutVideo(ProcessorMixin):
        """Sits between `cls` and ProcessorMixin in the MRO and takes the video processor out of what
        `cls` passes up, in either form (a keyword for Gemma 4, a positional for Qwen2-VL)."""

        def __init__(self, *args, **kwargs):
            kwargs.pop("video_processor", None)
            if len(args) > slot:
                args = (*args[:slot], *args[slot + 1:])
            super().__init__(*args, **kwargs)

    __init__.__signature__ = parent.replace(
        parameters=[p for name, p in parent.parameters.items() if name != "video_processor"])
    return type(cls.__name__, (cls, _WithoutVideo), {"__init__": __init__, "__module__": cls.__module__})


def _processor_class_name(path: str, **hub_kwargs) -> str | None:
    """Read `processor_class` from processor_config.json (local dir or hub cache)."""
    from transformers.utils import cached_file

    for fname in ("processor_config.json", "preprocessor_config.json"):
        try:
            resolved = cached_file(path, fname, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        except OSError:
            resolved = None
        if resolved and Path(resolved).is_file():
            data = json.loads(Path(resolved).read_text())
            if data.get("processor_class"):
                return data["processor_class"]
    return None


def load_processor(name_or_path: str, *, trust_remote_code: bool = False, **hub_kwargs):
    """Load the processor of a VLM by hub id or directory.

    With torchvision: plain `AutoProcessor.from_pretrained`. Without it, and
    for processors that carry a video processor, the processor class is built
    from its tokenizer and image processor with `video_processor=None`.
    """
    from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        return AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **hub_kwargs)
    except (ImportError, ValueError, TypeError, OSError) as err:
        if has_torchvision() or not _mentions_video_or_torchvision(err):
            raise ModelSetupError(
                f"model.name_or_path={name_or_path!r} ({_model_type(name_or_path, **hub_kwargs)}): cannot load its "
                f"processor ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); check the path/hub id and that it is a VLM"
            ) from err
        log.info("torchvision missing: loading %s's processor without its video processor", name_or_path)
    import transformers

    family = _model_type(name_or_path, **hub_kwargs)
    cls_name = _processor_class_name(name_or_path, **hub_kwargs)
    if cls_name is None or not hasattr(transformers, cls_name):
        raise ModelSetupError(
            f"model.name_or_path={name_or_path!r} ({family}): its processor needs torchvision, which is not "
            "installed, and no processor_class could be read to build it without one; fix: pip install torchvision"
        )
    cls = image_only_processor_class(getattr(transformers, cls_name))
    kwargs = _processor_init_kwargs(name_or_path, **hub_kwargs)
    # Each part the class names, loaded by its own Auto class (an audio feature extractor too: Gemma 4).
    parts = {"tokenizer": lambda: AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code,
                                                                **hub_kwargs),
             "image_processor": lambda: AutoImageProcessor.from_pretrained(name_or_path, **hub_kwargs),
             "feature_extractor": lambda: AutoFeatureExtractor.from_pretrained(name_or_path, **hub_kwargs)}
    try:
        for name in cls.get_attributes():
            if name not in parts:
                raise ImportError(f"its {name} has no torchvision-free loader")
            kwargs[name] = parts[name]()
        return cls(**kwargs)
    except ImportError as err:  # a processor class that itself requires torchvision (Mistral 3's PixtralProcessor)
        raise ModelSetupError(
            f"model.name_or_path={name_or_path!r} ({family}): its processor {cls_name} requires torchvision, "
            "which is not installed; fix: pip install torchvision (the build matching your torch)"
        ) from err


def _model_type(path: str, **hub_kwargs) -> str:
    """The `model_type` in config.json, for error messages ('unknown family' if unreadable)."""
    from transformers.utils import cached_file

    try:
        resolved = cached_file(path, "config.json", _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        return json.loads(Path(resolved).read_text()).get("model_type", "unknown family") if resolved else \
            "unknown family"
    except (OSError, ValueError):
        return "unknown family"


def _mentions_video_or_torchvision(err: BaseException) -> bool:
    text = f"{type(err).__name__} {err}".lower()
    return "torchvision" in text or "video" in text


def _processor_init_kwargs(path: str, **hub_kwargs) -> dict:
    """Processor-level settings (chat template, token counts) saved next to the model."""
    from transformers.utils import cached_file

    kwargs: dict = {}
    resolved = cached_file(path, "processor_config.json", _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    if resolved and Path(resolved).is_file():
        data = json.loads(Path(resolved).read_text())
        for key, value in data.items():
            if key in ("processor_class", "image_processor", "video_processor", "feature_extractor", "tokenizer") \
                    or key.startswith("_"):
                continue
            kwargs[key] = value
    for fname in ("chat_template.jinja", "chat_template.json"):
        tpl = cached_file(path, fname, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        if tpl and Path(tpl).is_file():
            text = Path(tpl).read_text()
            kwargs.setdefault("chat_template", json.loads(text)["chat_template"] if fname.endswith("json") else text)
            break
    return kwargs
