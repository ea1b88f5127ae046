"""Tiny random-weight models of the newer backbone families, built by their own libraries, offline.

  * a sentencepiece tokenizer trained here on a few sentences (SigLIP's tokenizer format: spiece.model,
    read by transformers' SiglipTokenizer), and CLIP's BPE tokenizer for transformers (vocab.json +
    merges.txt made from open_clip's own bpe_simple_vocab_16e6.txt.gz, as OpenAI's tokenizer files are);
  * open_clip families (open_clip's CLIP / CustomTextCLIP from a registered config): SigLIP and SigLIP2
    (timm's tiny `test_vit3`, a ViT with MAP pooling as SigLIP's, image tower; no causal mask, last-token
    pooling, projection bias in the text tower), EVA02 (timm's `eva02_tiny_patch14_224` image tower) and
    MetaCLIP (OpenAI's architecture with QuickGELU and MetaCLIP's tag preprocessing);
    each saved as a state-dict file (for `MODEL:/path`) and as an open_clip folder (`local-dir:`);
  * transformers CLIPModel, SiglipModel, Siglip2Model and XCLIPModel from tiny XxxConfig(...) + save_pretrained.
Nothing touches the network or a Hub cache.
"""
from __future__ import annotations

import copy
import gzip
import json
import os

import torch

SENTENCES = ["a video of a person {}.", "a photo of a {}.", "people dancing and cooking in the kitchen",
             "arm wrestling on a table", "a dog runs in the park", "playing cricket and basketball outside",
             "cleaning the pool", "flipping a pancake", "red green blue circle square moving left right",
             "the quick brown fox jumps over the lazy dog"]


def spm_tokenizer_dir(folder: str) -> str:
    """A SigLIP tokenizer folder (SiglipTokenizer over a sentencepiece unigram model of 200 pieces)."""
    import sentencepiece as spm
    from transformers import SiglipTokenizer
    os.makedirs(folder, exist_ok=True)
    corpus = os.path.join(folder, "corpus.txt")
    with open(corpus, "w") as f:
        for _ in range(20):
            f.write("\n".join(s.replace("{}", "thing") for s in SENTENCES) + "\n")
    prefix = os.path.join(folder, "sp")
    spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, vocab_size=120, model_type="unigram",
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
                                   hard_vocab_limit=False)
    out = os.path.join(folder, "tok")
    SiglipTokenizer(vocab_file=prefix + ".model", model_max_length=32).save_pretrained(out)
    return out


def clip_bpe_dir(folder: str) -> str:
    """CLIP's tokenizer for transformers (vocab.json, merges.txt) from open_clip's packaged BPE file."""
    import open_clip
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer
    path = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    merges = gzip.open(path).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(vocab)}, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    out = os.path.join(folder, "tok")
    CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")).save_pretrained(out)
    return out


def gemma_tokenizer(folder: str) -> str:
    """SigLIP2's tokenizer class (Siglip2Tokenizer, Gemma's byte-fallback BPE) over a character vocabulary."""
    from transformers import Siglip2Tokenizer
    chars = sorted(set("".join(SENTENCES).replace(" ", "")) | set("abcdefghijklmnopqrstuvwxyz.,_-'"))
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, "\u2581": 5}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    Siglip2Tokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------- open_clip families

def _siglip_text(vocab: int, tok_dir: str, gelu_tanh: bool = False) -> dict:
    cfg = dict(context_length=32, vocab_size=vocab, hf_tokenizer_name=tok_dir, tokenizer_kwargs={"clean": "canonicalize"},
               width=96, heads=2, layers=1, no_causal_mask=True, proj_bias=True, pool_type="last",
               norm_kwargs={"eps": 1e-6})
    if gelu_tanh:
        cfg["act_kwargs"] = {"approximate": "tanh"}
    return cfg


