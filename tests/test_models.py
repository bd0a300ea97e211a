from pathlib import Path

import pytest

from humpback.models import ModelError, resolve_model


def test_embedded_model_is_a_cached_safetensors_model(embedded_model):
    path = Path(embedded_model)
    assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()
    assert resolve_model("smollm2-135m") == embedded_model  # converted once, then reused


def test_model_specs(tmp_path):
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model("./not/here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
