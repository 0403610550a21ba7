"""Model dirs -> scores: offline TTA scoring, the metrics, the SavedModel
and TFLite export, and the waveform-in serving graph."""
