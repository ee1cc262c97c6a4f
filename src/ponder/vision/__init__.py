"""Eyes for ponder's decoder, the three ways NVLM compared: D (image tokens inline), X (gated cross-attention) and
H (the thumbnail inline, the tiles through cross-attention), on the very same decoder (`models.transformer`)."""
