#!/usr/bin/env python3
"""Generate the PyTorch / transformers ONNX models and their reference outputs.

The heavy counterpart of scripts/gen_models.py (torch alone is a multi-GB install). Every model
is exported with the dynamo exporter (`torch.onnx.export(..., dynamo=True, dynamic_shapes=...)`),
has a dynamic batch axis (and a dynamic sequence axis where there is one), and is written as one
self-contained model.onnx (every tensor inline, no `model.onnx.data`) next to a model.toml with
`runtime = "onnxruntime"` (format in scripts/onnx_fixtures.py). Writes, relative to the
repository root:

Demo model repository:

    models/digits_cnn/v1/{model.onnx,model.toml}
        small convnet (Conv 1->16, ReLU, MaxPool, Conv 16->32, ReLU, MaxPool, Linear 128->10)
        trained (fixed seed, 15 epochs) on sklearn's 8x8 digits, pixels scaled to [0, 1];
        input `image` FP32 [batch, 1, 8, 8], output `logits` FP32 [batch, 10]
    models/bert_tiny/v1/{model.onnx,model.toml}
        BertForSequenceClassification (vocab 1000, hidden 128, 2 layers, 2 heads, intermediate
        512, 512 positions, 2 labels) with random weights (torch.manual_seed(0)); inputs
        `input_ids`, `attention_mask`, `token_type_ids` INT64 [batch, sequence], output `logits`
        FP32 [batch, 2]

Test-only fixtures (not part of the demo repository), random weights:

    testdata/models/lstm_text/v1/{model.onnx,model.toml}
        Embedding(500, 32) -> LSTM(32, 32) -> last hidden state -> Linear(32, 3);
        input `tokens` INT64 [batch, sequence], output `logits` FP32 [batch, 3]
    testdata/models/gru_text/v1/{model.onnx,model.toml}
        the same with a GRU
    testdata/models/conv1d_signal/v1/{model.onnx,model.toml}
        Conv1d(1->8, k5) ReLU MaxPool Conv1d(8->16, k5) ReLU MaxPool Linear(256->4);
        input `signal` FP32 [batch, 1, 64], output `logits` FP32 [batch, 4]
    testdata/models/distilbert_tiny/v1/{model.onnx,model.toml}
        DistilBertForSequenceClassification (vocab 1000, dim 64, 2 layers, 2 heads, hidden 256,
        256 positions, 2 labels); inputs `input_ids`, `attention_mask` INT64 [batch, sequence],
        output `logits` FP32 [batch, 2]

Reference outputs, for each of the six: testdata/expected/<name>-v1.json, computed by
onnxruntime (CPUExecutionProvider) on the written model.onnx; the script also checks them
against PyTorch eager on the same inputs.

Setup and run (from the repository root):

    python3 -m venv /tmp/venv-torch-models
    /tmp/venv-torch-models/bin/pip install -r scripts/requirements-torch-models.txt
    /tmp/venv-torch-models/bin/python scripts/gen_torch_models.py

The outputs are committed, so building and testing the server never needs Python or torch, and
this script never runs in CI; rerun it only to change the models. Nothing is downloaded from a
model hub: the transformers models are built from configs. Every seed is fixed and PyTorch runs
single-threaded with deterministic algorithms, so a rerun with the pinned versions rewrites the
same files.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx_fixtures as fx
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

ROOT = fx.ROOT
MODELS = ROOT / "models"
TEST_MODELS = ROOT / "testdata" / "models"
SEED = 0
BATCHING = {"max_batch_size": 32, "max_delay_ms": 2}
# |onnxruntime - torch eager| allowed on the logits of the expected cases
TOLERANCE = 1e-4
DEMO_MAX_BYTES = 6 * 1024 * 1024
TEST_MAX_BYTES = 300 * 1024
DISTILBERT_MAX_BYTES = 1024 * 1024

BATCH = torch.export.Dim("batch")
SEQUENCE = torch.export.Dim("sequence")

warnings.filterwarnings("ignore", category=FutureWarning)


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def export(
    model: nn.Module, args: tuple, input_names: list[str], dynamic: list[dict]
) -> onnx.ModelProto:
    """Dynamo export of `model` (eval mode) into memory, every tensor inline.

    `dynamic` gives, per positional argument, its dynamic axes ({axis: torch.export.Dim}); the
    ONNX inputs are named `input_names`, the output `logits`.

    The exporter writes into a temporary folder; with its default (external_data=True) it puts
    even small weights into `model.onnx.data`, so external_data=False is passed, and the file is
    loaded back with onnx.load (which would also pull in any external data file) so the returned
    proto never refers to external data.
    """
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            args,
            str(path),
            dynamo=True,
            external_data=False,
            input_names=input_names,
            output_names=["logits"],
            dynamic_shapes=tuple(dynamic),
        )
        written = sorted(p.name for p in Path(tmp).iterdir())
        onx = onnx.load(str(path))  # loads model.onnx.data too, if the exporter wrote one
    onnx.external_data_helper.convert_model_from_external_data(onx)
    if written != ["model.onnx"]:
        print(f"  the exporter wrote {written}; re-saved with every tensor inline")
    # Every node carries the exporter's debug metadata (`namespace` and `pkg.torch.onnx.*`:
    # Python stack traces with this machine's paths, FX node text, module names): about a quarter
    # of a small model's bytes, and it would make the file depend on where the script and the venv
    # live. Dropped; the graph's own metadata (export signature, range constraints) is kept.
    for node in onx.graph.node:
        del node.metadata_props[:]
    return onx


def write(
    base: Path,
    name: str,
    onx: onnx.ModelProto,
    description: str,
    expect_in: list[tuple],
    n_out: int,
    batching: dict | None = None,
) -> tuple[Path, list[Path]]:
    onx.graph.name = f"{name}_v1"
    fx.expect_io(onx, expect_in, [("logits", "FP32", [-1, n_out])])
    files = fx.write_model(base / name / "v1", onx, fx.manifest(onx, description, batching))
    print(f"{name}/v1: {fx.describe(onx)}")
    print("\n".join(fx.io_summary(onx)))
    return files[0], files


def compare(name: str, model: nn.Module, path: Path, cases: list[dict[str, np.ndarray]]) -> None:
    """onnxruntime on the written file against PyTorch eager, case by case."""
    worst = 0.0
    for feeds in cases:
        with torch.no_grad():
            ref = model(*[torch.from_numpy(v) for v in feeds.values()]).numpy()
        (_, got), = fx.ort_run(path, feeds)
        diff = float(np.max(np.abs(got - ref)))
        shapes = " ".join("x".join(map(str, v.shape)) for v in feeds.values())
        assert diff < TOLERANCE, f"{name}: onnxruntime differs from torch by {diff} ({shapes})"
        worst = max(worst, diff)
    print(f"  {name}: max |onnxruntime - torch| over {len(cases)} case(s) = {worst:.3e}")


def token_cases(
    onx: onnx.ModelProto,
    vocab: int,
    names: list[str],
    seed: int,
    shapes=((1, 8), (5, 16), (20, 128)),
) -> list[dict[str, np.ndarray]]:
    """Token inputs: ids in [1, vocab); mask ones with a few trailing zeros in some rows (not in
    the single-example case); token_type_ids zeros."""
    rng = np.random.default_rng(seed)
    cases = []
    for batch, seq in shapes:
        ids = rng.integers(1, vocab, (batch, seq), dtype=np.int64)
        mask = np.ones((batch, seq), dtype=np.int64)
        if batch > 1:
            for row in range(1, batch, 2):
                mask[row, seq - int(rng.integers(1, seq // 4 + 1)) :] = 0
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        if names == ["tokens"]:
            feeds = {"tokens": ids}
        cases.append(fx.prepare_inputs(onx, {n: feeds[n] for n in names}))
    return cases


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def digits_cnn() -> list[Path]:
    torch.manual_seed(SEED)
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)  # k/16: exact in 4 decimals
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=SEED, stratify=y
    )
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(15):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 32):
            idx = order[i : i + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_test)).argmax(1).numpy()
    print(f"digits_cnn/v1: held-out accuracy {np.mean(pred == y_test):.4f} ({len(y_test)} images)")

    onx = export(model, (torch.from_numpy(x_test[:4]),), ["image"], [{0: BATCH}])
    path, files = write(
        MODELS,
        "digits_cnn",
        onx,
        "Handwritten digit (sklearn 8x8 digits, pixels scaled to [0, 1]), small convnet; "
        "logits of the classes 0-9",
        [("image", "FP32", [-1, 1, 8, 8])],
        10,
        BATCHING,
    )
    rows = [np.array([0]), np.arange(1, 6), np.arange(6, 26)]
    cases = [fx.prepare_inputs(onx, {"image": x_test[r]}) for r in rows]
    compare("digits_cnn", model, path, cases)
    return files + [fx.write_expected("digits_cnn", "v1", path, cases)]


class BertLogits(nn.Module):
    """BertForSequenceClassification called with the three tensors, returning the logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).logits


