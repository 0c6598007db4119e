#!/usr/bin/env python3
"""transformers loads razerq's `export --to dequant` directory and reproduces razerq's fp16
WikiText-2 perplexity (issue 8, "real loaders").

Run on the GPU machine (PyTorch + transformers, no network); scripts/gpu/check_transformers_export.sh
makes the inputs and calls this:

    python3 scripts/gpu/check_transformers_export.py DEQUANT_DIR --data DATA_DIR \
        --ours-ppl 10.2101 --ours-tokens 815066 [--ours-sha256 HEX] [--seqlen 2048] [--tol 1e-4]

- the model: AutoModelForCausalLM.from_pretrained(DEQUANT_DIR) in float16 on CUDA;
- the text: GPTQ's WikiText-2 test set, the HF rows of wiki.test.raw ("" for blank lines)
  joined with "\\n\\n", as calib/datasets.cpp hf_wikitext_join builds it;
- the tokens: transformers' tokenizer from DEQUANT_DIR (BOS once at the start), tried with its
  settings in turn; the stream used must have razerq's count (--ours-tokens, `razerq eval
  --json` "stream_tokens") and, when given, the sha256 of its int32 ids ("stream_sha256").
  When no transformers setting gives razerq's stream, sentencepiece's [BOS] + encode (what
  razerq and GPTQ's reference do) is used and the script says so;
- the score: GPTQ's convention: nsamples = len // seqlen non-overlapping windows, mean CE over
  the seqlen - 1 shifted positions (float32 from fp16 logits) times seqlen, summed, divided by
  nsamples * seqlen, exp.
Prints both perplexities and exits 1 when they differ by more than --tol (relative).
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer


def wikitext2_text(data_dir):
    # HF datasets wikitext.py: a row per line (newline kept), "" for blank ones; GPTQ joins with "\n\n".
    with open(os.path.join(data_dir, "wikitext2", "wiki.test.raw"), encoding="utf-8") as f:
        rows = [line if line.strip() else "" for line in f]
    return "\n\n".join(rows)


def ids_sha256(ids):
    return hashlib.sha256(np.asarray(ids, dtype="<i4").tobytes()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--data", required=True, help="razerq's shared data directory (wikitext2/wiki.test.raw)")
    ap.add_argument("--ours-ppl", type=float, required=True, help="razerq eval --device cuda --dtype fp16, same checkpoint")
    ap.add_argument("--ours-tokens", type=int, required=True, help="razerq's WikiText-2 token count (stream_tokens)")
    ap.add_argument("--ours-sha256", default=None, help="razerq's stream_sha256 (int32 little-endian ids)")
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tol", type=float, default=1e-4, help="relative tolerance on the perplexity")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    a = ap.parse_args()

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA'}")
    text = wikitext2_text(a.data)
    # transformers' tokenizer first; on llama-14m's 512-piece sentencepiece model it is known
    # to give 815070 ids where sentencepiece (and razerq, and GPTQ's goldens) give 815066
    # (shared/data golden/hf_tokenizer_vs_sentencepiece.json: a doubled "\u2581" after "@.@").
    # Then its other settings, then sentencepiece itself ([BOS] + encode, as razerq does).
    # The perplexity is computed on the first stream equal to razerq's, and says which it was.
    candidates = [("transformers AutoTokenizer", {}), ("transformers AutoTokenizer use_fast=False", {"use_fast": False}),
                  ("transformers AutoTokenizer legacy=False", {"legacy": False})]
    ids, used = None, None
    for label, kwargs in candidates:
        try:
            tok = AutoTokenizer.from_pretrained(a.model_dir, **kwargs)
            cand = list(tok(text)["input_ids"])
        except Exception as e:  # a setting this version does not take
            print(f"tokenizer {label}: not usable here ({type(e).__name__}: {str(e)[:120]})")
            continue
        print(f"tokenizer {label} ({type(tok).__name__}): {len(cand)} ids (razerq: {a.ours_tokens}), first {cand[:3]}")
        if len(cand) == a.ours_tokens and ids is None:
            ids, used = cand, label
    if ids is None:
        try:
            import sentencepiece as spm
            sp = spm.SentencePieceProcessor(model_file=os.path.join(a.model_dir, "tokenizer.model"))
            cand = [sp.bos_id()] + sp.encode(text)
            print(f"tokenizer sentencepiece {spm.__version__} ([BOS] + encode): {len(cand)} ids")
            if len(cand) == a.ours_tokens:
                ids, used = cand, "sentencepiece"
        except ImportError:
            print("sentencepiece is not installed")
    if ids is None:
        print(f"FAIL: no tokenizer gives razerq's {a.ours_tokens} ids: the streams differ, the perplexities would "
              "not be comparable")
        return 1
    print(f"token stream: {used}")
    sha = ids_sha256(ids)
    if a.ours_sha256 is not None:
        print(f"ids sha256 {sha} ({'equal to' if sha == a.ours_sha256 else 'DIFFERENT from'} razerq's)")
        if sha != a.ours_sha256:
            return 1

    kw = {"dtype": torch.float16} if int(transformers.__version__.split(".")[0]) >= 5 else {"torch_dtype": torch.float16}
    model = AutoModelForCausalLM.from_pretrained(a.model_dir, **kw).cuda().eval()
    print(f"model: {type(model).__name__}, {sum(p.numel() for p in model.parameters())} parameters, "
          f"dtype {next(model.parameters()).dtype}")

    L = a.seqlen
    n = len(ids) // L
    t = torch.tensor(ids[: n * L], dtype=torch.long, device="cuda").view(n, L)
    nll_sum = 0.0
    t0 = time.time()
    with torch.no_grad():
        for i in range(0, n, a.batch):
            x = t[i:i + a.batch]
            logits = model(x).logits.float()
            ce = torch.nn.functional.cross_entropy(
                logits[:, :-1, :].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none"
            ).view(x.shape[0], L - 1)
            nll_sum += (ce.double().mean(dim=1) * L).sum().item()  # GPTQ: mean loss * seqlen per window
    ppl = math.exp(nll_sum / (n * L))
    rel = abs(ppl - a.ours_ppl) / a.ours_ppl
    ok = rel <= a.tol
    print(f"wikitext2 gptq seqlen {L} windows {n}: transformers fp16 ppl {ppl:.6f} | razerq eval cuda fp16 "
          f"{a.ours_ppl:.6f} | diff {ppl - a.ours_ppl:+.6f} ({rel:.2e} relative, tolerance {a.tol:g}) "
          f"{'OK' if ok else 'FAIL'}  ({time.time() - t0:.1f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"transformers_ppl": ppl, "razerq_ppl": a.ours_ppl, "rel_diff": rel, "windows": n, "tokens": len(ids),
                       "ids_sha256": sha, "tokenizer": used, "torch": torch.__version__,
                       "transformers": transformers.__version__, "ok": ok}, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
