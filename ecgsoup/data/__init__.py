"""Package data: the bundled real ECG sample (see README.md here and ``ecgsoup.load_sample``)."""
