"""Top-1 accuracy for the demo models (``val_evaluator=dict(type='DemoAccuracy')``)."""
from __future__ import annotations

from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS


@METRICS.register_module()
class DemoAccuracy(BaseMetric):
    """Percentage of images whose predicted label is the true one, reported as ``accuracy``.

    Reads the ``dict(pred_label, gt_label)`` per image that the demo models return in
    ``predict`` mode (one result per image, so distributed evaluation drops the padding).
    """

    default_prefix = ""  # metrics are logged as val/accuracy

    def process(self, data_batch, data_samples) -> None:
        for sample in data_samples:
            self.results.append(int(sample["pred_label"]) == int(sample["gt_label"]))

    def compute_metrics(self, results: list) -> dict:
        return dict(accuracy=100.0 * sum(results) / max(len(results), 1))
