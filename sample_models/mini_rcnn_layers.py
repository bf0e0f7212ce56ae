"""Custom layers of the Mask-R-CNN-like sample model.

Load the sample with ``probe list mini_rcnn.h5 --custom-objects mini_rcnn_layers.py``.
The layer mirrors Mask R-CNN's ``ProposalLayer``: a Python loop over a fixed
number of images (like ``utils.batch_slice``) running non-max suppression on each.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="probe_samples")
class ProposalLayer(keras.layers.Layer):
    """Keeps the best non-overlapping boxes of each image, padded to ``proposal_count``."""

    def __init__(self, proposal_count, nms_threshold, images_per_batch, **kwargs):
        super().__init__(**kwargs)
        self.proposal_count = proposal_count
        self.nms_threshold = nms_threshold
        self.images_per_batch = images_per_batch

    def call(self, inputs):
        boxes, scores = inputs
        proposals = []
        for i in range(self.images_per_batch):
            image_boxes = boxes[i]
            image_scores = scores[i]
            keep = tf.image.non_max_suppression(
                image_boxes,
                image_scores,
                self.proposal_count,
                self.nms_threshold,
                name="rpn_non_max_suppression",
            )
            kept = tf.gather(image_boxes, keep)
            padding = tf.maximum(self.proposal_count - tf.shape(kept)[0], 0)
            proposals.append(tf.pad(kept, [(0, padding), (0, 0)]))
        return tf.stack(proposals, axis=0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.proposal_count, 4)

    def get_config(self):
        config = super().get_config()
        config.update(
            proposal_count=self.proposal_count,
            nms_threshold=self.nms_threshold,
            images_per_batch=self.images_per_batch,
        )
        return config
