"""Networks and model dirs: the backbone registry and the tagger network
(networks), the pretrained CNN9 (pretrained), and what a model dir holds
and how it is rebuilt (model_dir)."""