class DistilBertLogits(nn.Module):
    """DistilBertForSequenceClassification called with the two tensors, returning the logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def transformer(
    base: Path,
    name: str,
    model: nn.Module,
    names: list[str],
    vocab: int,
    description: str,
    batching: dict | None,
    max_bytes: int,
) -> list[Path]:
    wrapped = (BertLogits if len(names) == 3 else DistilBertLogits)(model).eval()
    ids = torch.randint(1, vocab, (2, 16))
    example = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }
    dynamic = [{0: BATCH, 1: SEQUENCE} for _ in names]
    onx = export(wrapped, tuple(example[n] for n in names), names, dynamic)
    path, files = write(
        base, name, onx, description, [(n, "INT64", [-1, -1]) for n in names], 2, batching
    )
    assert path.stat().st_size < max_bytes, f"{name}: {path.stat().st_size} bytes"
    cases = token_cases(onx, vocab, names, SEED)
    compare(name, wrapped, path, cases)
    # The mask is honoured: zeroing part of a row's mask changes its logits (by little: the
    # random weights give logits of about 0.05), and only that row's.
    last = cases[-1]
    (_, masked), = fx.ort_run(path, last)
    (_, unmasked), = fx.ort_run(path, {**last, "attention_mask": np.ones_like(last["input_ids"])})
    padded = last["attention_mask"].min(axis=1) == 0
    assert np.all(np.abs(masked - unmasked)[padded].max(axis=1) > 1e-7), "mask is ignored"
    assert np.array_equal(masked[~padded], unmasked[~padded])
    return files + [fx.write_expected(name, "v1", path, cases)]


def bert_tiny() -> list[Path]:
    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=1000,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=512,
        max_position_embeddings=512,
        num_labels=2,
    )
    model = BertForSequenceClassification(config).eval()
    files = transformer(
        MODELS,
        "bert_tiny",
        model,
        ["input_ids", "attention_mask", "token_type_ids"],
        config.vocab_size,
        "Tiny BERT sequence classifier (vocab 1000, hidden 128, 2 layers, 2 heads, up to 512 "
        "tokens), random weights: for benchmarks and tests, its predictions mean nothing",
        BATCHING,
        DEMO_MAX_BYTES,
    )
    # The benchmark runs sequence length 128; the position table allows up to 512.
    path = files[0]
    ids = np.random.default_rng(SEED + 1).integers(1, 1000, (2, 512), dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": 0 * ids}
    compare("bert_tiny (2 x 512)", BertLogits(model).eval(), path, [feeds])
    return files


def distilbert_tiny() -> list[Path]:
    torch.manual_seed(SEED)
    config = DistilBertConfig(
        vocab_size=1000,
        dim=64,
        n_layers=2,
        n_heads=2,
        hidden_dim=256,
        max_position_embeddings=256,
    )
    model = DistilBertForSequenceClassification(config).eval()
    return transformer(
        TEST_MODELS,
        "distilbert_tiny",
        model,
        ["input_ids", "attention_mask"],
        config.vocab_size,
        "Test fixture: tiny DistilBERT sequence classifier (vocab 1000, dim 64, 2 layers, "
        "2 heads, up to 256 tokens), random weights",
        None,
        # 184k float32 parameters (the configuration asked for): ~740 KB, over TEST_MAX_BYTES
        DISTILBERT_MAX_BYTES,
    )


class RnnText(nn.Module):
    """Embedding(500, 32) -> LSTM or GRU (32, batch_first) -> last hidden state -> Linear(32, 3)."""

    def __init__(self, cell):
        super().__init__()
        self.embedding = nn.Embedding(500, 32)
        self.rnn = cell(32, 32, batch_first=True)
        self.head = nn.Linear(32, 3)

    def forward(self, tokens):
        _, hidden = self.rnn(self.embedding(tokens))
        if isinstance(hidden, tuple):  # LSTM: (h_n, c_n)
            hidden = hidden[0]
        return self.head(hidden[-1])


def rnn_text(name: str, cell, label: str) -> list[Path]:
    torch.manual_seed(SEED)
    model = RnnText(cell).eval()
    onx = export(
        model, (torch.randint(1, 500, (2, 16)),), ["tokens"], [{0: BATCH, 1: SEQUENCE}]
    )
    path, files = write(
        TEST_MODELS,
        name,
        onx,
        f"Test fixture: Embedding(500, 32) + {label}(32) + Linear(32, 3) on token ids, "
        "random weights",
        [("tokens", "INT64", [-1, -1])],
        3,
    )
    assert path.stat().st_size < TEST_MAX_BYTES, f"{name}: {path.stat().st_size} bytes"
    cases = token_cases(onx, 500, ["tokens"], SEED)
    compare(name, model, path, cases)
    return files + [fx.write_expected(name, "v1", path, cases)]


def conv1d_signal() -> list[Path]:
    torch.manual_seed(SEED)
    model = nn.Sequential(
        nn.Conv1d(1, 8, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(8, 16, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Flatten(),
        nn.Linear(16 * 16, 4),
    ).eval()
    onx = export(model, (torch.randn(2, 1, 64),), ["signal"], [{0: BATCH}])
    path, files = write(
        TEST_MODELS,
        "conv1d_signal",
        onx,
        "Test fixture: two Conv1d layers + Linear on a 64-sample signal, 4 classes, random weights",
        [("signal", "FP32", [-1, 1, 64])],
        4,
    )
    assert path.stat().st_size < TEST_MAX_BYTES, f"conv1d_signal: {path.stat().st_size} bytes"
    rng = np.random.default_rng(SEED)
    cases = [
        fx.prepare_inputs(onx, {"signal": rng.normal(0.0, 1.0, (n, 1, 64))}) for n in (1, 5, 20)
    ]
    compare("conv1d_signal", model, path, cases)
    return files + [fx.write_expected("conv1d_signal", "v1", path, cases)]


def main() -> int:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {fx.ort.__version__}")
    files = []
    files += digits_cnn()
    files += bert_tiny()
    demo_bytes = sum(f.stat().st_size for f in files)
    files += rnn_text("lstm_text", nn.LSTM, "LSTM")
    files += rnn_text("gru_text", nn.GRU, "GRU")
    files += conv1d_signal()
    files += distilbert_tiny()
    assert demo_bytes < DEMO_MAX_BYTES, demo_bytes
    fx.report(files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
