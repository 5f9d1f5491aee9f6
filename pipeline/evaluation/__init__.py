"""Scoring a trained model: the evaluate stage and what it builds on.

evaluate (the stage) decodes a test split or a user's own formulas (external) through the model
half, scores text and pictures (visual), and writes heatmaps and the static HTML report.
"""
