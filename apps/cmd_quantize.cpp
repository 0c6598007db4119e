// razerq quantize MODEL --format F --bits B --group G -o OUT
#include <sys/resource.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "apps/commands.hpp"
#include "apps/calib_stages.hpp"
#include "common/error.hpp"
#include "common/log.hpp"
#include "formats/quantize_model.hpp"

namespace razerq::app {
namespace {

// Peak resident memory of this process so far, in MiB (the streaming pipeline keeps it near
// one tensor in float32 plus its packed output, whatever the model size).
double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // Linux: KiB
}

std::vector<float> parse_floats(const std::string& s, const char* option) {
  std::vector<float> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      v.push_back(std::stof(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw_error(ErrorKind::kInvalidArgument, option, "'%s' is not a number (expected a comma-separated list)", item.c_str());
    }
  }
  return v;
}

struct QuantizeArgs {
  std::string model, out, format = "razer", rule = "search", special, clip;
  int bits = 0, group = 0, threads = 0;
  bool sym = false, per_out_dim = false, outliers = false, offset = false, qq_zero_sym = false;
  int block_size = 0, qq_scale_bits = 0, qq_zero_bits = 0, qq_group = 16;
  bool asym = false, force = false, compare = false, lm_head = false, no_range_aware = false, no_checksums = false;
  std::vector<std::string> skip;
  CalibStageArgs g;
  // lut
  std::string sensitivity = "fisher";
  double outlier_frac = 0.0045, sensitive_frac = 0.0005;
  uint64_t kmeans_seed = 0;
  int kmeans_iters = 50;
  bool sensitive_frac_given = false, lut_option_given = false;
};

void run_quantize(const QuantizeArgs& a, const GlobalOptions& g) {
  formats::QuantizeJob job;
  job.model_dir = a.model;
  job.out_dir = a.out;
  job.cfg = quantizer::make_format_config(a.format, a.bits, a.group, a.asym,
                                          a.special.empty() ? std::vector<float>{} : parse_floats(a.special, "--special-values"));
  // OA-CIM options of the int format (quantizer/NOTES.md).
  quantizer::IntOptions& io = job.cfg.opts;
  io.per_out_dim = a.per_out_dim;
  if (a.block_size && !a.outliers) throw_error(ErrorKind::kInvalidArgument, "--block-size", "is the outlier block: add --outliers");
  io.outlier_block = a.outliers ? (a.block_size ? a.block_size : 32) : 0;
  io.qq_scale_bits = a.qq_scale_bits;
  io.qq_zero_bits = a.qq_zero_bits;
  io.qq_zero_sym = a.qq_zero_sym;
  io.qq_group = a.qq_group;
  io.offset = a.offset;
  quantizer::validate_int_options(job.cfg);
  if ((io.outlier_block || io.qq_scale_bits || io.qq_zero_bits) && !a.g.gptq)
    throw_error(ErrorKind::kInvalidArgument, io.outlier_block ? "--outliers" : "--qq-scale-bits/--qq-zero-bits",
                "outliers and second-level scales are chosen inside GPTQ (its Hessian, its column order): add --gptq");
  if (io.outlier_block && a.g.act_order)
    throw_error(ErrorKind::kInvalidArgument, "--outliers", "cannot be combined with --act-order (outlier blocks are runs of natural columns)");
  if ((io.outlier_block || io.qq_scale_bits || io.qq_zero_bits) && a.lm_head)
    throw_error(ErrorKind::kInvalidArgument, "--quantize-lm-head",
                "the LM head is quantized round-to-nearest, without GPTQ, so it cannot take --outliers or --qq-*");
  job.search.rule = quantizer::parse_rule(a.rule);
  if (!a.clip.empty()) job.search.clip_ratios = parse_floats(a.clip, "--clip");
  job.search.range_aware = !a.no_range_aware;
  job.skip = a.skip;
  job.quantize_lm_head = a.lm_head;
  job.compare_reference = a.compare;
  job.force = a.force;
  job.threads = a.threads;
  job.checksums = !a.no_checksums;
  CalibStageOutput staged;
  const bool lut = job.cfg.id == quantizer::FormatId::kLut;
  if (!lut && a.lut_option_given)
    throw_error(ErrorKind::kInvalidArgument, "--sensitivity/--outlier-frac/--sensitive-frac/--kmeans-*",
                "only for --format lut (this run is %s)", job.cfg.label().c_str());
  if (lut) {
    if (a.g.any())
      throw_error(ErrorKind::kInvalidArgument, a.g.gptq ? "--gptq" : a.g.awq ? "--awq" : a.g.lwc ? "--lwc" : "--rotate",
                  "does not combine with --format lut (its tables come from a sensitivity-weighted k-means per row)");
    if (job.search.rule != quantizer::Rule::kSearch || a.compare)
      throw_error(ErrorKind::kInvalidArgument, a.compare ? "--compare-reference" : "--razer-rule",
                  "lut has no reference rule");
    job.search.lut.outlier_frac = a.outlier_frac;
    job.search.lut.sensitive_frac = a.sensitive_frac;
    job.search.lut.seed = a.kmeans_seed;
    job.search.lut.max_iter = a.kmeans_iters;
    if (a.sensitivity == "none" && a.sensitive_frac > 0) {
      if (a.sensitive_frac_given)
        throw_error(ErrorKind::kInvalidArgument, "--sensitive-frac",
                    "%g needs a sensitivity (--sensitivity fisher or act2); --sensitivity none keeps outliers only", a.sensitive_frac);
      job.search.lut.sensitive_frac = 0;
      if (!g.quiet) std::fprintf(stderr, "note: --sensitivity none: no sensitive weights in the sparse part (--sensitive-frac 0)\n");
    }
    if (a.sensitivity != "none") {
      if (a.lm_head)
        throw_error(ErrorKind::kInvalidArgument, "--quantize-lm-head",
                    "with --format lut and --sensitivity %s (the sensitivity covers the decoder blocks' linears only)",
                    a.sensitivity.c_str());
#if defined(RAZERQ_HAS_EVAL)
      if (!a.force && std::filesystem::exists(a.out))
        throw_error(ErrorKind::kInvalidArgument, a.out, "exists (use --force to replace it)");  // before a long calibration
      staged = run_lut_stage(a.model, job.cfg, job.search.lut, a.sensitivity, a.g, a.threads, g.quiet, &job.extra_quantization);
      job.precomputed = &staged.precomputed;
#else
      throw_error(ErrorKind::kUnsupported, "--sensitivity " + a.sensitivity,
                  "this razerq was built without libtorch (use --sensitivity none)");
#endif
    } else {
      job.extra_quantization["sensitivity"] = "none";
    }
  }
  if (a.g.any()) {
#if defined(RAZERQ_HAS_EVAL)
    if (job.search.rule != quantizer::Rule::kSearch)
      throw_error(ErrorKind::kInvalidArgument, a.g.gptq ? "--gptq" : a.g.awq ? "--awq" : a.g.lwc ? "--lwc" : "--rotate",
                  "the calibrated stages choose group parameters with the search (not --rule reference)");
    if (!a.force && std::filesystem::exists(a.out))
      throw_error(ErrorKind::kInvalidArgument, a.out, "exists (use --force to replace it)");  // before a long calibration
    staged = run_calib_stages(a.model, job.cfg, job.search, a.g, g.quiet, &job.extra_quantization);
    job.precomputed = &staged.precomputed;
    job.replaced = &staged.replaced;
    job.config_patch = staged.config_patch;
#else
    throw_error(ErrorKind::kUnsupported, a.g.gptq ? "--gptq" : a.g.awq ? "--awq" : a.g.lwc ? "--lwc" : "--rotate",
                "this razerq was built without libtorch (the calibrated stages run the model)");
#endif
  }
  if (!g.quiet)
    std::fprintf(stderr, "quantizing %s -> %s as %s (rule %s)\n", a.model.c_str(), a.out.c_str(), job.cfg.label().c_str(),
                 a.rule.c_str());
  const formats::QuantizeSummary s = formats::quantize_model(job, [&](const formats::TensorProgress& p) {
    if (!g.quiet) std::fprintf(stderr, "%s\n", formats::format_progress(p).c_str());
  });
  if (g.json) {
    nlohmann::json j = {{"out", a.out},
                        {"format", job.cfg.label()},
                        {"tensors", s.tensors},
                        {"quantized_tensors", s.quantized},
                        {"quantized_weights", s.quantized_weights},
                        {"bits_per_weight", s.bits_per_weight},
                        {"seconds", s.seconds},
                        {"worst_rel_error", s.worst_rel_error},
                        {"worst_tensor", s.worst_tensor},
                        {"peak_rss_mib", peak_rss_mib()}};
    if (a.compare) j["tensors_worse_than_reference"] = s.worse_than_reference;
    std::printf("%s\n", j.dump(1).c_str());
    return;
  }
  std::printf("wrote %s: %d tensors, %d quantized as %s (%lld weights, %.4f bits/weight), %.2f s, %.1f M weights/s\n",
              a.out.c_str(), s.tensors, s.quantized, job.cfg.label().c_str(), static_cast<long long>(s.quantized_weights),
              s.bits_per_weight, s.seconds, s.seconds > 0 ? double(s.quantized_weights) / s.seconds / 1e6 : 0.0);
  if (s.quantized) std::printf("worst relative error %.4e (%s)\n", s.worst_rel_error, s.worst_tensor.c_str());
  std::printf("peak memory %.1f MiB\n", peak_rss_mib());
  if (a.compare)
    std::printf("tensors where the search is worse than the reference rule: %d of %d\n", s.worse_than_reference, s.quantized);
}

}  // namespace

