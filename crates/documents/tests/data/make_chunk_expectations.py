"""Writes chunk_expectations.json: the token ids and overlapped chunks that upstream Llama Stack
computes for a few texts, with Python's tiktoken and Meta's Llama 3 tokenizer.model.

Usage: python make_chunk_expectations.py TOKENIZER_MODEL > chunk_expectations.json
(needs `pip install tiktoken`). The tokenizer set-up and the input splitting follow
llama_models/llama3/tokenizer.py; the chunking follows make_overlapped_chunks in
llama_stack/providers/utils/memory/vector_store.py.
"""

import json
import sys

import tiktoken
from tiktoken.load import load_tiktoken_bpe

PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def make_encoding(path):
    ranks = load_tiktoken_bpe(path)
    named = [
        "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
        "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
        "<|python_tag|>", "<|image|>",
    ]
    names = named + [f"<|reserved_special_token_{i + 2}|>" for i in range(256 - len(named))]
    specials = {name: len(ranks) + i for i, name in enumerate(names)}
    return tiktoken.Encoding(name="llama3", pat_str=PATTERN, mergeable_ranks=ranks,
                             special_tokens=specials)


def split_runs(s, limit):
    """Cuts s wherever a run of whitespace or of non-whitespace grows past limit."""
    if not s:
        yield s
        return
    start, run, space = 0, 0, s[0].isspace()
    for i, ch in enumerate(s):
        if ch.isspace() != space:
            space, run = ch.isspace(), 1
        else:
            run += 1
            if run > limit:
                yield s[start:i]
                start, run = i, 1
    yield s[start:]


def encode(enc, text):
    ids = []
    for block_start in range(0, len(text), 400_000):
        for piece in split_runs(text[block_start:block_start + 400_000], 25_000):
            ids.extend(enc.encode(piece, allowed_special=set(), disallowed_special=()))
    return ids


def chunks(enc, ids, size, overlap):
    out = []
    for i in range(0, len(ids), size - overlap):
        window = ids[i:i + size]
        out.append({"text": enc.decode(window), "token_count": len(window)})
    return out


def cases():
    prose = (
        "Llama Stack standardizes the building blocks needed to bring generative AI "
        "applications to market. It's a set of APIs: inference, safety, memory, agents. "
    )
    mixed = (
        "Tokenizers cut text into pieces — ces morceaux sont appelés jetons. "
        "分词器把文本切成小块。トークナイザーはテキストを分割します。 "
        "Emoji 🦙🦙🚀 and math ∑∫√ and Ελληνικά, русский текст, עברית. "
    )
    code = (
        "def make_chunks(text: str, size: int = 512) -> list[str]:\n"
        "    \"\"\"Split text.\"\"\"\n\tif not text:\n        return []\n"
        "    return [text[i:i + size] for i in range(0, len(text), size)]  # done\r\n\n\n"
    )
    yield "prose", prose * 40, 512, 128
    yield "multilingual", mixed * 12, 100, 25
    yield "specials_and_spaces", ("<|eot_id|> <|begin_of_text|>text   \n\n  \t" + code) * 6, 64, 16
    yield "empty", "", 512, 128
    yield "short", "Hello, world!", 512, 128
    yield "emoji_cuts", "🦙🚀" * 20 + " llama é", 3, 1
    yield "numbers", " ".join(str(n * 7919) for n in range(100)), 7, 6


def main():
    enc = make_encoding(sys.argv[1])
    out = []
    for name, text, size, overlap in cases():
        ids = encode(enc, text)
        out.append({"name": name, "text": text, "size": size, "overlap": overlap,
                    "tokens": ids, "chunks": chunks(enc, ids, size, overlap)})
    # Runs over 25,000 characters are cut before tiktoken sees them; the text is rebuilt by the
    # test from this recipe rather than stored.
    long_run = "x" * 25_010 + " end " + " " * 25_005 + "tail"
    out.append({"name": "long_runs", "text_spec": "x*25010+' end '+' '*25005+'tail'",
                "tokens": encode(enc, long_run)})
    # Over 400,000 characters: the block boundary changes tokens, so check the count and a
    # checksum rather than storing 100k ids.
    big = ("The quick brown fox jumps over the lazy dog. " * 9000)[:400_003] + "ending words"
    ids = encode(enc, big)
    out.append({"name": "over_400k_chars", "text_spec": "fox*9000[:400003]+ending words",
                "token_len": len(ids),
                "checksum": sum((i + 1) * t for i, t in enumerate(ids)) % (1 << 61)})
    json.dump(out, sys.stdout, ensure_ascii=False, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