def open_clip_configs(spm_dir: str) -> dict[str, tuple[dict, dict]]:
    """name -> (open_clip model config, preprocess config) of each tiny family model."""
    import open_clip
    vision = dict(image_size=160, timm_model_name="test_vit3", timm_model_pretrained=False, timm_pool="map",
                  timm_proj="none")
    siglip_pre = dict(open_clip.get_pretrained_cfg("ViT-B-16-SigLIP", "webli"))
    metaclip_pre = dict(open_clip.get_pretrained_cfg("ViT-B-16-quickgelu", "metaclip_fullcc"))
    eva_pre = dict(open_clip.get_pretrained_cfg("EVA02-B-16", "merged2b_s8b_b131k"))
    keep = ("mean", "std", "interpolation", "resize_mode")
    return {
        "tiny-SigLIP": (dict(embed_dim=96, init_logit_bias=-10, custom_text=True, vision_cfg=dict(vision),
                             text_cfg=_siglip_text(128, spm_dir)), {k: siglip_pre[k] for k in keep if k in siglip_pre}),
        "tiny-SigLIP2": (dict(embed_dim=96, init_logit_bias=-10, custom_text=True, vision_cfg=dict(vision),
                              text_cfg=_siglip_text(128, spm_dir, gelu_tanh=True)),
                         {k: siglip_pre[k] for k in keep if k in siglip_pre}),
        "tiny-EVA02": (dict(embed_dim=64, custom_text=True,
                            vision_cfg=dict(image_size=224, timm_model_name="eva02_tiny_patch14_224",
                                            timm_model_pretrained=False, timm_pool="token", timm_proj="linear"),
                            text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=1)),
                       {k: eva_pre[k] for k in keep if k in eva_pre}),
        "tiny-MetaCLIP": (dict(embed_dim=64, quick_gelu=True,
                               vision_cfg=dict(layers=2, width=64, patch_size=8, image_size=32),
                               text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=1)),
                          {k: metaclip_pre[k] for k in keep if k in metaclip_pre}),
    }


