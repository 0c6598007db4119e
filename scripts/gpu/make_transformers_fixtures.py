#!/usr/bin/env python3
"""Tiny random-init models made with transformers, and their logits, as the independent
reference of eval/'s forward (issue 4: "an OPT model and a Qwen2-style model ... give logits
equal to transformers' within 1e-4 relative").

Run on the GPU machine (transformers is not installable on the development machine):
    python3 scripts/gpu/make_transformers_fixtures.py OUTDIR
Writes OUTDIR/<name>/{config.json, model.safetensors, reference.safetensors, versions.json};
the directories are committed under tests/golden/transformers/ and read by
tests/eval/test_eval_transformers.cpp (CPU) and test_eval_gpu.cpp (CUDA).

reference.safetensors: ids [2, T] int64, logits_f32 [2, T, V] (transformers eager attention,
float32, on CPU) and logits_f64 (the same model in float64).
Weights are drawn wider than transformers' 0.02 initialisation (std 0.1, norms 1 +- 0.2,
biases +- 0.05), so that the logits are far from uniform and every term matters.
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "layer_norm" in name:
                if name.endswith("weight"):
                    p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def _make(out, name, config, seed, T=40):
    torch.manual_seed(seed)
    config._attn_implementation = "eager"
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    randomize(model, seed)
    model.eval()
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    for extra in ("generation_config.json",):
        p = os.path.join(d, extra)
        if os.path.exists(p):
            os.remove(p)
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, config.vocab_size, (2, T), generator=g)
    with torch.no_grad():
        l32 = model(ids).logits.float().contiguous()
        l64 = model.double()(ids).logits.contiguous()
    save_file({"ids": ids.contiguous(), "logits_f32": l32, "logits_f64": l64}, os.path.join(d, "reference.safetensors"))
    rel = ((l32.double() - l64).abs().max() / l64.abs().max()).item()
    with open(os.path.join(d, "versions.json"), "w") as f:
        json.dump({"torch": torch.__version__, "transformers": transformers.__version__, "seed": seed,
                   "f32_vs_f64_max_rel": rel, "max_abs_logit": l64.abs().max().item()}, f, indent=1)
    print(f"{name}: {sum(p.numel() for p in model.parameters())} params, T={T}, "
          f"max |logit| {l64.abs().max().item():.3f}, f32 vs f64 {rel:.2e}", flush=True)


def main():
    out = sys.argv[1]
    C = transformers
    failed = []

    def make(*a):
        try:
            _make(*a)
        except Exception as e:  # keep going: report every model that fails
            print(f"{a[1]}: FAILED: {type(e).__name__}: {e}", flush=True)
            failed.append(a[1])

    # OPT-350m style: project_in/out (word_embed_proj_dim != hidden), post-LayerNorm, ReLU.
    make(out, "opt-proj", C.OPTConfig(vocab_size=512, hidden_size=64, word_embed_proj_dim=32, num_hidden_layers=2,
                                      ffn_dim=160, num_attention_heads=4, max_position_embeddings=64,
                                      do_layer_norm_before=False, activation_function="relu", enable_bias=True), 11)
    # OPT-125m style: pre-LayerNorm, final layer norm, tied head.
    make(out, "opt-pre", C.OPTConfig(vocab_size=512, hidden_size=64, word_embed_proj_dim=64, num_hidden_layers=2,
                                     ffn_dim=160, num_attention_heads=4, max_position_embeddings=64,
                                     do_layer_norm_before=True, activation_function="relu", enable_bias=True), 12)
    # Qwen2: GQA (8 heads over 2), q/k/v biases, rope_theta 1e6, tied embeddings.
    make(out, "qwen2", C.Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                                     num_attention_heads=8, num_key_value_heads=2, rope_theta=1000000.0,
                                     max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=True), 13)
    # Llama-3 style: GQA, llama3 rope scaling, untied head.
    make(out, "llama3", C.LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=1, rope_theta=500000.0,
                                      max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=False,
                                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                    "high_freq_factor": 4.0,
                                                    "original_max_position_embeddings": 16}), 14)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
