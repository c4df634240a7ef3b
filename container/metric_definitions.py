"""The MetricDefinitions a training job passes so SageMaker charts what `train` prints.

One list, used by the README, the launch scripts and the test that matches each regex against real output.
Lines come from `ncf.training.EpochLog.line()` (every epoch) and `container.train` (the final evaluation).
"""

METRIC_DEFINITIONS = [
    {"Name": "train:loss", "Regex": r"train:loss=([0-9.]+)"},
    {"Name": "train:samples_per_s", "Regex": r"samples_per_s=([0-9]+)"},
    {"Name": "validation:hr@10", "Regex": r"validation:hr@10=([0-9.]+)"},
    {"Name": "validation:ndcg@10", "Regex": r"validation:ndcg@10=([0-9.]+)"},
    {"Name": "test:hr@10", "Regex": r"test:hr@10=([0-9.]+)"},
    {"Name": "test:ndcg@10", "Regex": r"test:ndcg@10=([0-9.]+)"},
    {"Name": "test:accuracy", "Regex": r"test:accuracy=([0-9.]+)"},
    {"Name": "test:ece", "Regex": r"test:ece=([0-9.]+)"},
    {"Name": "test:recall@10", "Regex": r"test:full_recall@10=([0-9.]+)"},
    {"Name": "popularity:hr@10", "Regex": r"popularity:hr@10=([0-9.]+)"},
]
