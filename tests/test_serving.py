"""The scoring module: a registered model folder answers generated images as the score step
does; every malformed request is a 400 with one line naming what is wrong."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from serving_helpers import build_model

from components.score import score as score_component
from retrain.serving import azureml_score
from retrain.serving.answer import answer
from retrain.serving.payload import Limits, decode_image
from retrain.serving.scoring import CLASS_NAMES, ModelLoadError, load_model

LIMITS = Limits(max_images=64)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("model"), seed=1)


@pytest.fixture(scope="module")
def model(model_dir: Path):
    return load_model(model_dir, "fashion-mnist-cnn", "v1")


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def post(model, document, content_type: str = "application/json", limits: Limits = LIMITS):
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return answer(model, body, content_type, limits)


def refusal(model, document, content_type: str = "application/json", limits=LIMITS) -> str:
    status, answer_ = post(model, document, content_type, limits)
    assert status == 400, answer_
    assert set(answer_) == {"error"}
    message = answer_["error"]
    assert "\n" not in message and "Traceback" not in message and len(message) < 300
    return message


def test_class_names_are_the_score_steps() -> None:
    assert CLASS_NAMES == score_component.CLASS_NAMES


def test_answers_as_the_score_step_predicts(model, model_dir: Path) -> None:
    batch = images(40)
    predictor = score_component.load_predictor(model_dir / "predictor.pt")
    expected = score_component.predict(predictor, batch, 10)
    status, document = post(model, {"images": batch.tolist()})
    assert status == 200
    assert document["model"] == {"name": "fashion-mnist-cnn", "version": "v1"}
    assert document["count"] == 40
    got = np.array([p["probabilities"] for p in document["predictions"]])
    np.testing.assert_allclose(got, expected, atol=2e-6)
    labels = [p["label"] for p in document["predictions"]]
    assert labels == expected.argmax(1).tolist()
    assert [p["class"] for p in document["predictions"]] == [CLASS_NAMES[i] for i in labels]
    assert np.allclose(got.sum(1), 1, atol=1e-4)


def test_flat_and_nested_images_are_the_same(model) -> None:
    batch = images(3, seed=4)
    nested = post(model, {"images": batch.tolist()})[1]
    flat = post(model, {"images": batch.reshape(3, 784).tolist()})[1]
    mixed = post(model, {"images": [batch[0].ravel().tolist(), *batch[1:].tolist()]})[1]
    assert nested == flat == mixed


def test_a_png_and_a_jpeg_are_scored_as_the_28x28_gray_image(model) -> None:
    gray = images(1, seed=5)[0]
    png = io.BytesIO()
    Image.fromarray(gray).resize((56, 84)).convert("RGB").save(png, format="PNG")
    converted = decode_image(png.getvalue(), "PNG")
    assert converted.shape == (28, 28) and converted.dtype == np.uint8
    status, document = post(model, png.getvalue(), "image/png")
    assert status == 200 and document["count"] == 1
    assert document == post(model, {"images": [converted.tolist()]})[1]

    jpeg = io.BytesIO()
    Image.fromarray(gray).save(jpeg, format="JPEG", quality=95)
    status, document = post(model, jpeg.getvalue(), "image/jpeg")
    assert status == 200 and document["count"] == 1


def test_the_image_conversion_is_data_packs() -> None:
    """convert("L") then a LANCZOS stretch to 28x28: a colour picture of 90x30."""
    picture = Image.new("RGB", (90, 30), (200, 100, 50))
    picture.paste((0, 0, 255), (0, 0, 45, 30))
    body = io.BytesIO()
    picture.save(body, format="PNG")
    want = np.asarray(picture.convert("L").resize((28, 28), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(decode_image(body.getvalue(), "PNG"), want)


ROWS = "expected 28 rows of 28 values or 784 values"
ZEROS = [[0] * 28] * 27  # an image short of its last row
INTEGER = "expected an integer 0-255"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([1, 2], "body: expected a JSON object"),
        ({"image": []}, 'without "images"'),
        ({"images": "x"}, "images: expected a list of images, got a string"),
        ({"images": []}, "images: the list is empty"),
        ({"images": [[0] * 783]}, f"images[0]: {ROWS}, got 783 items"),
        ({"images": [ZEROS]}, f"images[0]: {ROWS}, got 27 items"),
        ({"images": [[*ZEROS, [0] * 29]]}, "images[0][27]: expected a row of 28 values, got 29"),
        ({"images": [[*ZEROS, 7]]}, "images[0][27]: expected a row of 28 values, got an integer"),
        ({"images": [[0] * 783 + [256]]}, "images[0][783]: 256 is out of range 0-255"),
        ({"images": [[0] * 100 + [-1] + [0] * 683]}, "images[0][100]: -1 is out of range 0-255"),
        ({"images": [[0] * 5 + [10**30] + [0] * 778]}, "[5]: 10000000000000000... is out of range"),
        ({"images": [[*ZEROS[:3], [0] * 27 + [1.5], *ZEROS[3:]]]},
         f"images[0][3][27]: {INTEGER}, got a number with a fraction (1.5)"),
        ({"images": [[True] + [0] * 783]}, f"images[0][0]: {INTEGER}, got a boolean (true)"),
        ({"images": [[None] * 784]}, f"images[0][0]: {INTEGER}, got null"),
        ({"images": [[0] * 784, "abc"]}, f"images[1]: {ROWS}, got a string"),
        ({"images": [[0] * 784] * 65}, "images: 65 images; at most 64 per request (SERVE_MAX_"),
    ],
)  # fmt: skip
def test_bad_json_is_named(model, document, expected: str) -> None:
    assert expected in refusal(model, document)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"{", "application/json", "body: not valid JSON (Expecting property name"),
        (b'{"images": [[NaN]]}', "application/json", "body: not valid JSON (NaN is not a number"),
        (b"\xff\xfe", "application/json", "body: not"),
        (b"[" * 100_000, "application/json", "body: "),
        (b'{"images": []}', "text/plain", "Content-Type 'text/plain' is not accepted"),
        (b'{"images": []}', None, "Content-Type 'none' is not accepted"),
        (b"not a png", "image/png", "body: not a PNG image"),
        (b"", "image/jpeg", "body: empty; expected a JPEG image"),
    ],
)
def test_bad_bodies_are_named(model, body: bytes, content_type: str | None, expected: str) -> None:
    assert expected in refusal(model, body, content_type)


def test_a_truncated_png_is_undecodable(model) -> None:
    png = io.BytesIO()
    Image.fromarray(images(1)[0]).resize((200, 200)).save(png, format="PNG")
    message = refusal(model, png.getvalue()[:300], "image/png")
    assert message.startswith("body: the PNG image cannot be decoded (")


def test_a_jpeg_sent_as_png_is_refused(model) -> None:
    jpeg = io.BytesIO()
    Image.fromarray(images(1)[0]).save(jpeg, format="JPEG")
    assert refusal(model, jpeg.getvalue(), "image/png") == (
        "body: not a PNG image (the Content-Type says it is)"
    )


def test_a_huge_picture_is_refused_before_it_is_decoded(model) -> None:
    png = io.BytesIO()
    Image.new("L", (8000, 6000)).save(png, format="PNG")  # 48 M pixels, a small file
    assert "8000x6000 image is too large to decode" in refusal(model, png.getvalue(), "image/png")


def test_a_body_too_large_is_refused(model) -> None:
    limits = Limits(max_images=1)
    body = b" " * (limits.max_body + 1)
    assert refusal(model, body, limits=limits) == (
        f"body too large: {limits.max_body + 1} bytes; at most {limits.max_body} "
        "(SERVE_MAX_IMAGES=1 images)"
    )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=30) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, st.fixed_dictionaries({"images": JSON})))
def test_any_json_is_scored_or_refused_in_one_line(model, document) -> None:
    status, answer_ = post(model, document)
    if status == 200:  # only a list of well-formed images can get here
        assert answer_["count"] == len(document["images"])
    else:
        refusal(model, document)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["application/json", "image/png", "image/jpeg"]))
def test_any_bytes_are_refused_in_one_line(model, body: bytes, content_type: str) -> None:
    status, _ = post(model, body, content_type)
    if status != 200:
        refusal(model, body, content_type)


def test_a_folder_without_a_predictor_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no predictor.pt \(is it a registered model"):
        load_model(tmp_path, "m", "1")
    (tmp_path / "predictor.pt").write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="not a TorchScript model"):
        load_model(tmp_path, "m", "1")


def test_azureml_init_and_run(model_dir: Path, tmp_path: Path) -> None:
    """init() finds the model where Azure ML mounts it (a subfolder of AZUREML_MODEL_DIR);
    run() answers the JSON text, and a request object with its Content-Type."""
    mounted = tmp_path / "azureml-models" / "fashion-mnist-cnn" / "7"
    (mounted / "output_model").mkdir(parents=True)
    for name in ("predictor.pt", "config.json"):
        (mounted / "output_model" / name).write_bytes((model_dir / name).read_bytes())
    azureml_score.init({"AZUREML_MODEL_DIR": str(mounted), "SERVE_MAX_IMAGES": "2"})
    batch = images(2).tolist()
    document = azureml_score.run(json.dumps({"images": batch}))
    assert document["model"] == {"name": "fashion-mnist-cnn", "version": "7"}
    assert document["count"] == 2
    assert "at most 2 per request" in azureml_score.run(json.dumps({"images": batch * 2}))["error"]

    class Request:  # the inference server's request, as rawhttp hands it over
        headers: ClassVar[dict[str, str]] = {"Content-Type": "image/png"}

        def get_data(self) -> bytes:
            png = io.BytesIO()
            Image.fromarray(images(1)[0]).save(png, format="PNG")
            return png.getvalue()

    assert azureml_score.run(Request())["count"] == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SERVE_MAX_IMAGES": "0"}, "SERVE_MAX_IMAGES: must be at least 1, got 0"),
        ({"SERVE_SMOKE_IMAGES": "100"}, "SERVE_SMOKE_IMAGES: must be at least 256, got 100"),
        (
            {"SERVE_ENDPOINT": "-bad"},
            "SERVE_ENDPOINT: expected 3 to 32 letters, digits and hyphens",
        ),
        ({"SERVE_ENDPOINT": "x" * 33}, "SERVE_ENDPOINT: expected 3 to 32"),
        ({"SERVE_IDENTITY": "id-serve"}, "SERVE_IDENTITY: expected a user-assigned identity"),
        (
            {"SERVE_IDENTITY": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Web/sites/x"},
            "SERVE_IDENTITY: expected a user-assigned identity",
        ),
    ],
)
def test_serving_settings_are_checked(env: dict[str, str], expected: str) -> None:
    from retrain.errors import ConfigurationError
    from retrain.settings import Settings

    with pytest.raises(ConfigurationError) as error:
        Settings.from_env(env)
    assert str(error.value).startswith(expected)


def test_serving_settings_defaults_and_values() -> None:
    from retrain.settings import Settings

    default = Settings.from_env({})
    assert (default.serve_endpoint, default.serve_max_images, default.serve_smoke_images) == (
        None, 512, 256,
    )  # fmt: skip
    assert default.serve_instance_type == "Standard_DS3_v2"
    assert Settings.from_env({"SERVE_ENDPOINT": "fashion-ep"}).serve_endpoint == "fashion-ep"
