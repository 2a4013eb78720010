"""``ECGPreprocessor``: bring ECG arrays into the model's input contract.

The model's config (:func:`ecgsoup.backbones.stmem.load_config`) says which leads it
expects, in which order, at which sampling rate and over how many samples.
The preprocessor matches the data's leads to those **by name**, resamples,
optionally band-passes, checks or fixes the length, and emits the flat,
lead-major array that :class:`ecgsoup.embedding.LayerwiseEmbedder` consumes.  It learns nothing from the data: ``fit`` only
validates the parameters against the input's shape.
"""

from __future__ import annotations

import logging
import os
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ecgsoup._sklearn_compat import Interval, StrOptions, check_feature_names_in
from ecgsoup.backbones import Backbone, InputContract, resolve_contract
from ecgsoup.backbones.stmem import EncoderConfig
from ecgsoup.leads import canonical_lead_name, canonical_lead_names
from ecgsoup.recipes import record_recipe, resample_recipe
from ecgsoup.signal import (
    UNIT_TO_MV,
    as_time_major,
    check_finite,
    check_not_ragged,
    lead_indices,
    resampled_length,
)

__all__ = ["ECGPreprocessor"]

_logger = logging.getLogger("ecgsoup")

_RATE_HELP = (
    "sampling_rate is required: pass the sampling rate of your data in Hz, e.g. "
    "ECGPreprocessor(sampling_rate=ds.sampling_rate, ...) for an ecgsoup ECGDataset, the "
    "`fs` of a WFDB header (wfdb.rdheader(path).fs), or 100 / 500 for PTB-XL's "
    "records100 / records500. ecgsoup never guesses it."
)


