"""The one typed configuration: it feeds `serve run` locally, `serve build` output and the RayService on KubeRay.

Values come from the defaults below, optionally overridden by a YAML file (path in ``OCR_CONFIG`` or passed in
as application args). Unknown keys are rejected so that a typo fails at start instead of being ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serve_app.ocr.pipeline import MIN_TILT, MIN_UNKNOWN_WORD_CONFIDENCE, MIN_WORD_CONFIDENCE
from serve_app.ocr.processing.consensus import DEFAULT_WORD_SCALES
from serve_app.ocr.processing.detection import WINDOW_OVERLAP, DetectionParams
from serve_app.ocr.processing.lexicon import DEFAULT_MARGIN
from serve_app.paths import ASSETS, DEFAULT_DETECTOR, DEFAULT_LEXICON, DEFAULT_RECOGNIZER


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_DEFAULT_DETECTION = DetectionParams()  # the defaults live with the code that uses them


class DetectionSettings(_Strict):
    """CTPN input scaling and text-line building (see `serve_app.ocr.processing.detection.DetectionParams`)."""

    short_side: int = Field(_DEFAULT_DETECTION.short_side, ge=64, le=4096)
    max_side: int = Field(_DEFAULT_DETECTION.max_side, ge=64, le=8192)
    min_short_side: int = Field(_DEFAULT_DETECTION.min_short_side, ge=0, le=4096,
                                description="a page more than max_side / min_short_side times taller than wide "
                                            "(a whole web page's screenshot) keeps this width instead of "
                                            "shrinking to max_side high")
    max_long_side: int = Field(_DEFAULT_DETECTION.max_long_side, ge=64, le=65536,
                               description="the greatest height a tall strip is read at (its cost grows with it); "
                                           "a taller one is shrunk to it")
    pass_side: int = Field(_DEFAULT_DETECTION.pass_side, ge=1024, le=16384,
                           description="a tall strip higher than this at the detector's scale is read in parts of "
                                       f"this many rows, overlapping by {WINDOW_OVERLAP} (bounds one pass's memory)")
    max_upscale: float = Field(_DEFAULT_DETECTION.max_upscale, gt=0, le=8)
    score_threshold: float = Field(_DEFAULT_DETECTION.score_threshold, ge=0, le=1)
    nms_threshold: float = Field(_DEFAULT_DETECTION.nms_threshold, ge=0, le=1)
    proposals_per_cell: float = Field(_DEFAULT_DETECTION.proposals_per_cell, gt=0, le=20,
                                      description="at most this many proposals per 16 x 16 px cell of the "
                                                  "detector's input go to NMS (a receipt gives under one, a "
                                                  "screenshot of small text edge to edge 2.7)")
    line_min_score: float = Field(_DEFAULT_DETECTION.line_min_score, ge=0, le=1)
    line_max_gap: int = Field(_DEFAULT_DETECTION.line_max_gap, ge=1, le=500)
    line_min_overlap: float = Field(_DEFAULT_DETECTION.line_min_overlap, ge=0, le=1)
    line_min_proposals: int = Field(_DEFAULT_DETECTION.line_min_proposals, ge=1)
    views: int = Field(_DEFAULT_DETECTION.views, ge=1, le=2,
                       description="2: also read the frame moved by half an anchor row, which finds lines whose "
                                   "centre falls between anchor rows (scenes_dev F1 +0.02, 9 pt pages +0.04) for "
                                   "about twice the detector's time; 1: once, for throughput")

    @model_validator(mode="after")
    def _strips(self) -> DetectionSettings:
        if self.min_short_side > self.short_side:
            raise ValueError(f"min_short_side ({self.min_short_side}) may not pass short_side ({self.short_side})")
        if self.max_long_side < self.max_side:
            raise ValueError(f"max_long_side ({self.max_long_side}) may not be under max_side ({self.max_side})")
        return self

    def keep_sides(self) -> tuple[int, int]:
        """The long and short side a reduced decode keeps: twice what the detector reads (crops keep more)."""
        return 2 * self.max_side, 2 * self.min_short_side


def resolve_weights(path: Path) -> Path:
    """Relative weight paths name files in the shipped assets folder, so configs stay machine-independent."""
    return path if path.is_absolute() else ASSETS / path


Precision = Literal["auto", "fp32", "bf16", "int8"]  # = predictor.PRECISIONS (tested)
_PRECISION_HELP = ("int8 convolutions cut CPU time 2-3x against fp32, bf16 halves it where native. auto: int8 on "
                   "x86-64 if the weights carry calibration (LSTMs in bf16 where native), else bf16 where "
                   "native, else fp32")


_KERNEL_CACHE_HELP = ("oneDNN kernels a replica keeps built (ONEDNN_PRIMITIVE_CACHE_CAPACITY, read when its process "
                      "starts), one per operation and input shape; 1024 is oneDNN's own default. Fewer save memory "
                      "and cost speed: a recognizer keeping 256 settled 250-350 MB lower and answered about 8 % "
                      "fewer requests; a detector keeping 16 took 40 % longer (docs/operations.md, 'A long run')")


_GPU_HELP = ("GPUs per replica (a fraction shares one between replicas): with any, the model runs on its GPU "
             "(precision auto: bf16 where the GPU has it, else fp32); 0: on CPU")


def device(num_gpus: float) -> str:
    """Where a replica's model runs: on its GPU where it was given one, so that one setting says both."""
    return "cuda" if num_gpus > 0 else "cpu"


