"""PMA: ECG-Soup's Post-pretraining Mixture-of-layers Aggregation, as sklearn estimators.

A small gating network looks at ``h_0`` (the pooled token embedding) and
returns, per record, softmax weights over the block outputs ``h_1..h_L``; the
fused vector is ``z = LN_enc(sum_l w_l h_l)`` and a head classifies it::

    w = softmax(gate(h_0)),   z = LN_enc(sum_{l=1..L} w_l h_l),   y_hat = head(z)

Two faces of the same trained network:

* :class:`PMAClassifier` is the whole model (gate + head), a classifier for
  binary, multiclass and multi-label targets.
* :class:`PMA` is a transformer that needs ``y`` in ``fit`` (it trains the gate
  with a head on ``y``) and whose ``transform`` emits the fused vector ``z``,
  for any downstream sklearn classifier.

Both read layer-wise embeddings through a :class:`~ecgsoup.layers.LayerSpec`
(set for them when they are the embedder's ``fusion``), whose readout is
applied to the fused vector.  Torch
is an implementation detail: inputs and outputs are numpy / pandas.

Design choices (where the ECG-Soup definition leaves room):

* **Gate width scales with dim.**  The ECG-Soup PMA definition gives
  ``LayerNorm(768) -> Linear(768, 256) -> GELU -> Dropout(0.1) -> Linear(256,
  128) -> GELU -> Dropout(0.1) -> Linear(128, L)`` for ViT-B.  Here the hidden widths are
  ``max(8, round(dim / 3))`` and ``max(4, round(dim / 6))``, which is exactly
  256 and 128 at dim 768 (64 and 32 for the tiny model).
* **The gate is trained** together with the head (as the paper's description
  of a gate that selectively fuses the layers implies; the authors' code
  leaves it at its random initialisation during linear probing).
  ``train_gate=False`` reproduces that code path.
* **Standardisation.**  The gate input ``h_0`` is standardised per feature
  with training statistics before the gate's own LayerNorm: pooled ``h_0`` is
  dominated by the position and lead embeddings, which are the same for every
  record, so without it the gate sees nearly constant input.  The fused
  vector ``z`` is standardised per feature (statistics of ``z`` under the
  initial gate on the training set) before the head; for the linear head this
  only reconditions the optimisation, and the MLP head starts with BatchNorm
  anyway.  ``PMA.transform`` returns the unstandardised ``z``.
* **Training**: AdamW (ECG-Soup's linear-probing settings: lr 1e-3, weight
  decay 0.05, batch 64), optional early stopping on the loss of a held-out
  ``validation_fraction`` (the best epoch's weights are restored).  Binary targets use one logit and
  BCE, multi-label BCE per label, multiclass cross-entropy.
"""

from __future__ import annotations

import copy
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn
from torch.nn import functional as F

from ecgsoup._fusion_base import SPEC_CONSTRAINT, fusion_names, same_stream, spec_for
from ecgsoup._sklearn_compat import Interval, StrOptions, check_feature_names_in
from ecgsoup.hardware import check_device
from ecgsoup.layers import resolve_layers

__all__ = ["PMA", "PMAClassifier", "MIN_VALIDATION_SAMPLES", "EarlyStopping"]

#: Smallest hold-out for early stopping; below it early stopping is turned off with a warning.
MIN_VALIDATION_SAMPLES = 20


class EarlyStopping:
    """When training stops, and which epoch's weights it keeps (PMA and the MLP head alike).

    An epoch improves when its monitored loss is below the best so far by more than
    ``tol``; after ``patience`` epochs without improvement training stops (when
    ``enabled``).  With ``keep_best`` (a held-out loss is monitored) the best epoch's
    weights are copied and put back at the end.
    """

    def __init__(self, tol: float, patience: int, enabled: bool, *, keep_best: bool):
        self.tol, self.patience, self.enabled, self.keep_best = tol, patience, enabled, keep_best
        self.best_loss, self.best_state, self.stall = np.inf, None, 0

    def stop(self, monitored: float, net) -> bool:
        """Record one epoch's monitored loss; True when training should stop."""
        if monitored < self.best_loss - self.tol:
            self.best_loss, self.stall = monitored, 0
            if self.keep_best:
                self.best_state = copy.deepcopy(net.state_dict())
            return False
        self.stall += 1
        return self.enabled and self.stall >= self.patience

    def restore(self, net) -> None:
        """Put the best epoch's weights back (when they were kept)."""
        if self.best_state is not None:
            net.load_state_dict(self.best_state)


