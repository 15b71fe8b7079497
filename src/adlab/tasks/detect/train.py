"""`task: detect`'s training: YOLO through ultralytics, leaving adlab's usual run directory.

ultralytics (AGPL-3.0) is an optional extra, `adlab[detect]`, imported only here. It trains and
validates; adlab checks the data first (clear errors for malformed labels), converts its outputs
into the run-directory contract, and scores the same validation predictions a second time with
torchmetrics' MeanAveragePrecision as an independent check of the mAP.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import time
import warnings
import zipfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from adlab import io
from adlab.config import Config
from adlab.detection.yolo_format import YoloDataset, read_data_yaml, read_labels, yolo_to_pixels
from adlab.errors import CheckpointError, ConfigError, DataError
from adlab.models.checkpoints import sha256_file
from adlab.tasks.base import Job, Say
from adlab.tasks.detect.per_image import HEADER as PER_IMAGE_HEADER
from adlab.tasks.lightning.loggers import (
    check_installed,
    flat_params,
    log_outputs_to_mlflow,
    mlflow_process_state,
    mlflow_run_id,
    mlflow_target,
)

if TYPE_CHECKING:
    from ultralytics.engine.results import Results

OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "muon": "MuSGD"}  # MuSGD: ultralytics' own Muon + SGD
HISTORY = [
    "epoch",
    "train_loss",
    "val_loss",
    "val_map50",
    "val_map50_95",
    "val_precision",
    "val_recall",
    "lr",
    "seconds",
]
# ultralytics' validation thresholds; detections per image capped at COCO's 100, which both
# pycocotools' summary (behind torchmetrics) and our scenes of a few objects are built around
VAL_CONF, VAL_IOU, MAX_DET = 0.001, 0.7, 100
# what the run knows of the last.pt ultralytics saved: its sha256, and whether training had ended
CHECKPOINT_RECORD = "last.pt.sha256"


# ultralytics' log lines that say nothing to an adlab user: the banner of a settings file it makes, a
# storage speed hint that small data sets on a busy machine trigger, the fallback from an unwritable
# settings folder (to a private one in /tmp)
ULTRALYTICS_NOISE = ("Creating new Ultralytics Settings", "Slow image access detected", "is not writable, using")


def _quiet_ultralytics_noise(record: logging.LogRecord) -> bool:
    return not any(text in str(record.msg) for text in ULTRALYTICS_NOISE)


def ultralytics_settings_file() -> Path:
    """The settings.json ultralytics would read on import (its get_user_config_dir, on Linux and macOS:
    YOLO_CONFIG_DIR, else the platform's config folder)."""
    if os.environ.get("YOLO_CONFIG_DIR"):
        folder = Path(os.environ["YOLO_CONFIG_DIR"]).expanduser()
    elif sys.platform == "darwin":
        folder = Path.home() / "Library" / "Application Support"
    elif os.name == "nt":
        folder = Path.home() / "AppData" / "Roaming"
    else:
        folder = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return folder / "Ultralytics" / "settings.json"


def adlab_ultralytics_config_dir() -> Path:
    """adlab's own place for ultralytics' settings, used where the user has none: importing ultralytics
    writes a settings file (and prints a banner) wherever it finds none."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "adlab" / "ultralytics"


def _import_ultralytics():
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no update checks or telemetry from a training job
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")  # never pip-install packages at run time
    if "ultralytics" not in sys.modules and not ultralytics_settings_file().is_file():
        # the user's own settings (weights_dir, ...) are read where they exist; none: adlab's place, not
        # a new file in the user's config folder (nor in a fresh YOLO_CONFIG_DIR)
        os.environ["YOLO_CONFIG_DIR"] = str(adlab_ultralytics_config_dir())
    logging.getLogger("ultralytics").addFilter(_quiet_ultralytics_noise)  # ultralytics' logger keeps its filters
    try:
        import ultralytics
        from ultralytics.utils import patches
    except ImportError:
        raise ConfigError("task detect needs ultralytics: pip install 'adlab[detect]' (AGPL-3.0)") from None
    # ultralytics replaces PIL.Image.open process-wide (to fetch a HEIF plugin on the first unreadable
    # file); put Pillow's own back so the rest of adlab keeps its clear "cannot read image" errors.
    import PIL.Image

    PIL.Image.open = getattr(patches, "_image_open", PIL.Image.open)
    return ultralytics


def _ultralytics(threads: int | None = None):
    import torch

    ultralytics = _import_ultralytics()
    # ultralytics caps torch at cpu_count - 1 threads when it picks the CPU: on a 2-core laptop that
    # halves training speed. Its select_device reads this module-level value.
    from ultralytics.utils import torch_utils

    torch_utils.NUM_THREADS = threads or os.cpu_count() or 1
    torch.set_num_threads(torch_utils.NUM_THREADS)
    return ultralytics


def check_dataset(ds: YoloDataset) -> dict:
    """Every label of every split is valid, every label file has its image, and every image's header
    is readable (and within Pillow's decompression-bomb limit); counts per split."""
    from adlab.detection.tools import image_size

    counts = {}
    for split, folder in ds.splits.items():
        images = ds.images(split)
        if not images:
            raise DataError(f"{ds.yaml_path}: {split} folder {folder} has no images")
        stems = {ds.label_path(p) for p in images}
        label_dir = ds.label_path(images[0]).parent
        for label in sorted(label_dir.glob("*.txt")) if label_dir.is_dir() else []:
            if label not in stems:
                raise DataError(f"{label}: label file without an image")
        instances = 0
        for image in images:
            instances += len(read_labels(ds.label_path(image), len(ds.names)))
            image_size(image)
        counts[split] = {"images": len(images), "instances": instances}
    return counts


ULTRALYTICS_EXAMPLES = "e.g. yolov8n.pt, yolo11n.pt, yolov5su.pt"
# ultralytics' release assets that are not detection models (task detect trains boxes only)
OTHER_TASKS = (
    "-cls",
    "-seg",
    "-pose",
    "-obb",
    "-sem",
    "-depth",
    "-reid",
    "-world",
    "sam",
    "FastSAM",
    "yoloe-",
    "yolo_nas",
    "rtdetr",
)


@dataclass(frozen=True)
class DetectWeights:
    """The checkpoint a detection run starts from: said once and kept in env.json."""

    file: str
    sha256: str
    source: str  # "ultralytics" (a release asset asked for by name), "run" (a detection run folder) or "file"
    name: str | None = None  # the ultralytics asset name, e.g. yolov8n.pt
    url: str | None = None  # where ultralytics downloads that asset from
    downloaded: bool = False

    def line(self) -> str:
        what = {
            "ultralytics": f"ultralytics {self.name} from {self.file}",
            "run": f"{self.file} (a detection run's best checkpoint)",
        }.get(self.source, self.file)
        return f"weights: {what}, sha256 {self.sha256[:8]}…" + (" (downloaded now)" if self.downloaded else "")

    def to_dict(self) -> dict:
        record: dict[str, str | bool | None] = {"source": self.source, "file": self.file, "sha256": self.sha256}
        if self.source == "ultralytics":
            record.update(name=self.name, url=self.url, downloaded=self.downloaded)
        return record


def resolve_weights(weights: str | None, model_name: str) -> DetectWeights | None:
    """model.weights as a file: a .pt, a detection run folder (its best.pt), or, for a bare name that is
    no file here (yolov8n.pt), ultralytics' release asset of that name in its weights folder,
    downloaded there on first use."""
    if weights is None:
        return None
    path = Path(weights)
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
        if not path.is_file():
            raise ConfigError(f"model.weights: {path} not found (a .pt checkpoint or a detection run folder)")
        return DetectWeights(str(path), sha256_file(path), "run")
    if path.is_file():
        return DetectWeights(str(path), sha256_file(path), "file")
    if len(path.parts) != 1 or "/" in weights or "\\" in weights:
        raise ConfigError(f"model.weights: {path} not found (a .pt checkpoint or a detection run folder)")
    return ultralytics_asset(weights, model_name)


def ultralytics_weights_dir() -> Path:
    """Where ultralytics keeps the checkpoints it downloads (`yolo settings`: weights_dir)."""
    from ultralytics.utils import SETTINGS

    return Path(SETTINGS["weights_dir"]).expanduser().resolve()


def ultralytics_asset(name: str, model_name: str) -> DetectWeights:
    """ultralytics' checkpoint `name` (one of its release assets) from its weights folder, downloaded
    there if absent. Checked before anything is fetched: a known detection model, the one model.name
    names (the network is the checkpoint's)."""
    import difflib
    import inspect

    from ultralytics.utils import downloads

    known = sorted(n for n in downloads.GITHUB_ASSETS_NAMES if n.endswith(".pt"))
    if name not in known:
        close = difflib.get_close_matches(name, [n for n in known if not any(m in n for m in OTHER_TASKS)], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"model.weights: unknown ultralytics checkpoint {name!r} ({ULTRALYTICS_EXAMPLES}{hint}) "
            f"and no such file {Path(name).absolute()}"
        )
    stem = Path(name).stem
    if any(mark in name for mark in OTHER_TASKS):
        raise ConfigError(
            f"model.weights: {name} is not an ultralytics detection model; task detect trains "
            f"boxes ({ULTRALYTICS_EXAMPLES})"
        )
    if model_name not in (stem, stem.removesuffix("u")):  # yolov5s and yolov5su: the same network
        raise ConfigError(
            f"model.weights: {name} is a {stem} checkpoint but model.name is {model_name}; set "
            f"model.name: {stem} (the network is the checkpoint's)"
        )
    path = ultralytics_weights_dir() / name
    release = inspect.signature(downloads.attempt_download_asset).parameters["release"].default
    url = f"https://github.com/{downloads.GITHUB_ASSETS_REPO}/releases/download/{release}/{name}"
    downloaded = not path.is_file()
    if downloaded:
        try:
            # an absolute path: downloaded into the weights folder, never into the working folder
            downloads.attempt_download_asset(str(path))
        except Exception as exc:  # ConnectionError offline, or an HTTP error
            reason = " ".join(str(exc).split()).lstrip("❌ ").replace(f"Download failure for {url}. ", "").rstrip(".")
            reason = reason or type(exc).__name__
            raise CheckpointError(
                f"model.weights: {name} could not be downloaded from {url} ({reason}); without "
                f"internet, put that file at {path}"
            ) from None
        if not path.is_file():
            raise CheckpointError(
                f"model.weights: {name} was not downloaded from {url}; without internet, put that file at {path}"
            )
    return DetectWeights(str(path), sha256_file(path), "ultralytics", name=name, url=url, downloaded=downloaded)


@dataclass
class DetectState:
    ds: YoloDataset
    counts: dict
    weights: str | None
    model: object  # the YOLO model a new run trains
    verbose: bool


def prepare(config: Config, say: Say) -> Job:
    """The data set checked, ultralytics set up and the model built: every bad input fails here."""
    if config.data.name != "yolo" or not config.data.root:
        raise ConfigError("data: task detect reads a YOLO data set: data.name: yolo, data.root: path/to/data.yaml")
    ds = read_data_yaml(config.data.root)
    counts = check_dataset(ds)
    if "val" not in ds.splits:
        raise DataError(f"{ds.yaml_path}: task detect needs a val split to score the model")
    check_installed(config.train.loggers)
    ultralytics = _ultralytics(config.train.num_threads)
    if config.train.optimizer == "muon" and importlib.util.find_spec("ultralytics.optim") is None:
        raise ConfigError(
            f"train.optimizer: muon needs ultralytics' MuSGD (8.4 or later); "
            f"ultralytics {ultralytics.__version__} is installed"
        )
    from ultralytics.utils import LOGGER

    verbose = say is print
    if not verbose:
        LOGGER.setLevel(logging.WARNING)
    weights = resolve_weights(config.model.weights, config.model.name)
    model = _yolo_weights(weights) if weights else _yolo(f"{config.model.name}.yaml", config)
    say(
        f"data: {ds.yaml_path}; classes {len(ds.names)} ({', '.join(ds.names)}); "
        + "; ".join(f"{s} {c['images']} images, {c['instances']} objects" for s, c in counts.items())
    )
    if weights:
        say(weights.line())
    say(f"model: {config.model.name}" + (" from its weights" if weights else " from scratch"))
    environment = {
        "ultralytics": ultralytics.__version__,
        "data": str(ds.yaml_path),
        "counts": counts,
        "weights": weights.to_dict() if weights else None,
    }
    return Job(config, environment, DetectState(ds, counts, weights.file if weights else None, model, verbose))


def _yolo(source: str, config: Config):
    from ultralytics import YOLO

    try:
        return YOLO(source)
    except (FileNotFoundError, KeyError, AttributeError) as exc:
        raise ConfigError(
            f"model.name: {config.model.name!r} is not an ultralytics model "
            f"(e.g. yolov8n, yolo11n, yolov5nu) ({str(exc).splitlines()[0]})"
        ) from None


def _yolo_weights(weights: DetectWeights):
    """The YOLO model of a checkpoint file (a path the user gave, or an ultralytics release asset asked
    for by name), checked first as untrusted input.

    ultralytics' .pt files are pickles of whole modules, not state dicts: adlab's weights_only read of
    other checkpoints refuses them, and ultralytics loads them with full unpickling (which runs
    whatever the file holds). So the file is first read with ultralytics' own restricted loader
    (`torch_safe_load(safe_only=True)`: weights_only plus an allow-list of its model classes); only a
    file that passes, i.e. references nothing else, is then loaded by YOLO(). ultralytics or torch too
    old for that loader: the file is trusted as the user named it, as before; its sha256 is recorded
    either way. (The allow-list, once registered, stays for the process, as ultralytics documents.)"""
    from ultralytics import YOLO

    path = weights.file
    fix = "; delete it and run again online" if weights.source == "ultralytics" else ""
    if not _complete_zip(Path(path).read_bytes()):
        raise CheckpointError(
            f"{path}: not a readable ultralytics checkpoint (not a whole torch file: cut short, or another format){fix}"
        )
    try:
        _restricted_load(path)
    except Exception as exc:
        text = " ".join(str(exc).split())
        if "references types outside" in text:
            raise CheckpointError(
                f"{path}: refused: it references types outside ultralytics' checkpoint format "
                "(loading it could run code)"
            ) from None
        raise CheckpointError(f"{path}: not a readable ultralytics checkpoint ({_reason(exc, path)}){fix}") from None
    try:
        model = YOLO(path)
    except Exception as exc:  # a dict without a model, a model of another ultralytics version, ...
        raise CheckpointError(f"{path}: not an ultralytics checkpoint ({_reason(exc, path)}){fix}") from None
    if model.task != "detect":
        raise ConfigError(
            f"model.weights: {weights.file} is an ultralytics {model.task} model; task detect "
            f"trains boxes ({ULTRALYTICS_EXAMPLES})"
        )
    return model


def _reason(exc: Exception, path: str) -> str:
    """ultralytics' message in a few words: its first sentence, without its "ERROR ❌️ <file>" prefix."""
    text = " ".join(str(exc).split()).replace("ERROR ❌️ ", "").replace(f"{path} ", "")
    return text.split(". ")[0][:160] or type(exc).__name__


def _restricted_load(path: str) -> None:
    """ultralytics' weights_only read of a checkpoint against its allow-list (8.4 and torch 2.6 on);
    raises for a file that references anything else."""
    import inspect

    from ultralytics.nn import tasks

    safe_load = getattr(tasks, "_SafeLoad", None)
    if "safe_only" in inspect.signature(tasks.torch_safe_load).parameters and getattr(safe_load, "SUPPORTED", False):
        tasks.torch_safe_load(path, safe_only=True)


def fit(job: Job, run_dir: Path, restart_from: Path | None, say: Say) -> dict:
    """Train with ultralytics (from its `last.pt` when resuming: it takes every other setting from
    that checkpoint), then the run-folder contract: checkpoints, history.csv, figures, metrics.json.
    ultralytics' integrations log exactly what train.loggers asks for."""
    with _integrations(job.config, run_dir, resuming=restart_from is not None) as mlflow_run:
        metrics = _fit(job, run_dir, restart_from, say)
        if mlflow_run is not None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient()  # the run's store, set by _mlflow_run
            run_id = mlflow_run.info.run_id
            # ultralytics logged its own arguments; adlab's config adds its dotted keys, except top-level
            # `task` and `name`, which ultralytics' arguments have too (MLflow refuses to change a parameter)
            logged = client.get_run(run_id).data.params
            params = {k: v for k, v in flat_params(job.config).items() if k not in logged}
            log_outputs_to_mlflow(client, run_id, run_dir, metrics, step=metrics["epochs_trained"], params=params)
    return metrics


# ultralytics' integrations (`yolo settings` keys). Each is on whenever its package imports and the
# settings file allows it, which it does by default for clearml, comet, dvc, mlflow and raytune.
INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")


@contextmanager
def _integrations(config: Config, run_dir: Path, resuming: bool):
    """ultralytics' integrations on for this training exactly as train.loggers says (tensorboard,
    mlflow), every other one off, whatever is installed or in `yolo settings`. Set in memory on its
    SETTINGS dict, which each trainer reads: SettingsManager.update (and item assignment) would write
    the user's settings file. Yields the MLflow run ultralytics logs into (None: no mlflow)."""
    from ultralytics.utils import SETTINGS

    saved = {key: SETTINGS[key] for key in INTEGRATIONS}
    dict.update(SETTINGS, {key: key in config.train.loggers for key in INTEGRATIONS})
    try:
        with (
            warnings.catch_warnings(),
            _mlflow_run(config, run_dir, resuming) if "mlflow" in config.train.loggers else nullcontext() as run,
        ):
            # the TensorBoard callback draws the model's graph with torch.jit.trace, which torch deprecates
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.*is deprecated")
            warnings.filterwarnings("ignore", message="The input to trace is already a ScriptModule")
            yield run
    finally:
        dict.update(SETTINGS, saved)


@contextmanager
def _mlflow_run(config: Config, run_dir: Path, resuming: bool):
    """The MLflow run ultralytics logs into. adlab starts it, where a Lightning run of this config
    would log (the run folder's store, or MLFLOW_TRACKING_URI; the same run again on resume);
    ultralytics' callback finds it active, logs its arguments, epochs and plots into it and leaves it
    open; adlab adds its own results and ends it."""
    import mlflow

    target = mlflow_target(config, run_dir)
    with mlflow_process_state():
        experiment_id, run_id = mlflow_run_id(target, resuming)
        mlflow.set_tracking_uri(target.uri)
        os.environ["MLFLOW_EXPERIMENT_NAME"] = target.experiment  # the experiment ultralytics' callback sets
        run = mlflow.start_run(
            run_id=run_id,
            experiment_id=experiment_id,
            nested=mlflow.active_run() is not None,
            run_name=None if run_id else target.run_name,
            tags=None if run_id else target.tags,
        )
        status = "FAILED"
        try:
            yield run
            status = "FINISHED"
        finally:
            mlflow.end_run(status)
            mlflow.autolog(disable=True)  # ultralytics' callback turned autologging on for the whole process


def _fit(job: Job, run_dir: Path, restart_from: Path | None, say: Say) -> dict:
    config, s = job.config, job.state
    ds, counts = s.ds, s.counts
    model = _yolo(str(restart_from), config) if restart_from is not None else s.model
    data_yaml = _resolved_data_yaml(ds, run_dir).resolve()
    model.add_callback("on_model_save", _record_saved_checkpoint)

    tc = config.train
    imgsz = config.data.image_size or 640
    started = time.perf_counter()
    if restart_from is not None:
        metrics_obj = model.train(
            resume=True, data=str(data_yaml), device=_device(tc), workers=0, plots=True, verbose=s.verbose
        )
    else:
        metrics_obj = model.train(
            data=str(data_yaml),
            epochs=tc.epochs,
            imgsz=imgsz,
            batch=tc.batch_size,
            device=_device(tc),
            workers=0,
            project=str(run_dir.resolve()),
            name="ultralytics",
            exist_ok=True,  # relative: under ~/runs
            optimizer=OPTIMIZERS[tc.optimizer],
            lr0=tc.lr,
            weight_decay=tc.weight_decay,
            momentum=tc.momentum,
            seed=tc.seed,
            deterministic=tc.deterministic,
            cos_lr=tc.scheduler is not None and tc.scheduler.name == "cosine",
            patience=tc.early_stopping_patience or 100,
            plots=True,
            verbose=s.verbose,
            amp=False,
            warmup_epochs=min(3.0, tc.epochs / 4),  # ultralytics' 3 warm-up epochs would be all of a short run
            pretrained=s.weights is not None,
        )
    train_seconds = time.perf_counter() - started
    yolo_dir = run_dir / "ultralytics"
    for name in ("best.pt", "last.pt"):
        shutil.move(str(yolo_dir / "weights" / name), run_dir / "checkpoints" / name)
    history = _history_from_results(yolo_dir / "results.csv", run_dir / "history.csv")

    box = metrics_obj.box
    precision, recall = float(box.mp), float(box.mr)
    per_class50: dict[str, float | None] = {name: None for name in ds.names}
    per_class: dict[str, float | None] = {name: None for name in ds.names}
    for i, c in enumerate(box.ap_class_index):
        per_class50[ds.names[int(c)]] = float(box.ap50[i])
        per_class[ds.names[int(c)]] = float(box.ap[i])
    independent, per_image = torchmetrics_map(run_dir / "checkpoints" / "best.pt", ds, imgsz, _device(tc))
    metrics = {
        "map50": float(box.map50),
        "map50_95": float(box.map),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "per_class_ap50": per_class50,
        "per_class_ap50_95": per_class,
        **independent,
        "class_names": ds.names,
        "num_val_images": counts["val"]["images"],
        "num_val_instances": counts["val"]["instances"],
        "num_train_images": counts["train"]["images"],
        "train_seconds": round(train_seconds, 2),
        "epochs_trained": len(history),
    }
    _write_figures(run_dir, yolo_dir, ds, history, imgsz, _device(tc), config.name or config.model.name)
    io.write_csv(run_dir / "predictions.csv", PER_IMAGE_HEADER, per_image)  # the report's paired test
    io.write_json(run_dir / "metrics.json", metrics)
    say(
        f"val: map50={metrics['map50']:.4f}  map50_95={metrics['map50_95']:.4f}  precision={precision:.4f}  "
        f"recall={recall:.4f}  (torchmetrics map50={metrics['map50_torchmetrics']:.4f})  "
        f"({train_seconds:.1f} s training)"
    )
    return metrics


def _record_saved_checkpoint(trainer) -> None:
    """ultralytics callback, right after each save of last.pt: remember what it saved (see
    `interrupted_checkpoint`)."""
    record_checkpoint(Path(trainer.last), epoch=int(trainer.epoch), final=bool(trainer.stop))


def record_checkpoint(path: Path, epoch: int, final: bool) -> Path:
    """Write `path`'s sha256 next to it (atomically, in last.pt.sha256, as JSON): the proof that a
    last.pt found later is the one this run saved. `final`: training had ended with this save (what
    follows, ultralytics' final scoring, rewrites last.pt without its optimizer)."""
    record = Path(path).with_name(CHECKPOINT_RECORD)
    io.write_text(
        record,
        json.dumps({"file": Path(path).name, "sha256": sha256_file(path), "epoch": epoch, "final": final}) + "\n",
    )
    return record


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(Path(path).with_name(CHECKPOINT_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _complete_zip(data: bytes) -> bool:
    """Whether `data` is a whole zip archive (torch.save's format) with a readable central directory;
    a kill during ultralytics' (non-atomic) save leaves a file cut short, which is not."""
    import io as bytes_io

    try:
        if not zipfile.is_zipfile(bytes_io.BytesIO(data)):
            return False
        with zipfile.ZipFile(bytes_io.BytesIO(data)) as archive:
            return bool(archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def interrupted_checkpoint(run_dir: Path) -> Path | None:
    """The run's ultralytics training checkpoint to continue from (the twin of classification's
    `last_checkpoint`), or None: the run starts again.

    ultralytics checkpoints are full pickles (torch.load with weights_only=False): loading one can
    run code. So a last.pt is loaded only if its sha256 is the one this run recorded right after
    saving it (`record_checkpoint`, from ultralytics' on_model_save callback), checked before it is
    unpickled. A file that does not match is either cut short by a kill during ultralytics'
    non-atomic save (not a complete zip archive: the run starts again) or not this run's checkpoint
    (a CheckpointError naming it; so is a run stopped in the moment between ultralytics saving
    last.pt and the callback recording it, or a run made before adlab recorded checkpoints: removing
    the file starts the run again). A checkpoint saved as training ended (the run was stopped while
    being scored; ultralytics then rewrites the file without the optimizer) is not loaded at all:
    the run starts again. A loaded one must have its optimizer and epochs still to train."""
    path = Path(run_dir) / "ultralytics" / "weights" / "last.pt"
    if not path.is_file():
        return None
    record = _read_record(path)
    if record.get("final") is True:
        return None  # training had ended: nothing left to continue
    data = path.read_bytes()  # hashed and unpickled from the same bytes: no swap in between
    if record.get("sha256") != hashlib.sha256(data).hexdigest():
        if not _complete_zip(data):
            return None  # cut short by a kill while ultralytics wrote it: the run starts again
        raise CheckpointError(
            f"{path}: not the checkpoint this run saved; refusing to load it (it could run "
            "code); remove it to start the run again"
        )
    import io as bytes_io

    import torch

    _import_ultralytics()  # unpickling the checkpoint imports it: with adlab's settings, not its own
    try:
        ckpt = torch.load(bytes_io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception:  # unreadable although whole: the run starts again
        return None
    if not isinstance(ckpt, dict) or ckpt.get("optimizer") is None:
        return None
    # the last epoch's checkpoint: training ended, the run was stopped while it was being scored
    return path if 0 <= ckpt.get("epoch", -1) < (ckpt.get("train_args") or {}).get("epochs", 0) - 1 else None


def _device(tc) -> str:
    import torch

    if tc.accelerator == "cpu" or not torch.cuda.is_available():
        return "cpu"
    return "0"


def _resolved_data_yaml(ds: YoloDataset, run_dir: Path) -> Path:
    """A copy of data.yaml with absolute paths (ultralytics resolves relative ones elsewhere)."""
    spec = {"path": str(ds.root), **{s: str(p) for s, p in ds.splits.items()}, "names": dict(enumerate(ds.names))}
    io.write_yaml(run_dir / "data.yaml", spec)
    return run_dir / "data.yaml"


def _history_from_results(results: Path, path: Path) -> list[dict]:
    """ultralytics' results.csv as adlab's history.csv (losses summed over box, cls and dfl)."""
    with open(results, newline="") as f:
        rows = [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]
    out, previous = [], 0.0
    for row in rows:
        num = {k: float(v) for k, v in row.items() if v not in ("", None)}
        elapsed = num.get("time", previous)
        out.append(
            {
                "epoch": int(num["epoch"]),
                "train_loss": sum(num[k] for k in num if k.startswith("train/")),
                "val_loss": sum(num[k] for k in num if k.startswith("val/")),
                "val_map50": num.get("metrics/mAP50(B)"),
                "val_map50_95": num.get("metrics/mAP50-95(B)"),
                "val_precision": num.get("metrics/precision(B)"),
                "val_recall": num.get("metrics/recall(B)"),
                "lr": num.get("lr/pg0"),
                "seconds": round(elapsed - previous, 3),
            }
        )
        previous = elapsed
    io.write_csv(path, HISTORY, ([r[c] if r[c] is not None else "" for c in HISTORY] for r in out))
    return out


def predict_val(weights: Path, ds: YoloDataset, imgsz: int, device: str, conf: float = VAL_CONF):
    """(image path, predictions {boxes, scores, labels}, targets {boxes, labels}) per val image."""
    import torch
    from PIL import Image
    from ultralytics import YOLO

    model = YOLO(str(weights))
    for image in ds.images("val"):
        with Image.open(image) as img:
            width, height = img.size
        labels = read_labels(ds.label_path(image), len(ds.names))
        # not streamed: a list of Results (ultralytics types predict()'s return for every mode at once)
        results = cast(
            "list[Results]",
            model.predict(
                str(image), imgsz=imgsz, conf=conf, iou=VAL_IOU, max_det=MAX_DET, device=device, verbose=False
            ),
        )
        boxes = results[0].boxes
        assert boxes is not None  # a detection model's result always has boxes
        # the boxes of a prediction hold tensors (ultralytics types them tensors or arrays)
        prediction = {
            "boxes": cast("torch.Tensor", boxes.xyxy).cpu().float(),
            "scores": cast("torch.Tensor", boxes.conf).cpu().float(),
            "labels": cast("torch.Tensor", boxes.cls).cpu().long(),
        }
        target = {
            "boxes": torch.from_numpy(yolo_to_pixels(labels[:, 1:], width, height)).float(),
            "labels": torch.from_numpy(labels[:, 0]).long(),
        }
        yield image, prediction, target


def torchmetrics_map(weights: Path, ds: YoloDataset, imgsz: int, device: str) -> tuple[dict, list[list]]:
    """mAP@0.5 and mAP@0.5:0.95 of the best checkpoint's val predictions, by torchmetrics (COCO protocol),
    and the per-image rows of predictions.csv (adlab.tasks.detect.per_image) from the same predictions."""
    from torchmetrics.detection import MeanAveragePrecision

    from adlab.tasks.detect.per_image import per_image_row

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
    detections, rows = 0, []
    for index, (_, prediction, target) in enumerate(predict_val(weights, ds, imgsz, device)):
        metric.update([prediction], [target])
        detections += len(prediction["scores"])
        rows.append(per_image_row(index, prediction, target))
    if detections == 0:  # torchmetrics reports -1 (undefined); with objects to find, the AP is 0
        return {"map50_torchmetrics": 0.0, "map50_95_torchmetrics": 0.0}, rows
    result = metric.compute()
    return {"map50_torchmetrics": float(result["map_50"]), "map50_95_torchmetrics": float(result["map"])}, rows


def _write_figures(
    run_dir: Path, yolo_dir: Path, ds: YoloDataset, history: list[dict], imgsz: int, device: str, title: str
) -> None:
    from adlab.formatting import figure_text
    from adlab.tasks.curves import loss_curves
    from adlab.tasks.detect.figures import predictions_over_truth

    fig_dir = run_dir / "figures"
    for source, name in (("BoxPR_curve.png", "pr_curve.png"), ("confusion_matrix.png", "confusion_matrix.png")):
        if (yolo_dir / source).is_file():
            shutil.copyfile(yolo_dir / source, fig_dir / name)
    loss_curves(
        history,
        fig_dir / "loss_curves.png",
        figure_text(title),
        scores=[("val_map50", "mAP50"), ("val_map50_95", "mAP50-95")],
        score_label="validation mAP",
        loss_label="loss (box + cls + dfl)",
    )
    samples = []
    for image, prediction, target in predict_val(run_dir / "checkpoints" / "best.pt", ds, imgsz, device, conf=0.25):
        samples.append((image, prediction, target))
        if len(samples) == 6:
            break
    predictions_over_truth(samples, ds.names, fig_dir / "predictions.png")
