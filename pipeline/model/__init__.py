"""The model half, in TensorFlow: input pipeline, networks, training, decoding, prediction.

dataset (shards to batches) -> networks (seq2seq, I2L-NOPOOL, I2L-STRIPS) -> trainer / train
(the stage) -> bundle (the one module that saves and loads an exported model) -> decode, beam
and predict. schedule holds the training budget and the learning rate over it; devices picks
the distribution strategy and precision from the environment.
"""
