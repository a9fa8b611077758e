"""Adapters turn a framework's training step into a :class:`lrkit.trainable.Trainable`."""
