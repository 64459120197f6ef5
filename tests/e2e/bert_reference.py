"""An independent sentence-transformers BERT encoder in NumPy, the reference the embeddings
end-to-end tests compare the server with.

It shares nothing with the server but the model files: the weights are read from
model.safetensors with a small header parser, the forward pass is written out here in float64
(embeddings, post-norm encoder layers with erf GELU, mean or CLS pooling per
1_Pooling/config.json, L2 normalization), and text is tokenized with Hugging Face's `tokenizers`
package with the file's truncation and padding turned off.

    python tests/e2e/bert_reference.py MODEL_DIR "some text" ...   # prints one JSON vector a line
"""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path

import numpy as np

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file: an 8-byte little-endian header length, a JSON header
    of {name: {dtype, shape, data_offsets}}, then the raw bytes."""
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        chunk = raw[base + start : base + end]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(chunk, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        else:
            array = np.frombuffer(chunk, dtype=_DTYPES[info["dtype"]])
        tensors[name] = array.reshape(info["shape"]).astype(np.float64)
    return tensors


_erf = np.vectorize(math.erf)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class BertReference:
    def __init__(self, model_dir: str | Path):
        from tokenizers import Tokenizer

        self.dir = Path(model_dir)
        self.config = json.loads((self.dir / "config.json").read_text())
        pooling_file = self.dir / "1_Pooling" / "config.json"
        pooling = json.loads(pooling_file.read_text()) if pooling_file.is_file() else {}
        self.pooling = "cls" if pooling.get("pooling_mode_cls_token") else "mean"
        weights = read_safetensors(self.dir / "model.safetensors")
        prefix = "" if "embeddings.word_embeddings.weight" in weights else "bert."
        self.w = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        self.tokenizer = Tokenizer.from_file(str(self.dir / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

    @property
    def max_tokens(self) -> int:
        return self.config["max_position_embeddings"]

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def embed(self, text: str) -> np.ndarray:
        return self.embed_ids(self.token_ids(text))

    def embed_ids(self, ids: list[int]) -> np.ndarray:
        c, w = self.config, self.w
        eps = c["layer_norm_eps"]
        heads = c["num_attention_heads"]
        n = len(ids)
        head_dim = c["hidden_size"] // heads

        def linear(x: np.ndarray, name: str) -> np.ndarray:
            return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        for layer in range(c["num_hidden_layers"]):
            p = f"encoder.layer.{layer}"

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(n, heads, head_dim).transpose(1, 0, 2)

            q = split(linear(x, f"{p}.attention.self.query"))
            k = split(linear(x, f"{p}.attention.self.key"))
            v = split(linear(x, f"{p}.attention.self.value"))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs = scores / scores.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(1, 0, 2).reshape(n, heads * head_dim)
            attention = linear(context, f"{p}.attention.output.dense")
            x = _layer_norm(
                x + attention,
                w[f"{p}.attention.output.LayerNorm.weight"],
                w[f"{p}.attention.output.LayerNorm.bias"],
                eps,
            )
            inner = _gelu(linear(x, f"{p}.intermediate.dense"))
            x = _layer_norm(
                x + linear(inner, f"{p}.output.dense"),
                w[f"{p}.output.LayerNorm.weight"],
                w[f"{p}.output.LayerNorm.bias"],
                eps,
            )
        pooled = x[0] if self.pooling == "cls" else x.mean(axis=0)
        return pooled / max(np.linalg.norm(pooled), 1e-12)


if __name__ == "__main__":
    reference = BertReference(sys.argv[1])
    for text in sys.argv[2:]:
        print(json.dumps(reference.embed(text).tolist()))
