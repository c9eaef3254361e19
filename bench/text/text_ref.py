#!/usr/bin/env python3
"""The Python reference of bench/predict_text.sh: text classification in one process, the way a
Python model server does it: Hugging Face `tokenizers` (Rust inside, batch encoding) and
onnxruntime, batch after batch, as fast as it goes.

    text_ref.py MODEL_DIR --batch 16 --threads 2 --seconds 10 --text "..."

Each batch: encode `--batch` copies of the text (truncation to the manifest's max_length,
padding to the longest), build input_ids / attention_mask / token_type_ids, run the session
(intra-op threads = --threads), softmax, pick the label. Prints one line:
TEXT_REF items_per_s=<texts per second> batches=<n> tokens=<sequence length>.
"""

from __future__ import annotations

import argparse
import time
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--text", required=True)
    args = parser.parse_args()

    manifest = tomllib.loads((args.model_dir / "model.toml").read_text())
    labels = manifest["postprocess"]["labels"]
    tokenizer = Tokenizer.from_file(str(args.model_dir / manifest["preprocess"]["tokenizer"]))
    tokenizer.enable_truncation(max_length=manifest["preprocess"]["max_length"])
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0)

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(args.model_dir / manifest["file"]), options, providers=["CPUExecutionProvider"]
    )
    names = [graph_input.name for graph_input in session.get_inputs()]
    texts = [args.text] * args.batch

    def one_batch() -> list[str]:
        encodings = tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (logits,) = session.run(None, {name: feeds[name] for name in names})
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        return [labels[i] for i in probabilities.argmax(axis=1)]

    deadline = time.perf_counter() + args.warmup
    while time.perf_counter() < deadline:
        one_batch()
    batches = 0
    started = time.perf_counter()
    while time.perf_counter() - started < args.seconds:
        one_batch()
        batches += 1
    elapsed = time.perf_counter() - started
    tokens = len(tokenizer.encode(args.text).ids)
    print(f"TEXT_REF items_per_s={batches * args.batch / elapsed:.1f} batches={batches} tokens={tokens}")


if __name__ == "__main__":
    main()
