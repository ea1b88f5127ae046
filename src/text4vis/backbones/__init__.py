"""Backbone families beyond OpenAI's CLIP, behind `towers.load_towers` (the one entry point):

    families.py        open_clip families: SigLIP/SigLIP2, EVA-CLIP, MetaCLIP, DFN, MobileCLIP (build,
                       preprocessing, tokenizers, open_clip's local-dir folders)
    hf.py              Hugging Face transformers models (CLIPModel, SiglipModel, Siglip2Model, XCLIPModel)
    viclip.py          ViCLIP (InternVid), a video-native tower, from its published checkpoint format
    open_clip_lite.py  open_clip's model code without open_clip's package imports (start-up time)
"""
