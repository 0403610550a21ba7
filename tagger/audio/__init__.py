"""Audio -> features: decoding and trimming, the log-mel (numpy and
TensorFlow), the 1,133 summary features and their PCA, and the feature
parameters that tie them together. Never imports TensorFlow except in
graph_features, so feature worker processes stay light."""
