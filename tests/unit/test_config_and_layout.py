import subprocess
import sys
import textwrap

import pytest
from pydantic import ValidationError

from serve_app.config import AppConfig, resolve_weights
from serve_app.paths import ASSETS


def test_unknown_keys_are_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("detector:\n  max_batch_sise: 8\n")
    with pytest.raises(ValidationError, match="max_batch_sise"):
        AppConfig.load(path)


def test_precision_is_one_of_the_supported_modes():
    assert AppConfig.load(None, {"recognizer": {"precision": "fp32"}}).recognizer.precision == "fp32"
    assert AppConfig.load().detector.precision == "auto"
    with pytest.raises(ValidationError, match="precision"):
        AppConfig.load(None, {"detector": {"precision": "fp16"}})


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("detector:\n  max_batch_size: 8\nrecognizer:\n  autoscaling:\n    max_replicas: 3\n")
    cfg = AppConfig.load(path, {"recognizer": {"autoscaling": {"max_replicas": 5}}})
    assert cfg.detector.max_batch_size == 8 and cfg.recognizer.autoscaling.max_replicas == 5
    assert cfg.recognizer.autoscaling.min_replicas == 1


def test_the_detector_has_a_fixed_number_of_replicas_or_autoscales_not_both():
    assert AppConfig.load().detector.scaling() == {"num_replicas": 1}
    scaled = AppConfig.load(None, {"detector": {"autoscaling": {"max_replicas": 4}}}).detector.scaling()
    assert scaled["autoscaling_config"]["max_replicas"] == 4 and "num_replicas" not in scaled
    with pytest.raises(ValidationError, match="not both"):
        AppConfig.load(None, {"detector": {"num_replicas": 2, "autoscaling": {"max_replicas": 4}}})
    with pytest.raises(ValidationError, match="more than max_replicas"):
        AppConfig.load(None, {"detector": {"autoscaling": {"min_replicas": 3, "max_replicas": 2}}})


def test_relative_weights_resolve_to_shipped_assets(tmp_path):
    cfg = AppConfig.load()
    assert resolve_weights(cfg.detector.weights).parent == ASSETS
    assert resolve_weights(tmp_path / "x.pt") == tmp_path / "x.pt"


def test_recognizer_runner_arguments_come_from_the_config(tmp_path):
    from serve_app.ocr.predictor import RecognizerRunner

    args = AppConfig.load().recognizer.runner_args()
    assert args["lexicon_path"] == ASSETS / "lexicon.txt.gz" and args["lexicon_path"].is_file()
    off = AppConfig.load(None, {"recognizer": {"lexicon": None, "lexicon_margin": 3.5}}).recognizer.runner_args()
    assert off["lexicon_path"] is None and off["lexicon_margin"] == 3.5
    assert RecognizerRunner(**off).lexicon is None and RecognizerRunner(**args).lexicon is not None
    with pytest.raises(ValidationError, match="lexicon_margin"):
        AppConfig.load(None, {"recognizer": {"lexicon_margin": -1}})


def test_model_code_imports_without_ray():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["ray"] = None  # any import of ray now fails
        import serve_app.config, serve_app.imaging, serve_app.schemas, serve_app.ocr.predictor, serve_app.ocr.pipeline
        import training.synth, training.train_crnn, training.train_ctpn
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_storage_is_off_without_urls_and_reads_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("RABBITMQ_URL", raising=False)
    assert not AppConfig.load().storage.resolved().enabled
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/x")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://mq/")
    monkeypatch.setenv("OCR_IMAGE_DIR", str(tmp_path))
    s = AppConfig.load().storage.resolved()
    assert s.enabled and s.database_url == "postgresql://db/x" and s.image_dir == tmp_path
    assert AppConfig.load().storage.database_url is None  # the URL never enters the dumped config


def test_grafana_dashboard_covers_every_custom_metric():
    import json
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    dash = json.loads((repo / "docs/grafana/show-off-ocr.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    defined = set(re.findall(r'"(ocr_[a-z_]+)"', (repo / "deployments/metrics.py").read_text()))
    assert defined and all(f"ray_{name}" in exprs for name in defined), defined
    documented = (repo / "docs/operations.md").read_text()
    assert all(f"ray_{name}" in documented for name in defined)


def test_every_test_the_fault_table_names_exists():
    """docs/operations.md names the test that shows each fault; a renamed or removed test must not leave it stale."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    named = re.findall(r"`(\w+/test_\w+\.py)::(test_\w+)`", (repo / "docs/operations.md").read_text())
    assert len(named) >= 10
    for path, name in named:
        assert re.search(rf"^def {name}\(", (repo / "tests" / path).read_text(), re.M), f"{path}::{name}"


def test_every_section_a_file_points_to_is_in_the_document_it_names():
    """``docs/api.md, "Errors"``-style pointers, and the contents links of a document, lead to a heading or a bold
    paragraph lead of that document: moving text between documents must not leave a pointer behind."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    tracked = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True).stdout.split()
    texts = {f: (repo / f).read_text() for f in tracked
             if f.endswith((".md", ".py", ".yaml", ".sh", ".toml")) and (repo / f).is_file()}

    def leads(doc: str) -> list[str]:
        text = texts[doc]
        return [" ".join(h.split()) for h in re.findall(r"^#+ (.+)$", text, re.M)] + \
               [" ".join(b.split()) for b in re.findall(r"^\*\*(.+?)\*\*", text, re.M | re.S)]

    pointers = [(f, m[1], " ".join(m[2].split()).removesuffix("...").strip())
                for f, text in texts.items()
                for m in re.finditer(r'`?(docs/[\w/]+\.md)`?,?\s+"([^"]+?)"', text)]
    assert len(pointers) >= 10
    for source, doc, section in pointers:
        assert doc in texts, f"{source} names {doc}, which is not in the repository"
        assert any(lead.startswith(section) for lead in leads(doc)), f"{source}: {doc} has no section {section!r}"

    def slug(heading: str) -> str:  # GitHub's anchor for a heading
        return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")

    for doc in (d for d in texts if d.startswith("docs/") and d.endswith(".md")):
        anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", texts[doc], re.M)}
        for link in re.findall(r"\]\(#([\w-]+)\)", texts[doc]):
            assert link in anchors, f"{doc}: the link #{link} finds no heading"


def test_every_document_the_readme_lists_exists():
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    named = set(re.findall(r"`(docs/[\w/.-]+\.(?:md|json))`", (repo / "README.md").read_text()))
    assert {"docs/api.md", "docs/storage.md", "docs/training.md"} <= named
    assert not [n for n in named if not (repo / n).is_file()]