def precision_overrides(precision: str | None) -> dict[str, Any]:
    """Overrides (`AppConfig.load`) that run both models in ``precision``; none for ``None`` (the config's own)."""
    return {m: {"precision": precision} for m in ("detector", "recognizer")} if precision else {}


class AutoscalingSettings(_Strict):
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(2, ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0)
    upscale_delay_s: float = Field(5.0, ge=0)
    downscale_delay_s: float = Field(60.0, ge=0)
    look_back_period_s: float = Field(30.0, gt=0, description="the window Serve averages ongoing requests over")

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is more than max_replicas ({self.max_replicas})")
        return self

    def to_serve(self) -> dict[str, Any]:
        return self.model_dump()


class DetectorSettings(_Strict):
    weights: Path = Path(DEFAULT_DETECTOR.name)
    num_replicas: int | None = Field(None, ge=1, description="replicas, where autoscaling is null (null: 1)")
    autoscaling: AutoscalingSettings | None = Field(
        None, description="Serve adds and removes detector replicas by their ongoing requests, between its min and "
        "max (then leave num_replicas out): a cluster's detection, the larger cost of every page, grows with its "
        "pods; null: num_replicas")
    max_ongoing_requests: int = Field(16, ge=1, description="keep >= max_batch_size or batches never fill")
    max_batch_size: int = Field(4, ge=1, le=64)
    batch_wait_timeout_s: float = Field(0.01, ge=0, le=5)
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0, description=_GPU_HELP)
    threads: int = Field(2, ge=1, description="torch intra-op threads: a lone frame is detected on two cores "
                         "(720p on a 2-core AVX2 VM: 0.56-0.60 -> 0.46-0.47 s), and throughput under load held")
    precision: Precision = Field("auto", description=_PRECISION_HELP)
    kernel_cache: int = Field(1024, ge=0, description=_KERNEL_CACHE_HELP)
    detection: DetectionSettings = DetectionSettings()
    warm_up: list[tuple[Annotated[int, Field(ge=16, le=8192)], Annotated[int, Field(ge=16, le=8192)]]] = Field(
        [(1280, 720)], max_length=8, description="(width, height) of made-up pages each replica detects before it "
        "takes requests, so that its first request does not pay for the process's first detection (a fresh "
        "replica's first 720p frame: 0.34-0.71 s to detect, later ones 0.20-0.32); [] for none")

    @model_validator(mode="after")
    def _one_way_to_scale(self) -> DetectorSettings:
        if self.autoscaling is not None and self.num_replicas is not None:
            raise ValueError("set detector.num_replicas or detector.autoscaling, not both: with autoscaling, Serve "
                             "chooses the number of replicas")
        return self

    def scaling(self) -> dict[str, Any]:
        """Serve's options for the number of replicas: fixed, or autoscaled."""
        if self.autoscaling is None:
            return {"num_replicas": self.num_replicas or 1}
        return {"autoscaling_config": self.autoscaling.to_serve()}

    def runner_args(self) -> dict[str, Any]:
        """Keyword arguments of `DetectorRunner`, with the weights path resolved."""
        return {"weights": resolve_weights(self.weights), "params": DetectionParams(**self.detection.model_dump()),
                "precision": self.precision, "device": device(self.num_gpus)}