def open_clip_family(name: str, cfg: dict, pre: dict, folder: str, seed: int = 0) -> dict:
    """Register `name`, build it with open_clip.create_model (random weights, seeded; SigLIP's logit bias
    set to a non-default value), save it as a state-dict file and as an open_clip local-dir folder.
    Returns {"model", "file", "dir", "tokenizer"} (the open_clip model and tokenizer are the reference)."""
    import open_clip
    import shutil
    from safetensors.torch import save_file
    os.makedirs(folder, exist_ok=True)
    cfg_path = os.path.join(folder, f"{name}.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    open_clip.add_model_config(cfg_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None).float().eval()
    with torch.no_grad():
        model.logit_scale.fill_(2.5)
        if getattr(model, "logit_bias", None) is not None:
            model.logit_bias.fill_(-3.0)
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if k != "attn_mask"}
    file = os.path.join(folder, f"{name}.safetensors")
    save_file(sd, file)
    local = os.path.join(folder, f"{name}-dir")
    os.makedirs(local, exist_ok=True)
    save_file(sd, os.path.join(local, "open_clip_model.safetensors"))
    stored = copy.deepcopy(cfg)
    tok_dir = cfg["text_cfg"].get("hf_tokenizer_name")
    if tok_dir:  # open_clip's hub layout: the tokenizer's files beside the weights
        for n in os.listdir(tok_dir):
            shutil.copy(os.path.join(tok_dir, n), local)
        stored["text_cfg"]["hf_tokenizer_name"] = ""
    with open(os.path.join(local, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": stored, "preprocess_cfg": pre}, f)
    return {"model": model, "file": file, "dir": local, "tokenizer": open_clip.get_tokenizer(name), "pre": pre}


# ----------------------------------------------------------------------------- transformers

def hf_models(folder: str, spm_dir: str, bpe_dir: str) -> dict[str, str]:
    """Tiny transformers CLIPModel / SiglipModel / Siglip2Model folders (save_pretrained, with tokenizer and
    preprocessor config): kind -> folder."""
    from transformers import (AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel, Siglip2Config,
                              Siglip2Model, SiglipConfig, SiglipImageProcessor, SiglipModel, XCLIPConfig, XCLIPModel)
    out = {}
    torch.manual_seed(0)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    clip = CLIPModel(CLIPConfig(text_config=dict(small, vocab_size=49408, max_position_embeddings=77,
                                                 eos_token_id=49407),
                                vision_config=dict(small, image_size=32, patch_size=8), projection_dim=24))
    siglip = SiglipModel(SiglipConfig(text_config=dict(small, vocab_size=128, max_position_embeddings=32),
                                      vision_config=dict(small, image_size=32, patch_size=8)))
    siglip2 = Siglip2Model(Siglip2Config(text_config=dict(small, vocab_size=128, max_position_embeddings=64),
                                         vision_config=dict(small, num_patches=16, patch_size=8)))
    xclip = XCLIPModel(XCLIPConfig(text_config=dict(small, vocab_size=49408, max_position_embeddings=77,
                                                    eos_token_id=49407),
                                   vision_config=dict(small, image_size=32, patch_size=8, num_frames=2,
                                                      mit_hidden_size=24, mit_intermediate_size=48,
                                                      mit_num_hidden_layers=1, mit_num_attention_heads=2),
                                   projection_dim=24, prompt_layers=1, prompt_num_attention_heads=2))
    for kind, model, tok, proc in (
            ("xclip", xclip, bpe_dir, CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})),
            ("clip", clip, bpe_dir, CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})),
            ("siglip", siglip, spm_dir, SiglipImageProcessor(size={"height": 32, "width": 32})),
            ("siglip2", siglip2, gemma_tokenizer(os.path.join(folder, "gemma")), None)):
        with torch.no_grad():
            model.logit_scale.fill_(2.5)
            if getattr(model, "logit_bias", None) is not None:
                model.logit_bias.fill_(-3.0)
        d = os.path.join(folder, kind)
        model.eval().save_pretrained(d)
        AutoTokenizer.from_pretrained(tok).save_pretrained(d)
        if proc is not None:
            proc.save_pretrained(d)
        out[kind] = d
    return out


# ----------------------------------------------------------------------------- ViCLIP (published layout)

VICLIP_TINY = dict(embed_dim=32, quick_gelu=True,
                   vision_cfg=dict(layers=2, width=64, patch_size=8, image_size=32),
                   text_cfg=dict(context_length=32, vocab_size=49408, width=64, heads=1, layers=1))


def viclip_checkpoint(path: str, num_frames: int = 2, seed: int = 0, temporal: bool = True) -> dict:
    """A ViCLIP checkpoint as InternVid publishes it (torch.save({"model": state dict}), vision_encoder.* with a
    (1, p, p) 3-D patch embedding and a temporal embedding [1, T, width], text_encoder.* with a 32-token
    context, temp), its towers' weights drawn by open_clip's CLIP of the same sizes (QuickGELU).
    Returns {"path", "open_clip"}: the open_clip model holding the same weights is the reference for one frame."""
    from open_clip.model import CLIP
    torch.manual_seed(seed)
    ref = CLIP(**copy.deepcopy(VICLIP_TINY)).float().eval()
    sd = {}
    for k, v in ref.state_dict().items():
        if k.startswith("visual."):
            name = "vision_encoder." + k[len("visual."):]
            sd[name] = v.unsqueeze(2).clone() if k == "visual.conv1.weight" else v.clone()
        elif k not in ("logit_scale", "attn_mask"):
            sd["text_encoder." + k] = v.clone()
    width = VICLIP_TINY["vision_cfg"]["width"]
    sd["vision_encoder.temporal_positional_embedding"] = (torch.randn(1, num_frames, width) * 0.5 if temporal
                                                          else torch.zeros(1, num_frames, width))
    sd["temp"] = torch.tensor(1 / 100.0)
    torch.save({"model": sd}, path)
    return {"path": path, "open_clip": ref}
