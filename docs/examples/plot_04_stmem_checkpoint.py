"""
Loading your own ST-MEM checkpoint
==================================

The original ST-MEM release (Na et al., ICLR 2024) publishes its encoders as PyTorch
``.pth`` files, which ecgsoup cannot download for you. Once you have the file, you pass its
path wherever a model is accepted::

    from ecgsoup import LayerwiseEmbedder
    embedder = LayerwiseEmbedder(model="stmem:~/Downloads/st_mem_vit_base.pth")

(the original weights are licensed CC BY-NC 4.0, non-commercial use only; the
:doc:`../backbones` page lists every backbone, its licence and where its weights go).

**This page uses a stand-in.** No original ST-MEM weights are available where these
pages are built, so step 1 writes the bundled pretrained model in the original release's
file layout (its key names, ``encoder.`` prefix and ``{"model": ...}`` wrapper). Everything
after step 1 is what you run on your own downloaded file: replace ``path`` by its path.
"""

# %%
# 1. The stand-in file, in the original ST-MEM layout
# ---------------------------------------------------
# The key names of the original code (``to_patch_embedding.*``, ``block{i}.attn.fn.to_qkv``,
# ``lead_embeddings.{k}``, ...) mapped from ecgsoup's; the table is in the
# :doc:`../stmem-checkpoint` guide.
import tempfile
from pathlib import Path

import torch

from ecgsoup.backbones.stmem import load_model

bundled = load_model("default")  # the small model shipped with ecgsoup
ours = bundled.state_dict()
original = {
    "to_patch_embedding.1.weight": ours["patch_embedding.norm_in.weight"],
    "to_patch_embedding.1.bias": ours["patch_embedding.norm_in.bias"],
    "to_patch_embedding.2.weight": ours["patch_embedding.proj.weight"],
    "to_patch_embedding.2.bias": ours["patch_embedding.proj.bias"],
    "to_patch_embedding.3.weight": ours["patch_embedding.norm_out.weight"],
    "to_patch_embedding.3.bias": ours["patch_embedding.norm_out.bias"],
    "pos_embedding": ours["pos_embedding"],
    "sep_embedding": ours["sep_embedding"],
    "norm.weight": ours["norm.weight"],
    "norm.bias": ours["norm.bias"],
}
for k in range(bundled.config.n_leads):
    original[f"lead_embeddings.{k}"] = ours["lead_embeddings"][k]
renames = {"attn.norm": "attn_norm", "attn.fn.to_qkv": "qkv", "attn.fn.to_out.0": "proj",
           "ff.norm": "mlp_norm", "ff.fn.net.0": "fc1", "ff.fn.net.3": "fc2"}
for i in range(bundled.config.depth):
    for theirs, mine in renames.items():
        for p in ("weight", "bias"):
            original[f"block{i}.{theirs}.{p}"] = ours[f"blocks.{i}.{mine}.{p}"]
path = Path(tempfile.mkdtemp(prefix="ecgsoup-example-")) / "st_mem_standin.pth"
torch.save({"model": {f"encoder.{key}": value for key, value in original.items()}, "epoch": 45}, path)
print(path.name, f"{path.stat().st_size / 1e6:.1f} MB,", len(original), "tensors")

# %%
# 2. Load it
# ----------
# The file is read with ``torch.load(..., weights_only=True)`` (nothing in it is executed),
# unwrapped, and its architecture read off the tensor shapes. A state dict does not say its
# sampling rate: ecgsoup assumes the original release's 250 Hz only when the window is the
# original one (2,250 samples in patches of 75). This stand-in has 1,000-sample windows,
# which could be 10 s at 100 Hz or 4 s at 250 Hz, so ``load_model`` refuses to guess:
from ecgsoup.backbones.stmem import WeightsError

try:
    load_model(path)
except WeightsError as error:
    print("WeightsError:", error)

# %%
# Say what the file was trained on with :func:`~ecgsoup.backbones.stmem.load_stmem_checkpoint`
# (for the original release's files none of this is needed: ``load_model(path)`` gives
# 250 Hz, the standard lead order I, II, III, aVR, aVL, aVF, V1-V6 and its 0.67-40 Hz
# band-pass).
from ecgsoup.backbones.stmem import load_stmem_checkpoint

encoder = load_stmem_checkpoint(path, sampling_rate=100, lead_names=bundled.config.lead_names, bandpass=None)
print(encoder.config)
for note in encoder.metadata["notes"]:
    print("-", note)

# %%
# 3. Use it
# ---------
# Give the loaded encoder to both the preprocessor (so records are resampled, reordered and
# filtered to its contract) and the embedder. Here, on 20 real LUDB records, the stand-in
# must reproduce the bundled model exactly, which checks the round trip.
import numpy as np

from ecgsoup import ECGPreprocessor, LayerwiseEmbedder, load_sample

sample = load_sample()[:20]
X = ECGPreprocessor(sampling_rate=sample.sampling_rate, lead_names=sample.lead_names, model=encoder).fit_transform(sample.X)
embedder = LayerwiseEmbedder(model=encoder).fit(X)
from_file = embedder.transform(X)
reference = LayerwiseEmbedder(memory="ecgsoup-cache").fit_transform(X)
print("embeddings:", from_file.shape, "largest difference from the bundled model:",
      float(np.abs(from_file - reference).max()))

# %%
# To keep a converted copy in ecgsoup's own format (safetensors weights and a JSON file with
# the sampling rate, leads and sha256), so that later runs load it without any options:
from ecgsoup.backbones.stmem import save_model

saved = save_model(encoder, path.parent / "my-stmem", dtype="float32")
print(sorted(p.name for p in Path(saved).iterdir()))
print(load_model(path.parent / "my-stmem").config.sampling_rate, "Hz")

# %%
# 4. A first look at its layers
# -----------------------------
# The layer analyses take your checkpoint's embeddings like any others. How alike are its
# pooled layers on these records? For this model, neighbouring blocks are alike and the
# similarity falls with the distance between them; layer 0 (the token embedding, before any
# attention) is the least like the rest. Blocks that are nearly the same add little to a
# fusion; distant ones are where PPA and PMA have something to combine.
import matplotlib.pyplot as plt

from ecgsoup.analysis import layer_cosine_similarity

similarity = layer_cosine_similarity(from_file, layer_spec=embedder.layer_spec_)
fig, ax = plt.subplots(figsize=(5.5, 4.5))
image = ax.imshow(similarity, vmin=0, vmax=1, cmap="viridis")
ax.set_xticks(range(len(similarity)))
ax.set_yticks(range(len(similarity)))
ax.set_xlabel("layer (0 = token embedding)")
ax.set_ylabel("layer")
ax.set_title("Pooled layers of the loaded checkpoint,\ncosine similarity on 20 LUDB records", fontsize=10)
fig.colorbar(image, ax=ax, label="cosine similarity (1 = same direction)")
fig.tight_layout()
print("layer 0 against layer 1:", round(float(similarity[0, 1]), 3),
      "| layer 11 against layer 12:", round(float(similarity[11, 12]), 3))