class RecognizerSettings(_Strict):
    weights: Path = Path(DEFAULT_RECOGNIZER.name)
    autoscaling: AutoscalingSettings = AutoscalingSettings()
    max_ongoing_requests: int = Field(8, ge=1)
    max_batch_size: int = Field(8, ge=1, le=128, description="requests merged into one call")
    batch_wait_timeout_s: float = Field(0.005, ge=0, le=5)
    max_crops_per_forward: int = Field(32, ge=1, le=512)
    max_crop_width: int = Field(1600, ge=64, le=8192)
    crops_per_part: int = Field(32, ge=0, description="a page of n line crops goes to the recognizer in round(n / "
                                "crops_per_part) parts at once, each whole width buckets (it reads exactly as in one "
                                "call): replicas read a long page together; 0 sends every page whole")
    min_tilt: float = Field(MIN_TILT, ge=0, description="lines sloping at least this much (dy/dx) are cut along "
                            "their own axis and levelled before reading; a large value turns this off")
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0, description=_GPU_HELP)
    threads: int = Field(1, ge=1)
    many_crops: int = Field(16, ge=1, description="a batch of at least this many crops (a page of text) is read on "
                            "``many_crops_threads`` threads: the detector's cores are idle while a lone page is read")
    many_crops_threads: int = Field(2, ge=1)
    precision: Precision = Field("auto", description=_PRECISION_HELP)
    kernel_cache: int = Field(1024, ge=0, description=_KERNEL_CACHE_HELP)
    lexicon: Path | None = Field(
        Path(DEFAULT_LEXICON.name),
        description="word list (gzipped, one per line) that misread words are corrected to; null turns it off",
    )
    lexicon_margin: float = Field(DEFAULT_MARGIN, ge=0, le=20,
                                  description="how much less likely (log) a lexicon spelling may be")
    lexicon_split: bool = Field(True, description="in page lines, a word the lexicon lacks may be read as "
                                "several it has, where the CTC allows a space between them (text set tight)")
    word_scales: list[Annotated[float, Field(ge=0.25, le=4)]] = Field(
        list(DEFAULT_WORD_SCALES), min_length=1, max_length=8,
        description="width scales a single word crop is read at; [1.0] for one reading")
    warm_up: bool = Field(True, description="each replica reads made-up line crops and a word before it takes "
                          "requests, as the detector's warm_up")

    def runner_args(self) -> dict[str, Any]:
        """Keyword arguments of `RecognizerRunner`, with asset paths resolved."""
        return {"weights": resolve_weights(self.weights), "max_batch": self.max_crops_per_forward,
                "precision": self.precision, "lexicon_margin": self.lexicon_margin,
                "word_scales": tuple(self.word_scales), "lexicon_split": self.lexicon_split,
                "device": device(self.num_gpus),
                "lexicon_path": resolve_weights(self.lexicon) if self.lexicon else None}


_ORIGIN = re.compile(r"^https?://([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$")


