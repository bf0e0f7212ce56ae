"""Subclassed model of the ``subclassed.keras`` sample: its inner layers have no ``.output``.

Load the sample with ``probe list subclassed.keras --custom-objects subclassed_model.py``.
"""

import keras


@keras.saving.register_keras_serializable(package="probe_samples")
class ResidualBlock(keras.layers.Layer):
    """``x + proj(relu(hidden(x)))``: a custom layer owning two Dense sublayers."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = keras.layers.Dense(units, activation="relu", name="hidden")
        self.proj = keras.layers.Dense(units, name="proj")

    def call(self, x):
        return x + self.proj(self.hidden(x))

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units)
        return config


@keras.saving.register_keras_serializable(package="probe_samples")
class TinyClassifier(keras.Model):
    """Stem Dense, a residual block, dropout (inactive at inference) and a softmax head."""

    def __init__(self, width=8, classes=3, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.classes = classes
        self.stem = keras.layers.Dense(width, activation="tanh", name="stem")
        self.block = ResidualBlock(width, name="block")
        self.dropout = keras.layers.Dropout(0.5, name="dropout")
        self.head = keras.layers.Dense(classes, activation="softmax", name="head")

    def call(self, features, training=False):
        x = self.block(self.stem(features))
        return self.head(self.dropout(x, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(width=self.width, classes=self.classes)
        return config
