"""OCR models (CTPN detector, CRNN recognizer), their pre/post-processing and a predictor."""