class ECGPreprocessor(TransformerMixin, BaseEstimator):
    """Reorder leads by name, resample and size ECGs for an ecgsoup model.

    Stateless: ``fit`` learns nothing from the data; it checks the parameters
    and the input's shape and records the resulting geometry.  Amplitudes are
    read as mV (the unit ``ecgsoup.io`` reads records in) and converted to the
    unit of the model's contract (``contract_.units``).  No z-scoring
    is done here - the embedder standardises every model window itself.

    Parameters
    ----------
    sampling_rate : float
        Sampling rate of the input data in Hz.  Required.
    lead_names : sequence of str
        Name of each lead of the input, in the order of its last axis (any
        common spelling: ``"AVR"``, ``"MLII"`` ...).  Required: leads are
        matched by name, never by position.
    lead_map : dict, default=None
        ``{model lead: data lead}`` for leads stored under other names, e.g.
        ``{"II": "ECG2"}``.
    model : str, path, InputContract, EncoderConfig or Backbone, default="default"
        Whose input contract to meet: any ``model=`` value the embedder
        accepts (``"default"``, a registered name, a model directory,
        ``"<family>:<path>"``, ``"random:<name>"``, optionally ending in
        ``@<contract>``), an ST-MEM configuration name such as
        ``"ecgsoup-100hz-tiny"``, a contract or a backbone.  Only
        configuration is read where possible (no weights).  The contract's
        recipe (resampling, filters, record-wide scaling) is applied here.
    bandpass : "model", (float, float) or None, default="model"
        ``"model"`` applies the contract's band-pass (none for the ``ecgsoup-100hz``
        models, 0.67-40 Hz for ``st-mem-250hz``); a ``(low, high)`` tuple in Hz
        applies that one; ``None`` applies none.  Zero-phase Butterworth,
        applied at the model's sampling rate.
    length : {"full", "crop"}, default="full"
        ``"full"`` keeps whole records (the embedder averages over windows);
        ``"crop"`` keeps the first window (``n_samples`` of the model).
    pad : {"error", "zeros", "edge"}, default="error"
        Records shorter than one model window raise an error, or are padded
        at the end with zeros or with their last value.

    Attributes
    ----------
    contract_ : InputContract
        The model's input contract (rate, window, leads, recipe).
    lead_indices_ : ndarray of int
        Column of the input holding each model lead, in model order.
    n_samples_in_ : int
        Samples per lead in the input.
    n_samples_out_ : int
        Samples per lead in the output (``T``).
    bandpass_ : tuple of float or None
        The band-pass actually applied.
    n_features_in_ : int
        Columns of 2-D input; for 3-D input, its second axis (time).
    feature_names_in_ : ndarray of str
        Column names of a DataFrame input.

    Notes
    -----
    Input is **time-major**: ``(n_records, n_samples, n_leads)``, as read by
    :mod:`ecgsoup.io`, or flattened row-wise to ``(n_records, n_samples *
    n_leads)``.  For an :class:`ecgsoup.io.ECGDataset` ``ds``, pass ``ds.X``
    and build the preprocessor with ``sampling_rate=ds.sampling_rate,
    lead_names=ds.lead_names``.  Output is float32 ``(n_records, n_leads * T)``
    in **lead-major** order (all samples of the model's first lead, then the
    second, ...), columns named ``I_t0000``, ``I_t0001``, ...

    Examples
    --------
    >>> from ecgsoup import ECGPreprocessor, load_sample
    >>> ds = load_sample()
    >>> prep = ECGPreprocessor(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names)
    >>> Xt = prep.fit_transform(ds.X)
    >>> Xt.shape, prep.get_feature_names_out()[1000]
    ((200, 12000), 'II_t0000')
    """

    _parameter_constraints = {
        "sampling_rate": [Interval(Real, 0, None, closed="neither"), None],
        "lead_names": ["array-like", None],
        "lead_map": [dict, None],
        "model": [str, os.PathLike, EncoderConfig, Backbone, InputContract],
        "bandpass": [StrOptions({"model"}), tuple, list, None],
        "length": [StrOptions({"full", "crop"})],
        "pad": [StrOptions({"error", "zeros", "edge"})],
    }

    def __init__(
        self,
        sampling_rate=None,
        lead_names=None,
        lead_map=None,
        model="default",
        bandpass="model",
        length="full",
        pad="error",
    ):
        self.sampling_rate = sampling_rate
        self.lead_names = lead_names
        self.lead_map = lead_map
        self.model = model
        self.bandpass = bandpass
        self.length = length
        self.pad = pad

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        # Output is float32 whatever the input precision (the encoder's dtype).
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # --- validation ---------------------------------------------------------------

    def _data_leads(self) -> tuple[str, ...]:
        if self.lead_names is None:
            raise ValueError(
                "lead_names is required: pass the name of each lead of your data, in the order "
                "of its last axis (ds.lead_names for an ecgsoup ECGDataset, record.sig_name for "
                "wfdb). ecgsoup matches leads by name, never by position."
            )
        names = [str(n) for n in self.lead_names]
        mapped = {str(v) for v in (self.lead_map or {}).values()}
        unknown = [n for n in names if canonical_lead_name(n) is None and n not in mapped]
        if unknown:
            raise ValueError(
                f"lead_names has names that are not standard ECG leads: {unknown}. Map them with "
                "lead_map={model_lead: data_lead}, or leave those columns out of X "
                "(e.g. ecgsoup.io.read_wfdb(path, leads=[...]))."
            )
        return tuple(names)

    def _lead_indices(self, data_leads, config: InputContract) -> np.ndarray:
        lead_map = dict(self.lead_map or {})
        model_leads = set(config.lead_names)
        bad_keys = [k for k in lead_map if (canonical_lead_name(k) or k) not in model_leads]
        if bad_keys:
            raise ValueError(
                f"lead_map keys must be leads of the model {list(config.lead_names)}; got {bad_keys}."
            )
        data_set = set(data_leads) | set(canonical_lead_names(data_leads))
        bad_values = [v for v in lead_map.values() if v not in data_set]
        if bad_values:
            raise ValueError(f"lead_map values {bad_values} are not in lead_names {list(data_leads)}.")
        lead_map = {canonical_lead_name(k) or k: v for k, v in lead_map.items()}
        return lead_indices(data_leads, config.lead_names, lead_map)

    def _resolve_bandpass(self, config: InputContract):
        band = config.bandpass if isinstance(self.bandpass, str) else self.bandpass
        if config.recipe != "resample@1" and not isinstance(self.bandpass, str):
            raise ValueError(
                f"bandpass={self.bandpass!r}: the model's recipe {config.recipe} defines its own "
                "filters; leave bandpass='model'."
            )
        if band is None:
            return None
        if len(band) != 2:
            raise ValueError(f"bandpass={self.bandpass!r}; expected 'model', None or (low, high) in Hz.")
        low, high = float(band[0]), float(band[1])
        nyquist = config.sampling_rate / 2
        if not 0 < low < high:
            raise ValueError(f"bandpass={self.bandpass!r}: need 0 < low < high (Hz).")
        if high >= nyquist:
            raise ValueError(
                f"bandpass high edge {high:g} Hz is not below the Nyquist frequency ({nyquist:g} Hz) "
                f"of the model's {config.sampling_rate:g} Hz; choose a lower edge."
            )
        return (low, high)

    def _as_3d(self, X, n_leads) -> np.ndarray:
        """Time-major ``(n, time, leads)`` view of 2-D flat or 3-D input."""
        if X.ndim == 2:
            self._refuse_one_recording(X.shape, n_leads)
        return as_time_major(X, n_leads)

    def _refuse_one_recording(self, shape, n_leads) -> None:
        """Refuse one ``(time, leads)`` recording, which flat input would read as one-sample records.

        Flat 2-D input is ``(n_records, n_samples * n_leads)``; with exactly
        ``n_leads`` columns every record would be one sample long, which is no
        ECG.  With one lead, ``(n, 1)`` is taken for a recording once it spans
        at least a second (``n >= sampling_rate``); fewer rows stay flat input.
        """
        if len(shape) != 2:
            return
        n_rows, n_columns = shape
        if n_columns == n_leads and n_rows > 1 and (n_leads > 1 or n_rows >= float(self.sampling_rate)):
            raise ValueError(
                f"X has shape {tuple(shape)}: one recording of {n_rows} samples x {n_leads} leads, not "
                f"{n_rows} records of one sample each. ECGPreprocessor takes a batch of records: "
                f"pass X[None] (shape (1, {n_rows}, {n_leads})), or stack recordings as "
                "(n_records, n_samples, n_leads)."
            )

    def _output_length(self, n_resampled, config: InputContract) -> int:
        window = config.window
        if n_resampled < window and self.pad == "error":
            raise ValueError(
                f"Records are {n_resampled} samples long at {config.sampling_rate:g} Hz "
                f"({n_resampled / config.sampling_rate:g} s), shorter than the model's window of "
                f"{window} samples ({config.seconds:g} s). Pass pad='zeros' or pad='edge' to pad "
                "them, or use longer recordings."
            )
        return window if self.length == "crop" else max(n_resampled, window)

    # --- sklearn API -------------------------------------------------------------------

    def fit(self, X, y=None):
        """Check the parameters against ``X``; nothing is learned from the data.

        Parameters
        ----------
        X : array-like of shape (n_records, n_samples, n_leads) or (n_records, n_samples * n_leads)
            Time-major ECGs.
        y : None
            Ignored.

        Returns
        -------
        self : ECGPreprocessor
        """
        self._validate_params()
        if self.sampling_rate is None:
            raise ValueError(_RATE_HELP)
        data_leads = self._data_leads()
        config = self.model if isinstance(self.model, InputContract) else resolve_contract(self.model)
        indices = self._lead_indices(data_leads, config)
        used = set(indices.tolist())
        unused = [name for i, name in enumerate(data_leads) if i not in used]
        if unused:
            # A model on fewer leads (ECG-JEPA's 8, a 1-lead model) simply leaves the others out.
            _logger.info("The model reads %d of the %d leads (%s); not used: %s.", len(indices), len(data_leads),
                         ", ".join(config.lead_names), ", ".join(unused))
        band = self._resolve_bandpass(config)
        check_not_ragged(X)
        X = validate_data(
            self, X, allow_nd=True, dtype=(np.float64, np.float32), ensure_all_finite=False
        )
        X3 = self._as_3d(X, len(data_leads))
        check_finite(X3, lead_names=data_leads)
        n_resampled = resampled_length(X3.shape[1], float(self.sampling_rate), config.sampling_rate)
        n_out = self._output_length(n_resampled, config)
        self.contract_ = config
        self.lead_indices_ = indices
        self.n_samples_in_ = int(X3.shape[1])
        self.n_samples_out_ = int(n_out)
        self.bandpass_ = band
        return self

    def transform(self, X):
        """Model-ready ECGs: leads in model order, model rate, flat lead-major.

        Parameters
        ----------
        X : array-like of shape (n_records, n_samples, n_leads) or (n_records, n_samples * n_leads)
            Time-major ECGs with the leads, rate and length seen in ``fit``.

        Returns
        -------
        X_out : ndarray of shape (n_records, n_model_leads * n_samples_out_), float32
        """
        check_is_fitted(self)
        check_not_ragged(X)
        if getattr(X, "ndim", None) == 2 and self.lead_names is not None:
            self._refuse_one_recording(X.shape, len(self.lead_names))  # before validate_data's message
        if getattr(X, "ndim", None) == 3 and X.shape[1] != self.n_samples_in_:
            # Checked before validate_data, whose message would call time "features".
            raise ValueError(
                f"X has {X.shape[1]} samples per lead but the preprocessor was fitted on "
                f"{self.n_samples_in_}; fit it again (fit is cheap: nothing is learned)."
            )
        X = validate_data(
            self, X, reset=False, allow_nd=True, dtype=(np.float64, np.float32), ensure_all_finite=False
        )
        data_leads = self._data_leads()
        X3 = self._as_3d(X, len(data_leads))
        check_finite(X3, lead_names=data_leads)
        config = self.contract_
        x = X3[:, :, self.lead_indices_]
        # Input is in mV (as ecgsoup.io reads records); the model sees its contract's unit.
        to_units = UNIT_TO_MV["mV"] / UNIT_TO_MV[config.units]
        if to_units != 1.0:
            x = x * to_units
        if config.recipe == "resample@1":
            x = resample_recipe(x, float(self.sampling_rate), config, bandpass=self.bandpass_ or False)
        else:
            x = record_recipe(config.recipe)(x, float(self.sampling_rate), config)
        x = self._fit_length(x)
        # (n, T, leads) -> (n, leads, T) -> flat, lead-major as the embedder expects.
        flat = np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(len(x), -1)
        return flat.astype(np.float32, copy=False)

    def _fit_length(self, x) -> np.ndarray:
        n_out = self.n_samples_out_
        if x.shape[1] >= n_out:
            return x[:, :n_out]
        mode = "constant" if self.pad == "zeros" else "edge"
        return np.pad(x, ((0, 0), (0, n_out - x.shape[1]), (0, 0)), mode=mode)

    def get_feature_names_out(self, input_features=None):
        """Output column names, ``<lead>_t<sample>`` in lead-major order.

        Parameters
        ----------
        input_features : array-like of str, optional
            Only checked against the input seen in ``fit``; output names do
            not depend on them.

        Returns
        -------
        feature_names_out : ndarray of str
            E.g. ``I_t0000 ... I_t0999, II_t0000, ...``, zero-padded so that
            string order equals time order.
        """
        check_is_fitted(self)
        check_feature_names_in(self, input_features)
        width = max(4, len(str(self.n_samples_out_ - 1)))
        times = range(self.n_samples_out_)
        return np.asarray([f"{lead}_t{t:0{width}d}" for lead in self.contract_.lead_names for t in times], dtype=object)
