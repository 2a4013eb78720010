"""
Backbones: what is registered, and a CNN's layers
=================================================

ecgsoup runs several frozen ECG foundation models behind one API (see
:doc:`../backbones`). This page lists them, then runs an **untrained, tiny** ECGFounder-shaped
network (``random:ecgfounder-tiny``) on a few LUDB records to show what changes when a
backbone's layers differ in width. No downloaded weights are used, so the numbers below say
nothing about any model's quality; they show the mechanics.
"""

# %%
# The registered backbones
# ------------------------
# One row per registered model: how many layers it emits and how wide they are, its input
# contract, its licence, where to download the weights and whether they are already in
# ``$ECGSOUP_MODEL_HOME`` (the command ``ecgsoup models`` prints the same table).
import pandas as pd

import ecgsoup

table = ecgsoup.list_backbones()
with pd.option_context("display.width", 120, "display.max_colwidth", 40):
    print(table[["name", "family", "layers", "widths", "license", "present"]].to_string(index=False))

# %%
# A CNN's layers
# --------------
# ECGFounder is a convolutional network: a stem and seven stages of different widths, each
# pooled by a global average over time. Its input contract is 12 leads at 500 Hz, 10 s
# windows, z-scored over the whole window; the preprocessor resamples the 100 Hz LUDB
# records to it when given the same ``model``.
from ecgsoup import PPA, ECGPreprocessor, LayerSelector, LayerwiseEmbedder, load_sample

model = "random:ecgfounder-tiny"  # untrained, tiny geometry: for illustration only
sample = load_sample()[:8]
X = ECGPreprocessor(sampling_rate=sample.sampling_rate, lead_names=sample.lead_names,
                    model=model).fit_transform(sample.X)
embedder = LayerwiseEmbedder(model=model).fit(X)
print(embedder.contract_.describe())
print(embedder.layer_spec_)
print(pd.DataFrame([(layer.name, layer.width, layer.stream) for layer in embedder.layer_spec_.layers],
                   columns=["layer", "width", "stream"]).to_string(index=False))

# %%
# PPA averages layers, which only means something for layers of one width and one
# representation space, so it refuses these and names the alternative:
try:
    LayerwiseEmbedder(model=model, fusion=PPA()).fit(X)
except ValueError as error:
    print("ValueError:", error)

# %%
# The alternative: every layer side by side, each standardised and scaled to the same total
# variance, so that the widest stages do not drown the narrow ones. One stage alone
# (``LayerSelector(layers="stage5")``) works as for any backbone.
balanced = LayerwiseEmbedder(model=model, fusion=LayerSelector(layers="all", balance=True)).fit_transform(X)
print("all layers, balanced:", balanced.shape)
stage5 = LayerwiseEmbedder(model=model, fusion=LayerSelector(layers="stage5")).fit_transform(X)
print("stage5 alone:", stage5.shape)
