"""A tiny Llama-3-shaped GGUF model around the real Llama-3 tokenizer, written in seconds.

llama.cpp ships a vocabulary-only GGUF of Llama-3 (`ggml-vocab-llama-bpe.gguf`: the BPE vocabulary,
merges and special tokens, no weights and no chat template) inside the llama-cpp-python source
archive; `make install` extracts it to `.venv/share/lossagent/` (see the Makefile). Around it this
writes a 2-layer, 64-wide Llama with random weights (fixed seed) and the Llama-3-Instruct chat
template, so the engine's tokenizer, template, stop token and grammar paths are all the real
ones; the model itself can only babble.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import numpy as np

VOCAB_NAME = 'ggml-vocab-llama-bpe.gguf'
EOT_ID = 128009  # <|eot_id|>, the end of a Llama-3-Instruct turn (what its GGUFs name as EOS)

# GGUF value types (the GGUF spec; gguf.GGUFValueType) -> struct format of a scalar
SCALARS = {0: '<B', 1: '<b', 2: '<H', 3: '<h', 4: '<I', 5: '<i', 6: '<f', 7: '<?', 10: '<Q', 11: '<q', 12: '<d'}
STRING, ARRAY = 8, 9


def vocab_path() -> Path:
    """The extracted vocabulary file; a missing one fails with what to run (CI installs it)."""
    env = os.environ.get('LOSSAGENT_LLAMA_VOCAB')
    path = Path(env) if env else Path(sys.prefix) / 'share' / 'lossagent' / VOCAB_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f'{path}: the Llama-3 vocabulary GGUF is missing; `make install` extracts it from '
            'the llama-cpp-python source archive (or set LOSSAGENT_LLAMA_VOCAB)'
        )
    return path


def read_metadata(path) -> dict:
    """The key/values of a GGUF file as {key: (type, value, item type)}: a direct read that takes < 1 s,
    where gguf.GGUFReader needs most of a minute on this file (it maps every array item)."""
    data = Path(path).read_bytes()
    if data[:4] != b'GGUF':
        raise ValueError(f'{path} is not a GGUF file')
    pos = 8  # magic, version
    _, count = struct.unpack_from('<QQ', data, pos)
    pos += 16

    def string():
        nonlocal pos
        (n,) = struct.unpack_from('<Q', data, pos)
        pos += 8 + n
        return data[pos - n : pos].decode('utf-8', errors='surrogateescape')

    def value(kind):
        nonlocal pos
        if kind == STRING:
            return string()
        fmt = SCALARS[kind]
        (v,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v

    out = {}
    for _ in range(count):
        key = string()
        (kind,) = struct.unpack_from('<I', data, pos)
        pos += 4
        if kind == ARRAY:
            item, n = struct.unpack_from('<IQ', data, pos)
            pos += 12
            if item == STRING:
                out[key] = (kind, [string() for _ in range(n)], item)
            else:
                fmt = SCALARS[item]
                size = struct.calcsize(fmt)
                out[key] = (kind, list(np.frombuffer(data, dtype=np.dtype(fmt), count=n, offset=pos).tolist()), item)
                pos += n * size
        else:
            out[key] = (kind, value(kind), None)
    return out


def llama3_chat_template() -> str:
    """Meta's Llama-3-Instruct template (tokenizer_config.json), as llama-cpp-python ships it: with it
    in the GGUF the engine picks `chat_format='llama-3'`, as it does for a real Llama-3-8B-Instruct GGUF."""
    from llama_cpp.llama_chat_format import LLAMA3_INSTRUCT_CHAT_TEMPLATE

    return LLAMA3_INSTRUCT_CHAT_TEMPLATE


def write_tiny_llama(
    path, seed: int = 0, layers: int = 2, width: int = 64, heads: int = 4, ff: int = 128, context: int = 8192
) -> Path:
    """A Llama-3-shaped GGUF at `path`: the real tokenizer, the chat template, EOS = <|eot_id|>."""
    import gguf
    from gguf import GGUFValueType

    meta = read_metadata(vocab_path())
    tokens = meta['tokenizer.ggml.tokens'][1]
    writer = gguf.GGUFWriter(str(path), 'llama')
    writer.add_name('lossagent-tiny-llama3')
    writer.add_context_length(context)
    writer.add_embedding_length(width)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(width // heads)
    writer.add_rope_freq_base(500000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for key, (kind, value, item) in meta.items():
        if key.startswith('tokenizer.') and key != 'tokenizer.ggml.eos_token_id':
            writer.add_key_value(key, value, GGUFValueType(kind), GGUFValueType(item) if item is not None else None)
    writer.add_eos_token_id(EOT_ID)
    writer.add_chat_template(llama3_chat_template())

    rng = np.random.default_rng(seed)

    def matrix(rows, cols, scale=0.05):
        return (rng.standard_normal((rows, cols), dtype=np.float32) * scale).astype(np.float16)

    writer.add_tensor('token_embd.weight', matrix(len(tokens), width))
    writer.add_tensor('output_norm.weight', np.ones(width, dtype=np.float32))
    writer.add_tensor('output.weight', matrix(len(tokens), width, 0.5))
    for i in range(layers):
        block = f'blk.{i}.'
        writer.add_tensor(block + 'attn_norm.weight', np.ones(width, dtype=np.float32))
        for name in ('attn_q', 'attn_k', 'attn_v', 'attn_output'):
            writer.add_tensor(f'{block}{name}.weight', matrix(width, width))
        writer.add_tensor(block + 'ffn_norm.weight', np.ones(width, dtype=np.float32))
        writer.add_tensor(block + 'ffn_gate.weight', matrix(ff, width))
        writer.add_tensor(block + 'ffn_up.weight', matrix(ff, width))
        writer.add_tensor(block + 'ffn_down.weight', matrix(width, ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)