void set_quantize_command(CLI::App& app, GlobalOptions& g) {
  auto a = std::make_shared<QuantizeArgs>();
  CLI::App* c = app.add_subcommand("quantize", "Quantize a Hugging Face model directory into a packed checkpoint");
  c->add_option("MODEL", a->model, "Hugging Face model directory (config.json + safetensors, single or sharded)")
      ->required()
      ->check(CLI::ExistingDirectory);
  c->add_option("-o,--out", a->out, "Output directory (written as OUT.partial, renamed when complete)")->required();
  c->add_option("-f,--format", a->format, "Number format (see the list below)")->capture_default_str();
  c->add_option("-b,--bits", a->bits, "Bits per weight (default: the format's)");
  c->add_option("-g,--group", a->group,
                "Group size along the input dimension (default: the format's; need not divide K). lut has one table per "
                "output row and refuses --group");
  CLI::Option* asym = c->add_flag("--asym", a->asym, "int only: asymmetric grid with a b-bit zero point per group");
  c->add_flag("--sym", a->sym, "int only: symmetric codes c - 2^(b-1) (the default; OA-CIM's --sym)")->excludes(asym);
  c->add_flag("--per-out-dim", a->per_out_dim,
              "int only: one scale (and zero) per output row, i.e. the group is each tensor's K (OA-CIM --per_out_dim)");
  c->add_flag("--outliers", a->outliers,
              "int + --gptq: per row and block of --block-size columns keep at most one weight, the one with the largest "
              "w^2 / [H^-1]_ii when GPTQ reaches it, in BF16 instead of its code (OA-CIM outlier mode)");
  c->add_option("--block-size", a->block_size, "Outlier block in columns, 2..255 (default 32, OA-CIM's example)")
      ->check(CLI::Range(2, 255));
  c->add_option("--qq-scale-bits", a->qq_scale_bits,
                "int + --gptq: quantize the group scales to this many bits (2..8), fp16 step and min per --qq-group-size rows")
      ->check(CLI::Range(2, 8));
  c->add_option("--qq-zero-bits", a->qq_zero_bits, "int --asym + --gptq: quantize the zero points likewise (2..8 bits)")
      ->check(CLI::Range(2, 8));
  c->add_flag("--qq-zero-sym", a->qq_zero_sym, "Symmetric second-level quantization of the zero points (around 2^(b-1))");
  c->add_option("--qq-group-size", a->qq_group, "Rows (output channels) per second-level group of scales/zeros")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  c->add_flag("--offset", a->offset,
              "int, symmetric: per output row an offset o stored beside the codes, codes stored as (code + o) mod 2^b with "
              "the o that minimises their 1 bits (lossless; OA-CIM offset mode)");
  c->add_option("--special-values", a->special,
                "RaZeR family: the 4 special values by stored index, e.g. 5,8,-5,-8 (default per format)");
  c->add_option("--razer-rule,--rule", a->rule,
                "search: best scale x clip x special value per group (default); reference: the authors' exact rule")
      ->check(CLI::IsMember({"search", "reference"}))
      ->capture_default_str();
  c->add_option("--clip", a->clip, "Clipping ratios tried per base scale, comma-separated (default 1.00,0.97,...,0.79 at 4+ bits; 1.00,0.96,...,0.52 below)");
  c->add_flag("--no-range-aware", a->no_range_aware, "Drop the range-aware scale candidates (razer.md 3.2)");
  c->add_flag("--compare-reference", a->compare, "Also run the reference rule per tensor and print both errors");
  c->add_option("--skip", a->skip, "Regex of tensor names to keep unquantized (repeatable; embeddings, norms and lm_head are always kept)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  c->add_flag("--quantize-lm-head", a->lm_head, "Quantize the LM head too");
  c->add_option("-t,--threads", a->threads, "Worker threads (default: all cores)")->check(CLI::NonNegativeNumber);
  c->add_flag("--force", a->force, "Replace OUT if it exists");
  c->add_flag("--no-checksums", a->no_checksums, "Skip the SHA-256 of the source files in the manifest");
  c->add_flag("--gptq", a->g.gptq, "GPTQ, layer by layer on calibration data (needs libtorch); the LM head stays round-to-nearest");
  c->add_flag("--awq", a->g.awq,
              "AWQ: per-channel scales (grid over alpha, block-output MSE) folded into the previous norm/linear, then "
              "AWQ's clip search; with --gptq the scales and clipping come first");
  c->add_flag("--lwc", a->g.lwc,
              "OmniQuant-style learned weight clipping: per-group sigmoid clip factors trained by AdamW (straight-through "
              "rounding) on block-output MSE; not with --gptq");
  c->add_option("--lwc-epochs", a->g.lwc_epochs, "LWC: passes over the calibration windows per block")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--lwc-lr", a->g.lwc_lr, "LWC: AdamW learning rate of the clip factors")->check(CLI::PositiveNumber)->capture_default_str();
  c->add_flag("--rotate", a->g.rotate,
              "QuaRot-style weight-only rotation: norms folded, residual stream rotated by a seeded randomized Hadamard "
              "matrix, online Hadamard on down_proj's input (recorded in config.json; razerq eval applies it). LLaMA family");
  c->add_option("--calib", a->g.calib, "Calibration source (--awq, --lwc, --gptq, lut's --sensitivity): c4 (train excerpt), wikitext2-valid, or a .txt/.jsonl file")
      ->capture_default_str();
  c->add_option("--nsamples", a->g.nsamples, "Calibration windows")->check(CLI::PositiveNumber)->capture_default_str();
  c->add_option("--calib-seqlen", a->g.seqlen, "Calibration window length (AutoAWQ uses 128 x 512)")
      ->check(CLI::Range(2, 1 << 20))
      ->capture_default_str();
  c->add_option("--seed", a->g.seed, "Calibration sampling seed (Python's random, as GPTQ)")->capture_default_str();
  c->add_option("--damp", a->g.damp, "GPTQ damping, fraction of mean(diag H); raised x10 when Cholesky fails")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_flag("--act-order", a->g.act_order, "GPTQ: columns by decreasing diag(H), static groups");
  c->add_option("--gptq-block", a->g.block_size, "GPTQ lazy-batch block size")->check(CLI::PositiveNumber)->capture_default_str();
  c->add_option("--awq-grid", a->g.awq_grid, "AWQ scale search: grid points over alpha in [0, 1)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_flag("!--awq-no-duo", a->g.awq_duo_scaling, "AWQ: s = x_mean^alpha (llm-awq) instead of AutoAWQ's x_mean^alpha / w_mean^(1-alpha)");
  c->add_flag("!--awq-no-clip", a->g.awq_clip, "AWQ: skip the clip search");
  c->add_option("--awq-clip-grid", a->g.awq_clip_grid, "AWQ clip search: ratio step 1/N")->check(CLI::PositiveNumber)->capture_default_str();
  c->add_option("--awq-max-shrink", a->g.awq_max_shrink, "AWQ clip search: ratios down to 1 - this (exclusive)")
      ->check(CLI::Range(0.0, 0.99))
      ->capture_default_str();
  c->add_option("--rotate-seed", a->g.rotate_seed, "Seed of the rotation's random signs")->capture_default_str();
  c->add_option("--device", a->g.device, "Where the calibrated stages run the model: cpu, cuda, cuda:N")->capture_default_str();
  c->add_option("--calib-dtype", a->g.dtype,
                 "The model's dtype while calibrating: fp32, fp16 or bf16 (fp16 as GPTQ and AutoAWQ run on a GPU; "
                 "Hessians and the searches stay in float64/float32). lut: act2 takes any of the three (second moments "
                 "summed in fp32); fisher takes fp32 or bf16 (as SqueezeLLM; gradients squared and summed in fp32) and "
                 "refuses fp16 (its gradients underflow without loss scaling). Recorded as calibration.model_dtype")
      ->capture_default_str();
  c->add_option("--calib-batch", a->g.batch, "Calibration windows per forward")->check(CLI::PositiveNumber)->capture_default_str();
  c->add_flag("--calib-offload", a->g.offload,
              "GPTQ/AWQ/LWC on a GPU: keep the calibration activations (128 x 2048 x hidden per set) in pinned host "
              "memory between forwards, each batch on the device only for its forward (less GPU memory, some speed)");
  auto* sens = c->add_option("--sensitivity", a->sensitivity,
                              "lut: k-means sample weights and the sensitive part's ranking. fisher: squared gradients of the "
                              "LM loss on the calibration windows (--calib, --nsamples, --calib-seqlen, --seed, --device, "
                              "--calib-dtype fp32 or bf16); act2: input channel second moments (cheaper; any --calib-dtype); "
                              "none: unweighted, no calibration")
                  ->check(CLI::IsMember({"fisher", "act2", "none"}))
                  ->capture_default_str();
  auto* of = c->add_option("--outlier-frac", a->outlier_frac,
                           "lut: fraction of weights, largest |w| per tensor, kept exactly (fp16) in a sparse CSR part added "
                           "to the dense one; 0 with --sensitive-frac 0 = dense only")
                 ->check(CLI::Range(0.0, 0.5))
                 ->capture_default_str();
  auto* sf = c->add_option("--sensitive-frac", a->sensitive_frac,
                           "lut: fraction of weights, most sensitive per tensor, kept likewise (needs fisher or act2)")
                 ->check(CLI::Range(0.0, 0.5))
                 ->capture_default_str();
  auto* ks = c->add_option("--kmeans-seed", a->kmeans_seed, "lut: k-means++ seed (deterministic whatever --threads)")
                 ->capture_default_str();
  auto* ki = c->add_option("--kmeans-iters", a->kmeans_iters, "lut: Lloyd iterations at most")
                 ->check(CLI::Range(0, 1000))
                 ->capture_default_str();
  c->add_option("--data-dir", a->g.data_dir, "Calibration data (default $RAZERQ_DATA or ../shared/data)");
  c->callback([a, &g, sens, of, sf, ks, ki] {
    a->sensitive_frac_given = sf->count() > 0;
    a->lut_option_given = sens->count() + of->count() + sf->count() + ks->count() + ki->count() > 0;
    run_quantize(*a, g);
  });
}

}  // namespace razerq::app