# -- the torch network ----------------------------------------------------------------------
def _gate_widths(dim: int) -> tuple[int, int]:
    """Hidden widths of the gate: 256 and 128 at dim 768 (as in ECG-Soup), scaled with dim."""
    return max(8, round(dim / 3)), max(4, round(dim / 6))


class _GateHeadNet(nn.Module):
    """Gate on h_0, softmax over blocks 1..L, final norm, standardisation, head."""

    def __init__(self, dim: int, n_blocks: int, n_outputs: int, head: str, hidden: int,
                 gate_dim: int | None = None, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        gate_dim = gate_dim or dim
        width1, width2 = _gate_widths(gate_dim)
        self.gate = nn.Sequential(
            nn.LayerNorm(gate_dim),
            nn.Linear(gate_dim, width1),
            nn.GELU(),
            nn.Dropout(0.1),
            nn.Linear(width1, width2),
            nn.GELU(),
            nn.Dropout(0.1),
            nn.Linear(width2, n_blocks),
        )
        if head == "linear":
            self.head = nn.Linear(dim, n_outputs)
        else:  # ECG-Soup's MLP head: fastai-style BatchNorm, Dropout, Linear
            self.head = nn.Sequential(
                nn.BatchNorm1d(dim),
                nn.Dropout(0.25),
                nn.Linear(dim, hidden),
                nn.ReLU(),
                nn.BatchNorm1d(hidden),
                nn.Dropout(0.5),
                nn.Linear(hidden, n_outputs),
            )
        self.register_buffer("h0_mean", torch.zeros(gate_dim))
        self.register_buffer("z_mean", torch.zeros(dim))
        self.register_buffer("h0_scale", torch.ones(gate_dim))
        self.register_buffer("z_scale", torch.ones(dim))

    def weights(self, h0):
        return torch.softmax(self.gate((h0 - self.h0_mean) / self.h0_scale), dim=-1)

    def fuse(self, h0, blocks, norm_weight, norm_bias):
        w = self.weights(h0)
        z = (w.unsqueeze(-1) * blocks).sum(dim=1)
        if norm_weight is not None:
            z = F.layer_norm(z, z.shape[-1:], eps=self.eps) * norm_weight + norm_bias
        return z, w

    def forward(self, h0, blocks, norm_weight, norm_bias):
        z, _ = self.fuse(h0, blocks, norm_weight, norm_bias)
        return self.head((z - self.z_mean) / self.z_scale)


def _scale(values: torch.Tensor) -> torch.Tensor:
    """Per-feature std with a floor, so constant features are left unscaled."""
    std = values.std(dim=0, unbiased=False)
    return torch.where(std > 1e-6 * (1.0 + std.max()), std, torch.ones_like(std))


# -- the estimators -----------------------------------------------------------------------
class _PMABase(BaseEstimator):
    """Parameters, validation and the training loop shared by PMA and PMAClassifier."""

    _parameter_constraints = {
        "head": [StrOptions({"linear", "mlp"})],
        "hidden": [Interval(Integral, 1, None, closed="left")],
        "train_gate": ["boolean"],
        "layers": [str, "array-like", slice],
        "layer_spec": SPEC_CONSTRAINT,
        "n_layers": [Interval(Integral, 2, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "device": [str],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        head="linear",
        hidden=256,
        train_gate=True,
        layers="blocks",
        layer_spec=None,
        n_layers=13,
        max_iter=200,
        learning_rate_init=1e-3,
        weight_decay=0.05,
        batch_size=64,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        random_state=None,
        device="cpu",
        verbose=0,
    ):
        self.head = head
        self.hidden = hidden
        self.train_gate = train_gate
        self.layers = layers
        self.layer_spec = layer_spec
        self.n_layers = n_layers
        self.max_iter = max_iter
        self.learning_rate_init = learning_rate_init
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # -- input handling -------------------------------------------------------------------
    def _tensors(self, X: np.ndarray, device: torch.device, dtype=np.float32):
        """h_0, the mixed layers, and the readout's LayerNorm parameters, as tensors of ``dtype``."""
        spec = self.layer_spec_
        readout = spec.readout
        weight = bias = None
        if readout.kind == "layernorm":
            weight, bias = readout.weight, readout.bias

        def as_tensor(a):
            # np.array copies: loky hands over read-only memmaps, which torch warns about.
            return None if a is None else torch.from_numpy(np.array(a, dtype=dtype)).to(device)

        h0 = as_tensor(spec.block(X, 0))
        blocks = as_tensor(spec.stack(X, self.layers_))
        if readout.kind == "layernorm" and weight is None:  # a LayerNorm without affine parameters
            weight, bias = np.ones(blocks.shape[-1]), np.zeros(blocks.shape[-1])
        return h0, blocks, as_tensor(weight), as_tensor(bias)

    def _encode_targets(self, y):
        """Targets as a float/long tensor-ready array, plus the loss kind."""
        target_type = type_of_target(y, input_name="y")
        if target_type == "multilabel-indicator":
            self.classes_ = np.arange(y.shape[1])
            self._label_dtype = y.dtype
            if y.shape[1] < 1:
                raise ValueError("y has no label columns.")
            return np.asarray(y, dtype=np.float32), "multilabel", y.shape[1]
        if y.ndim == 2:
            if y.shape[1] != 1:
                raise ValueError(
                    f"y has {y.shape[1]} columns but is not a 0/1 indicator matrix; pass one "
                    "label per sample, or a binary indicator matrix for multi-label targets."
                )
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected; it is raveled.",
                DataConversionWarning,
                stacklevel=3,
            )
            y = y.ravel()
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 classes in y to train the gate; "
                f"got 1 class ({self.classes_[0]!r})."
            )
        codes = encoder.transform(y)
        if len(self.classes_) == 2:
            return codes.astype(np.float32)[:, None], "binary", 1
        return codes.astype(np.int64), "multiclass", len(self.classes_)

    # -- training -----------------------------------------------------------------------------
    def _fit_network(self, X, y) -> None:
        self._validate_params()
        X, y = validate_data(self, X, y, multi_output=True, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.layer_spec_ = spec = spec_for(self, X)
        self.layers_ = resolve_layers(self.layers, len(spec.layers), [layer.name for layer in spec.layers])
        same_stream(self, spec, self.layers_)
        self.dim_ = spec.layers[self.layers_[0]].width
        targets, self._task, n_outputs = self._encode_targets(y)
        device = check_device(self.device)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        h0, blocks, norm_w, norm_b = self._tensors(X, device)
        targets = torch.from_numpy(targets).to(device)

        fork_devices = [device.index or 0] if device.type == "cuda" else []
        # All randomness (init, dropout, shuffling) comes from a seeded fork of the
        # torch RNG, so fitting never changes the caller's global torch stream.
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            net = _GateHeadNet(self.dim_, len(self.layers_), n_outputs, self.head, self.hidden,
                               gate_dim=spec.layers[0].width, eps=spec.readout.eps)
            net.to(device)
            with torch.no_grad():
                net.h0_mean.copy_(h0.mean(dim=0))
                net.h0_scale.copy_(_scale(h0))
                net.eval()
                z, _ = net.fuse(h0, blocks, norm_w, norm_b)
                net.z_mean.copy_(z.mean(dim=0))
                net.z_scale.copy_(_scale(z))
            head_before = [p.detach().clone() for p in net.head.parameters()]
            self._train(net, (h0, blocks, norm_w, norm_b), targets, seed)
        net.eval()
        with torch.no_grad():
            weights = net.weights(h0).cpu().numpy().astype(np.float64)
            moved = sum(float((p - q).norm() ** 2) for p, q in zip(net.head.parameters(), head_before)) ** 0.5
            size = sum(float(q.norm() ** 2) for q in head_before) ** 0.5
        # Predictions run in float64: float32 matrix kernels (oneDNN on CPUs
        # with AMX, for one) choose their blocking by the number of rows, so a
        # sample's float32 output would change in the 7th digit with the number
        # of samples predicted alongside it.  In float64 that dependence is far
        # below float32 precision: a sample gets the same prediction alone or
        # in any batch.  The network is converted once, here.
        self.network_ = net.double()
        self._warn_if_untrained(weights, moved / max(size, 1e-12))
        index = pd.Index([spec.layers[p].name for p in self.layers_], name="layer")
        self.gate_weights_ = pd.DataFrame(
            {"mean": weights.mean(axis=0), "std": weights.std(axis=0)}, index=index
        )

    def _warn_if_untrained(self, weights: np.ndarray, head_change: float) -> None:
        """Say so when training left the head (or a trained gate) where it started."""
        if head_change < 1e-3:
            warnings.warn(
                f"{type(self).__name__}: the head barely moved from its initialisation (relative change "
                f"{head_change:.1e} after {self.n_iter_} epochs); its predictions are close to chance. "
                "Raise max_iter or learning_rate_init, or check the labels.",
                UserWarning,
                stacklevel=4,
            )
        uniform = 1.0 / weights.shape[1]
        if self.train_gate and weights.shape[1] > 1 and np.abs(weights - uniform).max() < 0.05:
            warnings.warn(
                f"{type(self).__name__}: the gate stayed uniform (every layer weight within 0.05 of "
                f"1/{weights.shape[1]} on every record), so this is PPA with extra parameters; "
                "train longer (max_iter) or use PPA.",
                UserWarning,
                stacklevel=4,
            )

    def _loss(self, logits, targets):
        if self._task == "multiclass":
            return F.cross_entropy(logits, targets)
        return F.binary_cross_entropy_with_logits(logits, targets)

    def _split(self, n: int, seed: int):
        """Training and validation indices for early stopping (no validation when too small)."""
        n_val = int(round(self.validation_fraction * n))
        if not self.early_stopping:
            return np.arange(n), None
        if n_val < MIN_VALIDATION_SAMPLES or n - n_val < 2:
            warnings.warn(
                f"early_stopping would hold out {n_val} of {n} records (validation_fraction="
                f"{self.validation_fraction:g}); at least {MIN_VALIDATION_SAMPLES} are needed for the "
                "held-out loss to mean anything, so early stopping is off and all records train "
                f"for up to max_iter={self.max_iter} epochs. Pass early_stopping=False to silence this.",
                UserWarning,
                stacklevel=4,
            )
            return np.arange(n), None
        order = np.random.RandomState(seed).permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def _train(self, net, inputs, targets, seed):
        train_idx, val_idx = self._split(len(targets), seed)
        params = list(net.head.parameters())
        if self.train_gate:
            params += list(net.gate.parameters())
        else:  # the authors' linear-probing code path: the gate keeps its random init
            net.gate.requires_grad_(False)
        optimizer = torch.optim.AdamW(params, lr=self.learning_rate_init, weight_decay=self.weight_decay)
        # BatchNorm cannot train on a batch of one; such a trailing batch is skipped.
        min_batch = 2 if self.head == "mlp" else 1

        def take(idx):
            idx = torch.as_tensor(idx, device=targets.device)
            # h_0 and the blocks are per record; the readout's LayerNorm parameters are not.
            h0, blocks, *readout = inputs
            return [h0[idx], blocks[idx], *readout], targets[idx]

        self.loss_curve_, self.validation_loss_curve_ = [], []
        stopper = EarlyStopping(self.tol, self.n_iter_no_change, self.early_stopping, keep_best=val_idx is not None)
        train_idx_t = torch.as_tensor(train_idx)
        for epoch in range(self.max_iter):
            net.train()
            order = train_idx_t[torch.randperm(len(train_idx_t))]
            total, count = 0.0, 0
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                if len(batch) < min_batch:
                    continue
                batch_inputs, batch_targets = take(batch)
                optimizer.zero_grad()
                loss = self._loss(net(*batch_inputs), batch_targets)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
                count += len(batch)
            self.loss_curve_.append(total / max(count, 1))
            self.n_iter_ = epoch + 1
            monitored = self.loss_curve_[-1]
            if val_idx is not None:
                net.eval()
                with torch.no_grad():
                    val_inputs, val_targets = take(val_idx)
                    monitored = float(self._loss(net(*val_inputs), val_targets))
                self.validation_loss_curve_.append(monitored)
            if self.verbose:
                print(
                    f"epoch {epoch + 1}: train loss {self.loss_curve_[-1]:.4f}, "
                    f"monitored loss {monitored:.4f}"
                )
            if stopper.stop(monitored, net):
                break
        stopper.restore(net)

    # -- inference ------------------------------------------------------------------------
    def _validated(self, X):
        check_is_fitted(self)
        return validate_data(self, X, dtype=[np.float64, np.float32], reset=False)

    def _logits(self, X) -> np.ndarray:
        X = self._validated(X)
        network = self.network_
        device = next(network.parameters()).device
        with torch.no_grad():
            logits = network(*self._tensors(X, device, np.float64))
        return logits.cpu().numpy()

    def gate_weights(self, X):
        """Per-sample gate weights over the blocks.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Layer-wise embeddings of the model seen in ``fit``.

        Returns
        -------
        weights : ndarray of shape (n_samples, len(layers_))
            Column ``j`` is the weight of layer ``layers_[j]``; rows sum to 1.
        """
        return self._gate_weights_of(self._validated(X))

    def _gate_weights_of(self, X: np.ndarray) -> np.ndarray:
        """Gate weights of an already validated ``X``."""
        network = self.network_
        device = next(network.parameters()).device
        h0 = self._tensors(X, device, np.float64)[0]
        with torch.no_grad():
            return network.weights(h0).cpu().numpy()


_PARAMETERS_DOC = """
    Parameters
    ----------
    head : {"linear", "mlp"}, default="linear"
        ``"linear"``: one linear layer on the (standardised) fused vector.
        ``"mlp"``: the ECG-Soup classification head, BatchNorm -> Dropout(0.25) -> Linear(dim,
        hidden) -> ReLU -> BatchNorm -> Dropout(0.5) -> Linear(hidden, n_outputs).
    hidden : int, default=256
        Hidden width of the ``"mlp"`` head.
    train_gate : bool, default=True
        Train the gate with the head.  ``False`` keeps the gate at its random
        initialisation, which only reproduces the authors' linear-probing code.
    layers : str, list or slice, default="blocks"
        Layers the gate mixes (``"blocks"``: 1..L); they must share one
        representation space.  The gate reads layer 0 whatever its width.
    layer_spec : LayerSpec or None, default=None
        What the columns of X are; set by :class:`~ecgsoup.LayerwiseEmbedder`
        when PMA is its ``fusion``.  Its readout (ST-MEM's final LayerNorm)
        is applied to the fused vector.  ``None``: ``n_layers`` equal raw
        blocks and no readout.
    n_layers : int, default=13
        Number of equal blocks in X when ``layer_spec`` is None; at least 2.
    max_iter : int, default=200
        Maximum number of passes over the training data (epochs), as in
        sklearn's ``MLPClassifier``.
    learning_rate_init : float, default=1e-3
        AdamW learning rate, constant (the ECG-Soup linear-probing setting).
    weight_decay : float, default=0.05
        AdamW weight decay (the ECG-Soup linear-probing setting).
    batch_size : int, default=64
        Minibatch size.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the samples, stop when its loss
        has not improved by ``tol`` for ``n_iter_no_change`` epochs, and
        restore the best epoch.  When ``False`` (sklearn's default) the
        training loss is watched instead and the last epoch is kept.  A
        hold-out smaller than 20 records would pick an almost untrained
        epoch by chance, so early stopping is then turned off with a warning.
    validation_fraction : float, default=0.1
        Share of samples held out for early stopping.
    n_iter_no_change : int, default=10
        Patience of early stopping, in epochs.
    tol : float, default=1e-4
        Minimal loss improvement that resets the patience.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, dropout, shuffling and the validation split.
        Only a forked torch RNG is used; the global torch state is untouched.
    device : str, default="cpu"
        Torch device to train on, e.g. ``"cuda"``.  Inputs and outputs stay numpy.
    verbose : int, default=0
        Print one line per epoch when positive.
"""

_ATTRIBUTES_DOC = """
    classes_ : ndarray
        Class labels (for multi-label ``y``, the column indices ``0..C-1``).
    gate_weights_ : pandas.DataFrame
        Mean and std of the gate weight of each layer (index ``layer01`` ..)
        over the training samples.
    n_iter_ : int
        Number of epochs run.
    loss_curve_ : list of float
        Mean training loss per epoch.
    validation_loss_curve_ : list of float
        Held-out loss per epoch (empty without early stopping).
    layers_ : tuple of int
        The mixed layers, as positions in the input.
    layer_spec_ : LayerSpec
        The specification used.
    dim_ : int
        Width of the mixed layers and of the fused vector.
    network_ : torch.nn.Module
        The trained gate and head, in float64 (predictions run in float64 so
        that a sample's output does not depend on the batch it is in), on
        ``device``, in eval mode.
    n_features_in_ : int
        Number of input columns.
    feature_names_in_ : ndarray of str
        Input column names, when ``X`` had string column names.
"""


class PMAClassifier(ClassifierMixin, _PMABase):
    __doc__ = (
        """Gate-weighted mixture of layers plus a head, trained end to end (ECG-Soup's PMA).

    ``w = softmax(gate(h_0))``, ``z = LN_enc(sum_{l>=1} w_l h_l)``,
    ``y_hat = head(z)``.  Works on binary, multiclass (cross-entropy) and
    multi-label indicator targets (BCE per label).  See :mod:`ecgsoup.pma`
    for the design choices (gate width, standardisation, training).
"""
        + _PARAMETERS_DOC
        + """
    Attributes
    ----------"""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    PMA : The same gate as a transformer emitting the fused vector.
    ecgsoup.fusion.PPA : Uniform, parameter-free mixture.

    Examples
    --------
    >>> from ecgsoup import ECGPreprocessor, LayerwiseEmbedder, PMAClassifier, load_sample
    >>> ds = load_sample()                      # 200 real LUDB recordings with labels
    >>> X = ECGPreprocessor(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names).fit_transform(ds.X)
    >>> H = LayerwiseEmbedder().fit_transform(X)
    >>> y = (ds.metadata["rhythm_primary"] == "Atrial fibrillation").astype(int)   # 15 of 200
    >>> clf = PMAClassifier(max_iter=20, random_state=0).fit(H, y)
    >>> clf.predict_proba(H).shape, len(clf.gate_weights_)      # one weight per block 1..12
    ((200, 2), 12)
"""
    )

    def fit(self, X, y):
        """Train gate and head.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Layer-wise embeddings (described by ``layer_spec``).
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a 0/1 indicator matrix for multi-label targets.

        Returns
        -------
        self : PMAClassifier
        """
        self._fit_network(X, y)
        return self

    def decision_function(self, X):
        """Logits: ``(n_samples,)`` for binary targets, else ``(n_samples, n_classes)``."""
        logits = self._logits(X)
        return logits[:, 0] if self._task == "binary" else logits

    def predict_proba(self, X):
        """Class probabilities, ``(n_samples, n_classes)``.

        For multi-label targets, column ``k`` is the probability that label ``k`` is present.
        """
        logits = self._logits(X)
        if self._task == "binary":
            positive = expit(logits[:, 0])
            return np.column_stack([1.0 - positive, positive])
        if self._task == "multiclass":
            return softmax(logits, axis=1)
        return expit(logits)

    def predict(self, X):
        """Predicted class labels (an indicator matrix for multi-label targets)."""
        proba = self.predict_proba(X)
        if self._task == "multilabel":
            return (proba > 0.5).astype(self._label_dtype)
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        tags.non_deterministic = False
        return tags


class PMA(TransformerMixin, _PMABase):
    __doc__ = (
        """Fused vector of a trained layer mixture: ``z = LN_enc(sum_{l>=1} w_l h_l)`` (ECG-Soup's PMA).

    ``fit(X, y)`` trains the gate (with a head, as :class:`PMAClassifier` does)
    on classification targets; ``transform`` returns the fused vector, for any
    downstream sklearn estimator.  The head is only a training device.
"""
        + _PARAMETERS_DOC
        + """
    Attributes
    ----------"""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    PMAClassifier : Gate and head as one classifier.
    ecgsoup.fusion.PPA : Uniform, parameter-free mixture.

    Examples
    --------
    >>> from ecgsoup import PMA, ECGPreprocessor, LayerwiseEmbedder, load_sample
    >>> ds = load_sample()
    >>> X = ECGPreprocessor(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names).fit_transform(ds.X)
    >>> H = LayerwiseEmbedder().fit_transform(X)
    >>> y = (ds.metadata["rhythm_primary"] != "Sinus rhythm").astype(int)
    >>> PMA(max_iter=20, random_state=0).fit_transform(H, y).shape    # the fused 192-wide vector
    (200, 192)
"""
    )

    def fit(self, X, y):
        """Train the gate on ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Layer-wise embeddings (described by ``layer_spec``).
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a 0/1 indicator matrix; the gate is trained to
            predict them.

        Returns
        -------
        self : PMA
        """
        self._fit_network(X, y)
        return self

    def transform(self, X):
        """Fused vector per sample, ``(n_samples, dim_)``, in the input's dtype."""
        X = self._validated(X)
        weights = self._gate_weights_of(X)
        blocks = self.layer_spec_.stack(X, self.layers_)
        fused = np.einsum("nl,nld->nd", weights.astype(X.dtype), blocks)
        return self.layer_spec_.readout(fused)

    def get_feature_names_out(self, input_features=None):
        """Names ``pma_dim0000``, ``pma_dim0001``, ..."""
        check_is_fitted(self)
        check_feature_names_in(self, input_features)
        return fusion_names("pma", self.dim_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
