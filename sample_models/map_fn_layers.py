"""Custom layer of the ``map_fn_nms.keras`` sample: non-max suppression per image inside ``tf.map_fn``.

Load the sample with ``probe list map_fn_nms.keras --custom-objects map_fn_layers.py``.
Unlike ``mini_rcnn_layers.ProposalLayer`` (a Python loop unrolled per image), the
NMS op here lives in a loop body, so it runs once per image of a batch of any size.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="probe_samples")
class MapFnProposals(keras.layers.Layer):
    """Keeps the best non-overlapping boxes of each image, padded to ``proposal_count`` rows."""

    def __init__(self, proposal_count, nms_threshold, **kwargs):
        super().__init__(**kwargs)
        self.proposal_count = proposal_count
        self.nms_threshold = nms_threshold

    def _one_image(self, args):
        boxes, scores = args
        keep = tf.image.non_max_suppression(
            boxes, scores, self.proposal_count, self.nms_threshold, name="non_max_suppression"
        )
        kept = tf.gather(boxes, keep)
        padding = tf.maximum(self.proposal_count - tf.shape(kept)[0], 0)
        return tf.pad(kept, [(0, padding), (0, 0)])

    def call(self, inputs):
        boxes, scores = inputs
        return tf.map_fn(
            self._one_image,
            (boxes, scores),
            fn_output_signature=tf.TensorSpec((self.proposal_count, 4), tf.float32),
            name="per_image",
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.proposal_count, 4)

    def get_config(self):
        config = super().get_config()
        config.update(proposal_count=self.proposal_count, nms_threshold=self.nms_threshold)
        return config