class IngressSettings(_Strict):
    num_replicas: int = Field(1, ge=1)
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(50_000_000, ge=1024, description="width x height after decoding; a JPEG past it is "
                            "decoded at 1/2, 1/4 or 1/8 where that fits, anything else refused (bombs). 50 MP: a "
                            "phone's full-size photo, which HEIC, AVIF and PNG cannot decode reduced (an iPhone's 48 "
                            "MP HEIF Max, 8064x6048; 50 MP sensors, 8160x6120)")
    jpeg_draft: bool = Field(True, description="decode JPEGs whose long side is at least 4x the detector's max_side "
                             "at 1/2, 1/4 or 1/8 size, keeping at least 2x (a 600 dpi scan: 0.34 -> 0.08 s)")
    pdf_dpi: float = Field(200, ge=36, le=600, description="PDF pages are rendered at this resolution (less for pages "
                           "that would pass max_pixels or 4x the detector's max_side)")
    pdf_timeout_s: float = Field(10.0, gt=0, description="a PDF page is rendered in a worker process within this "
                                 "many seconds, or refused 413 (PDFium cannot be stopped in-process)")
    pdf_memory_mb: int = Field(1024, ge=256, description="address space a PDF page may take in its worker process "
                               "(beyond the worker's own); a page that needs more is refused 413 (a 50 MP page renders "
                               "within 450)")
    max_inflight: int = Field(32, ge=1, description="OCR requests in progress per replica before 503; a ?pages= "
                              "request holds pages_at_once of them (it reads that many pages at a time)")
    max_requests_per_client: int = Field(
        32, ge=0, description="requests one client (its API key, else its address) may have in progress per replica, "
        "bodies still arriving included; past it 429 at once, so that one client cannot take all of "
        "max_ongoing_requests from the others (0: no limit)")
    trusted_proxies: int = Field(
        0, ge=0, description="proxies in front of Serve that each append the address they saw to X-Forwarded-For "
        "(an nginx Ingress: 1); a client's address is the one the farthest of them saw. 0: the peer's address. Set it "
        "only where every request comes through those proxies: a caller that reaches Serve directly writes the header "
        "itself, and could take a share per address it makes up")
    request_timeout_s: float = Field(60.0, gt=0, description="an OCR request not answered within this many seconds "
                                     "gets 504 timeout (a hung or crash-looping model replica must not hold a "
                                     "client forever); work already queued in a model replica still runs")
    max_pages: int = Field(50, ge=1, description="pages one request may read with ?pages= (a PDF's, a TIFF's); more "
                           "is refused 413 too_many_pages (before any is read where the numbers say so, else once "
                           "the first says how many there are). Each page is stored under an id of its own, the "
                           "file once for all of them")
    pages_at_once: int = Field(2, ge=1, description="pages of one ?pages= request read at once (its first alone, to "
                               "learn how many there are): the models' replicas, not one request, set the pace")
    document_timeout_s: float = Field(300.0, gt=0, description="a ?pages= request not answered within this many "
                                      "seconds gets 504 timeout, as does one whose page takes past request_timeout_s "
                                      "(50 receipts take about 30 s on 2 cores)")
    decode_threads: int = Field(2, ge=1, description="uploads decoded (and lines cut into crops) at once per "
                                "replica, in threads beside the event loop, which keeps answering meanwhile")
    retry_after_s: int = Field(1, ge=1)
    replica_retries: int = Field(2, ge=0, description="times a call to a detector, recognizer or sidecar replica is "
                                 "sent again when the replica serving it is lost (killed, out of memory, its node "
                                 "gone); then a model call answers 503 model_unavailable")
    max_pending_handover_mb: float = Field(
        256, gt=0, description="uploads held per replica while their answers wait for the sidecar (restarting or "
        "hung); past this an answer is not stored (logged, counted), so the ingress is never killed for memory")
    max_ongoing_requests: int = Field(64, ge=1)
    body_grace_s: float = Field(20.0, gt=0, description="a request body has this long, plus a second per "
                                "body_min_bytes_per_s bytes it has delivered, to arrive whole; slower is 408 "
                                "body_too_slow (a replica holds one of its max_ongoing_requests while it comes)")
    body_min_bytes_per_s: float = Field(500.0, ge=0, description="see body_grace_s; 0: a body has body_grace_s")
    min_line_confidence: float = Field(0.0, ge=0, le=1)
    min_word_confidence: float = Field(MIN_WORD_CONFIDENCE, ge=0, le=1,
                                       description="words read with a lower mean character probability are dropped")
    min_unknown_word_confidence: float = Field(
        MIN_UNKNOWN_WORD_CONFIDENCE, ge=0, le=1,
        description="the same bar for words of letters only that the recognizer's lexicon does not know")
    log_text: bool = Field(False, description="put recognized text into request logs (debugging only)")
    gzip_level: int = Field(6, ge=0, le=9, description="answers of 1 kB or more are gzipped at this level "
                            "for clients that accept it (images and PDFs never: compressed already); 0: never")
    cors_origins: list[str] = Field(
        [], description="origins (scheme://host[:port]) of pages elsewhere that may call the API from a browser, "
        "or '*' for any; empty: only the service's own page (deployments/cross_origin.py)")

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        """As browsers send them: a trailing slash or a path, the usual mistake, would silently never match."""
        for origin in origins:
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(f"{origin!r} is not an origin: write scheme://host[:port] in lower case, with no "
                                 "path or trailing slash (https://app.example.com), or '*' for any")
        return origins


