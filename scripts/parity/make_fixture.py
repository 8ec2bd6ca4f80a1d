#!/usr/bin/env python3
"""Make the SmolLM2 parity fixtures from an independent implementation: llama.cpp.

Reads models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-model.sh) with llama-cpp-python
(llama.cpp compiled from source by pip) and writes three fixtures the Rust tests compare against:

  tests/fixtures/smollm2/logits.json     for each prompt: llama.cpp's token ids, and its logits
                                          at the last position (top 32, and 256 fixed ids), plus
                                          the top-1 id at every position, from the Q4_1 file
  tests/fixtures/smollm2/logits-f32.json the same from an all-F32 copy of that file, dequantised
                                          by the `gguf` package (scripts/parity/dequantize_gguf.py)
                                          and run with an F32 KV cache: llama.cpp then computes in
                                          f32 throughout, so the comparison can be tight
  tests/fixtures/smollm2/chat.json       24 HH-RLHF prompts as user/assistant messages, rendered
                                          by jinja2 from the file's own tokenizer.chat_template
                                          (add_generation_prompt), with llama.cpp's ids of the
                                          rendering (special tokens parsed)
  tests/fixtures/smollm2/tokenizer.json  300 HH-RLHF strings (data/hh-rlhf) and a few edge cases
                                          with llama.cpp's token ids (no BOS, specials not parsed)

Command (run from the repository root; pip builds llama.cpp, ~10 min on 2 cores):

  python3 -m venv /tmp/lpc-parity
  /tmp/lpc-parity/bin/pip install llama-cpp-python==0.3.36 numpy gguf==0.19.0
  /tmp/lpc-parity/bin/python scripts/parity/dequantize_gguf.py \
      models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/lpc-parity/smollm2-f32.gguf
  /tmp/lpc-parity/bin/python scripts/parity/make_fixture.py /tmp/lpc-parity/smollm2-f32.gguf

On the Q4_1 file llama.cpp runs its CPU matmuls with the weights quantised and the activations
quantised to 8 bits per 32-element block (and an F16 KV cache), so its logits differ from an f32
forward pass over dequantised weights by more than float rounding; the Rust tests state the
tolerance each fixture allows.
"""
import gzip
import json
import os
import sys

import numpy as np
from llama_cpp import Llama, __version__ as LLAMA_CPP_PYTHON_VERSION

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "fixtures", "smollm2")

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chat(user):
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")


PROMPTS = [
    ("chat-capital", chat("What is the capital of France?"), True),
    ("chat-hh", chat("How do I make a cup of tea?"), True),
    ("plain-fox", "The quick brown fox jumps over the lazy", False),
    ("plain-count", "One, two, three, four, five, six, seven,", False),
]

EDGE_STRINGS = [
    "", " ", "  leading and trailing  ", "Hello, world!", "it's they're we've I'm you'll he'd",
    "1234567890 3.14159 -42", "tabs\tand\nnewlines\n\n\nand   spaces", "naïve café résumé",
    "日本語のテキスト", "emoji 😀👍🏽 done", "URL https://example.com/a?b=c&d=e", "C++ && x->y != z;",
]


def hh_strings(n_per_file=144, max_chars=320):
    out = []
    for i, rec in hh_records(n_per_file):
        # Alternate chosen / rejected; cut by characters (never inside a UTF-8 sequence).
        out.append(rec["chosen" if i % 2 == 0 else "rejected"][:max_chars])
    return out


def hh_records(n_per_file):
    """(index within its file, record) for the first n_per_file records of each HH test file."""
    for sub in ["helpful-base", "harmless-base"]:
        path = os.path.join(ROOT, "data", "hh-rlhf", sub, "test.jsonl.gz")
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= n_per_file:
                    break
                yield i, json.loads(line)


def hh_chat_cases(llm, template, n_per_file=12):
    """HH prompts (each chosen transcript cut after its last "\n\nAssistant:") as messages: the
    text is split at every "\n\nHuman:" / "\n\nAssistant:" marker, each turn stripped."""
    import re
    import jinja2
    tmpl = jinja2.Environment().from_string(template)
    cases = []
    for _, rec in hh_records(n_per_file):
        chosen = rec["chosen"]
        prompt = chosen[: chosen.rindex("\n\nAssistant:") + len("\n\nAssistant:")]
        parts = re.split(r"(\n\nHuman:|\n\nAssistant:)", prompt)
        messages = []
        for marker, text in zip(parts[1::2], parts[2::2]):
            role = "user" if marker == "\n\nHuman:" else "assistant"
            messages.append({"role": role, "content": text.strip()})
        assert messages[-1] == {"role": "assistant", "content": ""}
        messages.pop()
        rendered = tmpl.render(messages=messages, add_generation_prompt=True)
        ids = llm.tokenize(rendered.encode("utf-8"), add_bos=False, special=True)
        cases.append({"prompt": prompt, "messages": messages, "rendered": rendered,
                      "ids": [int(i) for i in ids]})
    return cases