class StorageSettings(_Strict):
    """Where results go; with no database or broker, OCR runs and nothing is stored.

    URLs left empty are read from ``DATABASE_URL`` / ``RABBITMQ_URL`` in each replica at start, so secrets never
    travel inside a Serve config.
    """

    mode: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: on when both URLs are known where the app is built; on: always (clusters)"
    )
    database_url: str | None = None
    rabbitmq_url: str | None = None
    image_dir: Path = Field(Path("data/images"), description="``OCR_IMAGE_DIR`` overrides; relative to cwd")
    spool_dir: Path = Field(Path("data/spool"), description="``OCR_SPOOL_DIR`` overrides; relative to cwd")
    spool_max_messages: int = Field(10_000, ge=1)
    spool_max_bytes: int = Field(1024**3, ge=1024)
    publish_timeout_s: float = Field(5.0, gt=0)
    retention_days: float = Field(7.0, gt=0)
    retention_interval_s: float = Field(3600.0, gt=0)
    archiver_prefetch: int = Field(16, ge=1)

    def resolved(self) -> StorageSettings:
        """Fill unset values from the environment of the process that calls this."""
        env = os.environ
        return self.model_copy(update={
            "database_url": self.database_url or env.get("DATABASE_URL") or None,
            "rabbitmq_url": self.rabbitmq_url or env.get("RABBITMQ_URL") or None,
            "image_dir": Path(env.get("OCR_IMAGE_DIR", self.image_dir)),
            "spool_dir": Path(env.get("OCR_SPOOL_DIR", self.spool_dir)),
        })

    @property
    def enabled(self) -> bool:
        """Whether the storage deployments are part of the graph (call on `resolved()` settings)."""
        if self.mode != "auto":
            return self.mode == "on"
        return bool(self.database_url and self.rabbitmq_url)


class TelemetrySettings(_Strict):
    """Tracing for the cluster's pods (locally the same values are environment variables; see docs/operations.md)."""

    exporter: Literal["otlp", "console", "file", "none"] = "otlp"
    otlp_endpoint: str = "http://jaeger.show-off-infra.svc.cluster.local:4318"
    sampling_ratio: float = Field(1.0, ge=0, le=1)
    service_name: str = "show-off-ocr"

    def environment(self, version: str) -> dict[str, str]:
        """The variables Ray Serve and `serve_app.telemetry` read in every process."""
        if self.exporter == "none":
            return {}
        return {
            "RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH": "serve_app.telemetry:span_processors",
            "RAY_SERVE_TRACING_SAMPLING_RATIO": str(self.sampling_ratio),
            "OCR_TRACE_EXPORTER": self.exporter,
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_endpoint,
            "OTEL_SERVICE_NAME": self.service_name,
            "OTEL_RESOURCE_ATTRIBUTES": f"service.version={version}",
        }


class WorkerGroupSettings(_Strict):
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(4, ge=1)
    cpu: str = "2"
    memory: str = "6Gi"
    gpu: int = Field(0, ge=0)


class ClusterSettings(_Strict):
    """What the RayService on KubeRay needs beyond the Serve application (``python -m kuberay render``)."""

    name: str = "show-off-ocr"
    namespace: str = "show-off"
    infra_namespace: str = "show-off-infra"
    image: str = "ghcr.io/show-off/ocr:0.1.0-arm64"
    host: str = "ocr.example.com"
    head_cpu: str = "2"
    head_memory: str = "4Gi"
    cpu_workers: WorkerGroupSettings = WorkerGroupSettings()
    gpu_workers: WorkerGroupSettings | None = None
    image_volume_size: str = "20Gi"
    #: labels the Prometheus operator selects monitors and rules by (kube-prometheus-stack: {release: <its name>})
    monitoring_labels: dict[str, str] = {}


class AppConfig(_Strict):
    """Everything the application needs; one instance is built per process from the same sources."""

    name: str = "ocr"
    route_prefix: str = "/"
    ingress: IngressSettings = IngressSettings()
    detector: DetectorSettings = DetectorSettings()
    recognizer: RecognizerSettings = RecognizerSettings()
    storage: StorageSettings = StorageSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    cluster: ClusterSettings = ClusterSettings()

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> AppConfig:
        """Defaults, then the YAML file (argument or ``OCR_CONFIG``), then explicit overrides (nested dicts)."""
        data: dict[str, Any] = {}
        path = path or os.environ.get("OCR_CONFIG")
        if path:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        if overrides:
            data = _merge(data, overrides)
        return cls.model_validate(data)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