def reference_logits(model_path, prompts, fixed_ids, **kw):
    llm = Llama(model_path=model_path, n_ctx=512, n_batch=512, n_threads=2, logits_all=True,
                verbose=False, seed=0, flash_attn=False, **kw)
    out = []
    for name, text, ids in prompts:
        llm.reset()
        llm.eval(ids)
        logits = np.array(llm.scores[: len(ids)], dtype=np.float32)  # [L, V]
        last = logits[-1]
        top = np.argsort(-last)[:32]
        out.append({
            "name": name,
            "text": text,
            "ids": [int(i) for i in ids],
            "top1_per_position": [int(np.argmax(r)) for r in logits],
            "last_top_ids": [int(i) for i in top],
            "last_top_logits": [float(last[i]) for i in top],
            "last_fixed_logits": [float(last[i]) for i in fixed_ids],
        })
        print(f"{name}: {len(ids)} tokens, top-1 {top[0]} ({llm.detokenize([int(top[0])])!r}) "
              f"margin {last[top[0]] - last[top[1]]:.3f}")
    return out


def main():
    if not os.path.isfile(MODEL):
        sys.exit(f"{MODEL} missing: run scripts/fetch-model.sh")
    if len(sys.argv) != 2:
        sys.exit("usage: make_fixture.py ALL-F32-COPY.gguf (see scripts/parity/dequantize_gguf.py)")
    f32_model = sys.argv[1]
    llm = Llama(model_path=MODEL, n_ctx=512, vocab_only=True, verbose=False)
    os.makedirs(OUT, exist_ok=True)
    fixed_ids = list(range(0, 49152, 192))  # 256 ids spread over the vocabulary
    prompts = [(name, text, llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))
               for name, text, special in PROMPTS]
    meta = {
        "generator": "scripts/parity/make_fixture.py",
        "model": "models/SmolLM2-135M-Instruct.Q4_1.gguf "
                 "(sha256 b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53)",
    }
    runs = [
        ("logits.json", MODEL, {}, "the Q4_1 file, F16 KV cache (llama.cpp defaults)"),
        ("logits-f32.json", f32_model, {"type_k": 0, "type_v": 0},
         "an all-F32 copy dequantised by gguf-py 0.19.0, F32 KV cache"),
    ]
    for out_name, path, kw, what in runs:
        print(f"== {out_name}: {what}")
        result = reference_logits(path, prompts, fixed_ids, **kw)
        reference = (f"llama.cpp via llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}, CPU, n_ctx 512, "
                     f"n_threads 2, no flash attention, on {what}")
        with open(os.path.join(OUT, out_name), "w") as f:
            json.dump({**meta, "reference": reference, "fixed_ids": fixed_ids, "prompts": result},
                      f, separators=(",", ":"))
    template = llm.metadata["tokenizer.chat_template"]
    chat_cases = hh_chat_cases(llm, template)
    with open(os.path.join(OUT, "chat.json"), "w") as f:
        json.dump({**meta, "reference": f"jinja2 {__import__('jinja2').__version__} rendering of "
                   "the file's tokenizer.chat_template; ids by llama.cpp's tokenizer via "
                   f"llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} (no BOS, special tokens parsed)",
                   "cases": chat_cases}, f, separators=(",", ":"), ensure_ascii=False)
    strings = EDGE_STRINGS + hh_strings()
    cases = [{"text": s, "ids": [int(i) for i in
                                 llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)]}
             for s in strings]
    with open(os.path.join(OUT, "tokenizer.json"), "w") as f:
        json.dump({**meta, "reference": f"llama.cpp tokenizer via llama-cpp-python "
                   f"{LLAMA_CPP_PYTHON_VERSION} (no BOS, special tokens not parsed)",
                   "cases": cases}, f, separators=(",", ":"), ensure_ascii=False)
    print(f"wrote {len(prompts)} prompts x 2 and {len(cases)} tokenizer cases to {OUT}")


if __name__ == "__main__":
    main()
